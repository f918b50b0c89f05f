#include "engine/reference_forward.h"

#include <cmath>

namespace kvstack::engine::testing {
namespace {

std::vector<float> Dequant(const kernels::WeightMatrix& w) {
  std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    kernels::DequantizeRowReference(w.type, static_cast<const std::byte*>(w.data) + r * w.row_bytes,
                                    &out[static_cast<size_t>(r * w.cols)], w.cols);
  }
  return out;
}

std::vector<double> Norm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * s * w[i];
  return out;
}

void Rope(double* v, int n_rot, RopeStyle style, const std::vector<double>& inv_freq, int pos) {
  for (int i = 0; i < n_rot / 2; ++i) {
    const double t = pos * inv_freq[i];
    const int a = style == RopeStyle::kNormal ? 2 * i : i;
    const int b = style == RopeStyle::kNormal ? 2 * i + 1 : i + n_rot / 2;
    const double x0 = v[a], x1 = v[b];
    v[a] = x0 * std::cos(t) - x1 * std::sin(t);
    v[b] = x0 * std::sin(t) + x1 * std::cos(t);
  }
}

}  // namespace

ReferenceForward::ReferenceForward(const LlamaModel& model) : model_(model) {
  embd_ = Dequant(model.token_embedding());
  out_ = Dequant(model.output());
  for (const LayerWeights& L : model.layers()) {
    layers_.push_back({Dequant(L.wq), Dequant(L.wk), Dequant(L.wv), Dequant(L.wo), Dequant(L.w_gate), Dequant(L.w_up),
                       Dequant(L.w_down)});
  }
  k_cache_.resize(layers_.size());
  v_cache_.resize(layers_.size());
}

std::vector<double> ReferenceForward::MatVec(const std::vector<float>& w, int rows, int cols,
                                             const std::vector<double>& x) const {
  std::vector<double> y(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    double s = 0;
    for (int c = 0; c < cols; ++c) s += static_cast<double>(w[static_cast<size_t>(r) * cols + c]) * x[c];
    y[r] = s;
  }
  return y;
}

std::vector<double> ReferenceForward::Step(Token token) {
  const LlamaHParams& h = model_.hparams();
  const int E = static_cast<int>(h.n_embd), H = static_cast<int>(h.n_head), KVH = static_cast<int>(h.n_head_kv),
            D = static_cast<int>(h.head_dim), F = static_cast<int>(h.n_ff), V = static_cast<int>(h.n_vocab);
  std::vector<double> inv_freq(h.n_rot / 2);
  for (uint32_t i = 0; i < h.n_rot / 2; ++i) {
    inv_freq[i] = std::pow(static_cast<double>(h.rope_freq_base), -2.0 * i / h.n_rot);
    if (!model_.rope_freq_factors().empty()) inv_freq[i] /= model_.rope_freq_factors()[i];
  }
  std::vector<double> x(embd_.begin() + static_cast<long>(token) * E, embd_.begin() + static_cast<long>(token + 1) * E);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& W = layers_[l];
    const LayerWeights& LW = model_.layers()[l];
    std::vector<double> xn = Norm(x, LW.attn_norm, h.rms_eps);
    std::vector<double> q = MatVec(W.wq, H * D, E, xn), k = MatVec(W.wk, KVH * D, E, xn), v = MatVec(W.wv, KVH * D, E, xn);
    if (!LW.bq.empty()) {
      for (int i = 0; i < H * D; ++i) q[i] += LW.bq[i];
      for (int i = 0; i < KVH * D; ++i) {
        k[i] += LW.bk[i];
        v[i] += LW.bv[i];
      }
    }
    for (int hd = 0; hd < H; ++hd) Rope(&q[static_cast<size_t>(hd) * D], static_cast<int>(h.n_rot), model_.rope_style(), inv_freq, pos_);
    for (int hd = 0; hd < KVH; ++hd) Rope(&k[static_cast<size_t>(hd) * D], static_cast<int>(h.n_rot), model_.rope_style(), inv_freq, pos_);
    k_cache_[l].push_back(k);
    v_cache_[l].push_back(v);
    std::vector<double> att(static_cast<size_t>(H) * D, 0.0);
    for (int hd = 0; hd < H; ++hd) {
      const int kh = hd / (H / KVH);
      std::vector<double> s(static_cast<size_t>(pos_) + 1);
      double mx = -1e300;
      for (int t = 0; t <= pos_; ++t) {
        double d = 0;
        for (int i = 0; i < D; ++i) d += q[static_cast<size_t>(hd) * D + i] * k_cache_[l][t][static_cast<size_t>(kh) * D + i];
        s[t] = d / std::sqrt(static_cast<double>(D));
        mx = std::max(mx, s[t]);
      }
      double sum = 0;
      for (double& e : s) sum += (e = std::exp(e - mx));
      for (int t = 0; t <= pos_; ++t) {
        for (int i = 0; i < D; ++i) att[static_cast<size_t>(hd) * D + i] += s[t] / sum * v_cache_[l][t][static_cast<size_t>(kh) * D + i];
      }
    }
    std::vector<double> o = MatVec(W.wo, E, H * D, att);
    for (int i = 0; i < E; ++i) x[i] += o[i];
    xn = Norm(x, LW.ffn_norm, h.rms_eps);
    std::vector<double> g = MatVec(W.gate, F, E, xn), u = MatVec(W.up, F, E, xn);
    for (int i = 0; i < F; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    std::vector<double> d = MatVec(W.down, E, F, g);
    for (int i = 0; i < E; ++i) x[i] += d[i];
  }
  ++pos_;
  return MatVec(out_, V, E, Norm(x, model_.output_norm(), h.rms_eps));
}

}  // namespace kvstack::engine::testing
