#include "engine/kv_accuracy.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include <fmt/format.h>

#include "engine/forward.h"
#include "engine/kv_block_convert.h"
#include "engine/llama_model.h"
#include "kvstack/tokenizer.h"

namespace kvstack::engine {
namespace {

// log-softmax in double.
void LogSoftmax(const float* logits, int n, std::vector<double>* out) {
  out->resize(static_cast<size_t>(n));
  const double mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (int i = 0; i < n; ++i) (*out)[i] = double(logits[i]) - lse;
}

struct Runner {
  std::unique_ptr<KvArena> arena;
  std::optional<KvShape> tier;      // blocks round-trip through this layout once full
  std::vector<std::byte> scratch;   // one block in the tier layout
  std::unique_ptr<Forward> forward;
  std::unique_ptr<KvResidual> residual;  // quantized KV: the partial block at f16
  std::vector<float> logits;
  std::vector<double> kl;
  int64_t agree = 0;
};

}  // namespace

Result<KvAccuracyReport> MeasureKvAccuracy(const KvAccuracyOptions& o) {
  if (o.candidates.empty()) return InvalidArgument("kv accuracy: no KV types to compare");
  auto model = LlamaModel::Load(o.model_path);
  if (!model.ok()) return model.status();
  const LlamaModel& m = **model;
  const LlamaHParams& h = m.hparams();
  const int32_t ctx = o.context > 0 ? o.context : static_cast<int32_t>(h.n_ctx_train);
  if (ctx < 2 || static_cast<uint32_t>(ctx) > std::max<uint32_t>(h.n_ctx_train, 2)) {
    return InvalidArgument(fmt::format("kv accuracy: context {} must be 2..{} (the model's)", ctx, h.n_ctx_train));
  }
  auto tok = Tokenizer::FromGguf(m.file());
  const Token bos = tok.ok() && (*tok)->bos() ? *(*tok)->bos() : 1;
  const int B = o.block_size;
  const int32_t blocks = (ctx + B - 1) / B;
  kernels::ThreadPool pool(o.threads);
  auto make = [&](KvDType k, KvDType v, std::optional<KvDType> via_tier) -> Result<Runner> {
    KvShape shape{.num_layers = static_cast<int32_t>(h.n_layer), .num_kv_heads = static_cast<int32_t>(h.n_head_kv),
                  .head_dim = static_cast<int32_t>(h.head_dim), .block_size = B, .dtype = k, .v_dtype = v};
    auto a = KvArena::Create(shape, blocks, KvStorageMode::kAllocate);
    if (!a.ok()) return a.status();
    Runner r;
    r.arena = std::make_unique<KvArena>(std::move(a).value());
    r.forward = std::make_unique<Forward>(m, r.arena.get(), &pool);
    if (KvResidual::Needed(shape)) r.residual = std::make_unique<KvResidual>(shape);
    if (via_tier) {
      auto t = TierKvShape(shape, *via_tier);
      if (!t.ok()) return t.status();
      r.tier = *t;
      r.scratch.resize(t->block_bytes());
    }
    return r;
  };
  auto ref = make(KvDType::kF32, KvDType::kF32, std::nullopt);
  if (!ref.ok()) return ref.status();
  std::vector<Runner> cands;
  for (const KvCandidate& cand : o.candidates) {
    auto r = make(cand.k, cand.v, cand.via_tier);
    if (!r.ok()) return r.status();
    cands.push_back(std::move(r).value());
  }
  std::vector<BlockId> table(static_cast<size_t>(blocks));
  for (int32_t i = 0; i < blocks; ++i) table[i] = static_cast<BlockId>(i);
  ForwardBatch batch;
  batch.tables = {table};
  batch.tokens = {BatchToken{.token = bos, .position = 0, .table = 0, .want_logits = true}};

  std::mt19937_64 rng(o.seed);
  const int V = static_cast<int>(h.n_vocab);
  std::vector<double> lp_ref, lp;
  const int32_t windows = static_cast<int32_t>(std::max<int64_t>(1, (o.positions + ctx - 2) / (ctx - 1)));
  for (int32_t w = 0; w < windows; ++w) {
    Token next = bos;
    // Each position's logits predict the next token; the last position of a
    // window has no successor to feed, so ctx - 1 are compared.
    for (int32_t pos = 0; pos + 1 < ctx; ++pos) {
      batch.tokens[0].token = next;
      batch.tokens[0].position = pos;
      batch.residuals = {ref->residual.get()};
      KVSTACK_RETURN_IF_ERROR(ref->forward->Run(batch, &ref->logits));
      LogSoftmax(ref->logits.data(), V, &lp_ref);
      const int top_ref = static_cast<int>(std::max_element(lp_ref.begin(), lp_ref.end()) - lp_ref.begin());
      for (Runner& c : cands) {
        batch.residuals = {c.residual.get()};
        KVSTACK_RETURN_IF_ERROR(c.forward->Run(batch, &c.logits));
        LogSoftmax(c.logits.data(), V, &lp);
        const int top = static_cast<int>(std::max_element(lp.begin(), lp.end()) - lp.begin());
        c.agree += top == top_ref;
        double kl = 0;
        for (int i = 0; i < V; ++i) kl += std::exp(lp_ref[i]) * (lp_ref[i] - lp[i]);
        c.kl.push_back(std::max(kl, 0.0));
        if (c.tier && pos % B == B - 1) {
          // The block is full: from now on it is read as tiers would hand it back.
          std::byte* block = c.arena->Block(pos / B);
          ConvertKvBlock(c.arena->shape(), block, *c.tier, c.scratch.data());
          ConvertKvBlock(*c.tier, c.scratch.data(), c.arena->shape(), block);
        }
      }
      // The text: a sample of the f32 distribution (temperature 1).
      std::uniform_real_distribution<double> u(0.0, 1.0);
      double r = u(rng), acc = 0;
      next = static_cast<Token>(V - 1);
      for (int i = 0; i < V; ++i) {
        acc += std::exp(lp_ref[i]);
        if (r < acc) {
          next = static_cast<Token>(i);
          break;
        }
      }
    }
  }
  KvAccuracyReport rep;
  rep.model_identity = m.identity();
  rep.context = ctx;
  rep.windows = windows;
  for (size_t i = 0; i < cands.size(); ++i) {
    Runner& c = cands[i];
    KvAccuracy a;
    a.k_type = o.candidates[i].k;
    a.v_type = o.candidates[i].v;
    a.via_tier = o.candidates[i].via_tier;
    a.positions = static_cast<int64_t>(c.kl.size());
    a.top1_agreement = double(c.agree) / double(a.positions);
    double sum = 0;
    for (double k : c.kl) sum += k;
    a.mean_kl = sum / double(a.positions);
    std::vector<double> sorted = c.kl;
    std::sort(sorted.begin(), sorted.end());
    a.p99_kl = sorted[std::min(sorted.size() - 1, static_cast<size_t>(0.99 * double(sorted.size())))];
    a.max_kl = sorted.back();
    rep.results.push_back(a);
  }
  return rep;
}

}  // namespace kvstack::engine
