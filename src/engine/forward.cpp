#include "engine/forward.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "engine/kv_convert.h"

namespace kvstack::engine {

void RmsNorm(const float* x, const float* w, int n, float eps, float* out) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

std::vector<double> RopeInverseFrequencies(const LlamaModel& model) {
  const LlamaHParams& h = model.hparams();
  std::vector<double> inv(h.n_rot / 2);
  const std::vector<float>& factors = model.rope_freq_factors();
  for (uint32_t i = 0; i < h.n_rot / 2; ++i) {
    inv[i] = std::pow(static_cast<double>(h.rope_freq_base), -2.0 * i / h.n_rot);
    if (!factors.empty()) inv[i] /= factors[i];
    if (h.rope_scaling == RopeScalingType::kLinear && h.rope_scaling_factor > 0) inv[i] /= h.rope_scaling_factor;
  }
  return inv;
}

void ApplyRope(float* v, int head_dim, int n_rot, RopeStyle style, const std::vector<double>& inv_freq, int pos) {
  (void)head_dim;
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const double theta = pos * inv_freq[i];
    const float c = static_cast<float>(std::cos(theta));
    const float s = static_cast<float>(std::sin(theta));
    const int a = style == RopeStyle::kNormal ? 2 * i : i;
    const int b = style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

Forward::Forward(const LlamaModel& model, KvArena* arena, kernels::ThreadPool* pool,
                 kernels::MatMulPrecision precision)
    : model_(model), arena_(arena), pool_(pool), precision_(precision), inv_freq_(RopeInverseFrequencies(model)) {}

void Forward::EmbedTokens(const ForwardBatch& batch) {
  const kernels::WeightMatrix& e = model_.token_embedding();
  const int E = static_cast<int>(model_.hparams().n_embd);
  for (size_t i = 0; i < batch.tokens.size(); ++i) {
    const auto* row = static_cast<const std::byte*>(e.data) + static_cast<size_t>(batch.tokens[i].token) * e.row_bytes;
    kernels::DequantizeRow(e.type, row, &x_[i * E], E);
  }
}

Status Forward::PlanResiduals(const ForwardBatch& batch) {
  if (!KvResidual::Needed(arena_->shape())) return Status::Ok();
  if (batch.residuals.size() != batch.tables.size()) {
    return InvalidArgument(fmt::format("forward: {} KV needs a residual per table ({} tables, {} residuals)",
                                       arena_->shape().types_name(), batch.tables.size(), batch.residuals.size()));
  }
  extents_.assign(batch.tables.size(), Extent{-1, -1, 0, 0});
  for (size_t i = 0; i < batch.tokens.size(); ++i) {
    const BatchToken& t = batch.tokens[i];
    Extent& e = extents_[static_cast<size_t>(t.table)];
    if (e.end < 0) {
      if (batch.residuals[static_cast<size_t>(t.table)] == nullptr) {
        return InvalidArgument(fmt::format("forward: table {} has no residual ({} KV)", t.table,
                                           arena_->shape().types_name()));
      }
      if (batch.residuals[static_cast<size_t>(t.table)]->bytes() != KvResidual::BytesFor(arena_->shape())) {
        return InvalidArgument(fmt::format("forward: table {}'s residual was made for another KV shape", t.table));
      }
      e = Extent{t.position, t.position + 1, i, 0};
    } else if (t.position != e.end || i != e.first + static_cast<size_t>(e.end - e.begin)) {
      return InvalidArgument(fmt::format(
          "forward: with {} KV a table's tokens must be consecutive positions, adjacent in the batch (table {}: "
          "position {} after {})",
          arena_->shape().types_name(), t.table, t.position, e.end - 1));
    } else {
      ++e.end;
    }
  }
  const KvShape& shape = arena_->shape();
  const int32_t B = shape.block_size;
  size_t staged = 0;
  for (Extent& e : extents_) {
    if (e.end < 0) continue;
    e.stage = staged;
    staged += static_cast<size_t>((e.end - 1) / B - e.begin / B + 1);
  }
  stage_head_ = static_cast<size_t>(B) * static_cast<size_t>(shape.head_dim);
  stage_.resize(staged * 2 * static_cast<size_t>(shape.num_kv_heads) * stage_head_);
  return Status::Ok();
}

size_t Forward::StageOffset(size_t table, int32_t block, KvPart part, int kv_head) const {
  const Extent& e = extents_[table];
  const size_t at = e.stage + static_cast<size_t>(block - e.begin / arena_->shape().block_size);
  const size_t heads = static_cast<size_t>(arena_->shape().num_kv_heads);
  return ((at * 2 + (part == KvPart::kValue ? 1 : 0)) * heads + static_cast<size_t>(kv_head)) * stage_head_;
}

void Forward::StoreKv(const ForwardBatch& batch, int layer) {
  const LlamaHParams& h = model_.hparams();
  const int D = static_cast<int>(h.head_dim), KVH = static_cast<int>(h.n_head_kv);
  const KvShape& shape = arena_->shape();
  const bool k_float = !IsQuantizedKv(shape.k_type()), v_float = !IsQuantizedKv(shape.v_type());
  if (!k_float) StoreQuantizedKv(batch, layer, KvPart::kKey);
  if (!v_float) StoreQuantizedKv(batch, layer, KvPart::kValue);
  if (!k_float && !v_float) return;
  const size_t k_head = shape.k_head_bytes(), v_head = shape.v_head_bytes();
  const int B = shape.block_size;
  for (size_t i = 0; i < batch.tokens.size(); ++i) {
    const BatchToken& t = batch.tokens[i];
    const int32_t block = ToIndex(batch.tables[t.table][t.position / B]);
    const size_t slot = static_cast<size_t>(t.position % B);
    std::byte* kdst = arena_->K(block, layer);
    std::byte* vdst = arena_->V(block, layer);
    // Float types keep their original element-wise store (their results are
    // pinned by goldens).
    for (int kh = 0; kh < KVH; ++kh) {
      if (k_float) {
        engine::StoreKv(shape.k_type(), &k_[(i * KVH + kh) * D],
                        kdst + kh * k_head + slot * D * KvDTypeBytes(shape.k_type()), D);
      }
      if (v_float) {
        engine::StoreKv(shape.v_type(), &v_[(i * KVH + kh) * D],
                        vdst + kh * v_head + slot * D * KvDTypeBytes(shape.v_type()), D);
      }
    }
  }
}

void Forward::StoreQuantizedKv(const ForwardBatch& batch, int layer, KvPart part) {
  const KvShape& shape = arena_->shape();
  const KvDType type = part == KvPart::kKey ? shape.k_type() : shape.v_type();
  const int D = shape.head_dim, KVH = shape.num_kv_heads, B = shape.block_size;
  const size_t head_bytes = part == KvPart::kKey ? shape.k_head_bytes() : shape.v_head_bytes();
  const std::vector<float>& src = part == KvPart::kKey ? k_ : v_;
  block_rows_.resize(stage_head_);
  for (size_t t = 0; t < batch.tables.size(); ++t) {
    const Extent& e = extents_[t];
    if (e.end < 0) continue;  // no tokens of this table in the batch
    KvResidual& residual = *batch.residuals[t];
    for (int32_t b = e.begin / B; b * B < e.end; ++b) {
      const int32_t base = b * B;
      const int32_t from = std::max(e.begin, base), to = std::min(e.end, base + B);
      const int32_t block = ToIndex(batch.tables[t][static_cast<size_t>(b)]);
      std::byte* dst = part == KvPart::kKey ? arena_->K(block, layer) : arena_->V(block, layer);
      for (int kh = 0; kh < KVH; ++kh) {
        // The block's f16 rows: those waiting in the residual, then this
        // step's. Attention reads a token's own block from here.
        uint16_t* rows = &stage_[StageOffset(t, b, part, kh)];
        uint16_t* waiting = residual.Head(layer, part, kh);
        if (from > base) std::memcpy(rows, waiting, static_cast<size_t>(from - base) * D * sizeof(uint16_t));
        for (int32_t p = from; p < to; ++p) {
          const size_t i = e.first + static_cast<size_t>(p - e.begin);
          engine::StoreKv(KvDType::kF16, &src[(i * KVH + kh) * D], rows + static_cast<size_t>(p - base) * D, D);
        }
        if (to < base + B) {  // still partial: it waits for the next step
          std::memcpy(waiting, rows, static_cast<size_t>(to - base) * D * sizeof(uint16_t));
          continue;
        }
        kernels::DequantizeRow(GgmlType::kF16, rows, block_rows_.data(), static_cast<int64_t>(stage_head_));
        kernels::QuantizeKvHead(type, part, dst + kh * head_bytes, B, D, block_rows_.data());
      }
    }
  }
}

void Forward::PlanAttention(const ForwardBatch& batch) {
  const LlamaHParams& h = model_.hparams();
  const int H = static_cast<int>(h.n_head), KVH = static_cast<int>(h.n_head_kv);
  const int group = H / KVH;
  // Runs of one table's tokens, adjacent in the batch, cut into tiles.
  std::vector<std::pair<size_t, size_t>>& tiles = attention_tiles_;
  tiles.clear();
  for (size_t i = 0; i < batch.tokens.size();) {
    size_t j = i + 1;
    while (j < batch.tokens.size() && j - i < kAttentionTile && batch.tokens[j].table == batch.tokens[i].table &&
           batch.tokens[j].position > batch.tokens[j - 1].position) {
      ++j;
    }
    tiles.emplace_back(i, j);
    i = j;
  }
  // A KV head's whole group of query heads per item, unless that leaves the
  // pool's threads too few items (one decoding sequence): then a head each.
  const size_t per_group = tiles.size() * static_cast<size_t>(KVH);
  const int heads_per_item = per_group >= 4 * static_cast<size_t>(pool_->size()) ? group : 1;
  attention_items_.clear();
  for (const auto& [i0, i1] : tiles) {
    for (int head = 0; head < H; head += heads_per_item) {
      attention_items_.push_back(AttentionItem{i0, i1, head, head + heads_per_item});
    }
  }
}

namespace {
// out[d] += sc[j] * inv * values[j][d] for j < len, in token order for each
// d (what a token-major loop gives, bit for bit), with the sums of N dims at
// a time held in registers across the tokens rather than stored and
// reloaded after each one.
template <int N>
void AccumulateChunks(float* out, const float* values, int D, int len, const float* sc, float inv) {
  for (int d0 = 0; d0 < D; d0 += N) {
    float acc[N];
    for (int d = 0; d < N; ++d) acc[d] = out[d0 + d];
    for (int j = 0; j < len; ++j) {
      const float w = sc[j] * inv;
      const float* v = values + static_cast<size_t>(j) * D + d0;
#pragma omp simd
      for (int d = 0; d < N; ++d) acc[d] += w * v[d];
    }
    for (int d = 0; d < N; ++d) out[d0 + d] = acc[d];
  }
}

void AccumulateValues(float* out, const float* values, int D, int len, const float* sc, float inv) {
  if (D % 32 == 0) return AccumulateChunks<32>(out, values, D, len, sc, inv);
  if (D % 8 == 0) return AccumulateChunks<8>(out, values, D, len, sc, inv);
  for (int j = 0; j < len; ++j) {
    const float w = sc[j] * inv;
    const float* v = values + static_cast<size_t>(j) * D;
    for (int d = 0; d < D; ++d) out[d] += w * v[d];
  }
}
}  // namespace

void Forward::Attention(const ForwardBatch& batch, int layer) {
  const LlamaHParams& h = model_.hparams();
  const int D = static_cast<int>(h.head_dim), H = static_cast<int>(h.n_head), KVH = static_cast<int>(h.n_head_kv);
  const int group = H / KVH;
  const KvShape& shape = arena_->shape();
  const KvDType k_type = shape.k_type(), v_type = shape.v_type();
  const size_t k_head = shape.k_head_bytes(), v_head = shape.v_head_bytes();
  const int B = shape.block_size;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // K and V rows of one block as floats: F32 blocks are read in place; F16
  // and BF16 blocks are widened with the kernels' dispatched converters.
  // Quantized blocks never come here: the KV kernels read them in place.
  auto rows = [&](KvDType type, const std::byte* src, int len, std::vector<float>& buf) -> const float* {
    switch (type) {
      case KvDType::kF32: return reinterpret_cast<const float*>(src);
      case KvDType::kF16: kernels::DequantizeRow(GgmlType::kF16, src, buf.data(), static_cast<int64_t>(len) * D); break;
      case KvDType::kBF16: kernels::DequantizeRow(GgmlType::kBF16, src, buf.data(), static_cast<int64_t>(len) * D); break;
      default: break;
    }
    return buf.data();
  };
  // Short heads (stories260K has 8 dims) are cheaper inline than a call.
  auto dot = [D](const float* a, const float* b) {
    if (D >= 32) return kernels::DotRow(GgmlType::kF32, a, b, D);
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; ++d) s += a[d] * b[d];
    return s;
  };
  // One item: a tile of one table's tokens and some of one KV head's query
  // heads. Each block is widened once for all of them; every row (token,
  // head) then does exactly the arithmetic it would alone, in the same
  // order, so results do not depend on the tiling.
  pool_->ParallelFor(static_cast<int64_t>(attention_items_.size()), 1, [&](int64_t begin, int64_t end) {
    // Per-thread scratch that outlives the call: no allocation per layer.
    thread_local std::vector<float> scores;  // [row][position]
    thread_local std::vector<float> kv, own_kv;
    kv.resize(static_cast<size_t>(B) * D);
    own_kv.resize(static_cast<size_t>(B) * D);
    for (int64_t it = begin; it < end; ++it) {
      const AttentionItem& item = attention_items_[static_cast<size_t>(it)];
      const int kh = item.head_begin / group;
      const int heads = item.head_end - item.head_begin;
      const BatchToken& last = batch.tokens[item.token_end - 1];
      const std::span<const BlockId> table = batch.tables[last.table];
      const size_t table_index = static_cast<size_t>(last.table);
      const int n_max = last.position + 1;
      const size_t stride = static_cast<size_t>(n_max);
      const size_t n_rows = (item.token_end - item.token_begin) * static_cast<size_t>(heads);
      scores.resize(n_rows * stride);
      // Row r: token token_begin + r / heads, head head_begin + r % heads;
      // row_at(r) is where its query and output start.
      auto token_of = [&](size_t r) -> const BatchToken& { return batch.tokens[item.token_begin + r / heads]; };
      auto row_at = [&](size_t r) { return ((item.token_begin + r / heads) * H + item.head_begin + r % heads) * D; };
      // Scores against every key of the sequence, block by block. Quantized
      // parts: a token's own block is read at f16 (staged), those below it
      // quantized.
      for (int b0 = 0; b0 < n_max; b0 += B) {
        const int32_t block = ToIndex(table[b0 / B]);
        const int len_max = std::min(B, n_max - b0);
        const std::byte* src = arena_->K(block, layer) + static_cast<size_t>(kh) * k_head;
        const float* keys = IsQuantizedKv(k_type) ? nullptr : rows(k_type, src, len_max, kv);
        const float* own_keys = nullptr;
        for (size_t r = 0; r < n_rows; ++r) {
          const BatchToken& t = token_of(r);
          if (t.position < b0) continue;
          const int len = std::min(B, t.position + 1 - b0);
          const float* q = &q_[row_at(r)];
          float* sc = &scores[r * stride + static_cast<size_t>(b0)];
          if (IsQuantizedKv(k_type) && t.position / B == b0 / B) {
            if (own_keys == nullptr) {
              const uint16_t* staged = &stage_[StageOffset(table_index, b0 / B, KvPart::kKey, kh)];
              own_keys = rows(KvDType::kF16, reinterpret_cast<const std::byte*>(staged), len_max, own_kv);
            }
            for (int j = 0; j < len; ++j) sc[j] = dot(q, own_keys + static_cast<size_t>(j) * D) * scale;
          } else if (IsQuantizedKv(k_type)) {
            kernels::KvScores(k_type, src, B, D, len, q, sc);
            for (int j = 0; j < len; ++j) sc[j] *= scale;
          } else {
            for (int j = 0; j < len; ++j) sc[j] = dot(q, keys + static_cast<size_t>(j) * D) * scale;
          }
        }
      }
      // Softmax per row; the 1 / sum stays apart (applied as V is summed).
      thread_local std::vector<float> inv;
      inv.resize(n_rows);
      for (size_t r = 0; r < n_rows; ++r) {
        float* sc = &scores[r * stride];
        const int n = token_of(r).position + 1;
        const float mx = *std::max_element(sc, sc + n);
        double sum = 0;
        for (int j = 0; j < n; ++j) {
          sc[j] = std::exp(sc[j] - mx);
          sum += sc[j];
        }
        inv[r] = static_cast<float>(1.0 / sum);
        float* out = &attn_[row_at(r)];
        std::fill(out, out + D, 0.0f);
      }
      for (int b0 = 0; b0 < n_max; b0 += B) {
        const int32_t block = ToIndex(table[b0 / B]);
        const int len_max = std::min(B, n_max - b0);
        const std::byte* src = arena_->V(block, layer) + static_cast<size_t>(kh) * v_head;
        const float* values = IsQuantizedKv(v_type) ? nullptr : rows(v_type, src, len_max, kv);
        const float* own_values = nullptr;
        for (size_t r = 0; r < n_rows; ++r) {
          const BatchToken& t = token_of(r);
          if (t.position < b0) continue;
          const int len = std::min(B, t.position + 1 - b0);
          float* sc = &scores[r * stride + static_cast<size_t>(b0)];
          float* out = &attn_[row_at(r)];
          const float* vals = values;
          if (IsQuantizedKv(v_type) && t.position / B == b0 / B) {
            if (own_values == nullptr) {
              const uint16_t* staged = &stage_[StageOffset(table_index, b0 / B, KvPart::kValue, kh)];
              own_values = rows(KvDType::kF16, reinterpret_cast<const std::byte*>(staged), len_max, own_kv);
            }
            vals = own_values;
          } else if (IsQuantizedKv(v_type)) {
            for (int j = 0; j < len; ++j) sc[j] *= inv[r];
            kernels::KvAccumulate(v_type, src, B, D, len, sc, out);
            continue;
          }
          AccumulateValues(out, vals, D, len, sc, inv[r]);
        }
      }
    }
  });
}

size_t Forward::workspace_bytes() const {
  size_t floats = 0;
  for (const auto* v : {&x_, &xn_, &q_, &k_, &v_, &attn_, &gate_, &up_, &ffn_, &out_rows_, &block_rows_}) {
    floats += v->capacity();
  }
  return floats * sizeof(float) + stage_.capacity() * sizeof(uint16_t);
}

Status Forward::Run(const ForwardBatch& batch, std::vector<float>* logits) {
  const LlamaHParams& h = model_.hparams();
  const size_t n = batch.tokens.size();
  const int E = static_cast<int>(h.n_embd), H = static_cast<int>(h.n_head), KVH = static_cast<int>(h.n_head_kv),
            D = static_cast<int>(h.head_dim), F = static_cast<int>(h.n_ff);
  const int V = static_cast<int>(h.n_vocab);
  const int B = arena_->shape().block_size;
  for (const BatchToken& t : batch.tokens) {
    if (t.table < 0 || t.table >= static_cast<int32_t>(batch.tables.size()) || t.position < 0 ||
        static_cast<size_t>(t.position / B) >= batch.tables[t.table].size()) {
      return InvalidArgument(fmt::format("forward: token at position {} has no block in its table", t.position));
    }
    if (t.token < 0 || t.token >= V) return InvalidArgument(fmt::format("forward: token id {} outside the vocabulary of {}", t.token, V));
  }
  KVSTACK_RETURN_IF_ERROR(PlanResiduals(batch));
  PlanAttention(batch);
  x_.resize(n * E);
  xn_.resize(n * E);
  q_.resize(n * H * D);
  k_.resize(n * KVH * D);
  v_.resize(n * KVH * D);
  attn_.resize(n * H * D);
  gate_.resize(n * F);
  up_.resize(n * F);
  ffn_.resize(n * E);
  EmbedTokens(batch);

  const int64_t rows = static_cast<int64_t>(n);
  for (size_t l = 0; l < model_.layers().size(); ++l) {
    const LayerWeights& L = model_.layers()[l];
    for (size_t i = 0; i < n; ++i) RmsNorm(&x_[i * E], L.attn_norm.data(), E, h.rms_eps, &xn_[i * E]);
    kernels::MatMul(L.wq, xn_.data(), rows, q_.data(), pool_, precision_);
    kernels::MatMul(L.wk, xn_.data(), rows, k_.data(), pool_, precision_);
    kernels::MatMul(L.wv, xn_.data(), rows, v_.data(), pool_, precision_);
    if (!L.bq.empty()) {
      for (size_t i = 0; i < n; ++i) {
        for (int j = 0; j < H * D; ++j) q_[i * H * D + j] += L.bq[j];
        for (int j = 0; j < KVH * D; ++j) {
          k_[i * KVH * D + j] += L.bk[j];
          v_[i * KVH * D + j] += L.bv[j];
        }
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const int pos = batch.tokens[i].position;
      for (int hd = 0; hd < H; ++hd) ApplyRope(&q_[(i * H + hd) * D], D, h.n_rot, model_.rope_style(), inv_freq_, pos);
      for (int hd = 0; hd < KVH; ++hd) ApplyRope(&k_[(i * KVH + hd) * D], D, h.n_rot, model_.rope_style(), inv_freq_, pos);
    }
    StoreKv(batch, static_cast<int>(l));
    Attention(batch, static_cast<int>(l));
    kernels::MatMul(L.wo, attn_.data(), rows, ffn_.data(), pool_, precision_);
    for (size_t j = 0; j < n * E; ++j) x_[j] += ffn_[j];

    for (size_t i = 0; i < n; ++i) RmsNorm(&x_[i * E], L.ffn_norm.data(), E, h.rms_eps, &xn_[i * E]);
    kernels::MatMul(L.w_gate, xn_.data(), rows, gate_.data(), pool_, precision_);
    kernels::MatMul(L.w_up, xn_.data(), rows, up_.data(), pool_, precision_);
    for (size_t j = 0; j < n * F; ++j) {
      const float g = gate_[j];
      gate_[j] = g / (1.0f + std::exp(-g)) * up_[j];
    }
    kernels::MatMul(L.w_down, gate_.data(), rows, ffn_.data(), pool_, precision_);
    for (size_t j = 0; j < n * E; ++j) x_[j] += ffn_[j];
  }

  // Logits only where asked: the final norm and output projection of those rows.
  out_rows_.clear();
  for (size_t i = 0; i < n; ++i) {
    if (!batch.tokens[i].want_logits) continue;
    const size_t r = out_rows_.size() / E;
    out_rows_.resize((r + 1) * E);
    RmsNorm(&x_[i * E], model_.output_norm().data(), E, h.rms_eps, &out_rows_[r * E]);
  }
  const int64_t n_out = static_cast<int64_t>(out_rows_.size() / E);
  logits->resize(static_cast<size_t>(n_out) * V);
  if (n_out > 0) kernels::MatMul(model_.output(), out_rows_.data(), n_out, logits->data(), pool_, precision_);
  return Status::Ok();
}

}  // namespace kvstack::engine
