// Plan arithmetic: the HBM split, concurrency at context percentiles, and
// alternatives for a target concurrency. Every byte count comes from
// sizing::ComputeSizing; this file only adds the deployment view.
#include <algorithm>

#include <fmt/format.h>

#include "kvstack/plan.h"

namespace kvstack::plan {
namespace {

namespace sz = ::kvstack::sizing;

Concurrency At(const sz::SizingReport& s, int64_t context, int64_t replicas) {
  Concurrency c;
  c.context_tokens = context;
  // A sliding window caps what one sequence keeps, as in sizing.
  const int64_t kept = s.model.sliding_window ? std::min(context, *s.model.sliding_window) : context;
  c.per_replica = s.weights_fit && kept > 0 ? s.tokens_that_fit / kept : 0;
  c.total = c.per_replica * replicas;
  return c;
}

// The p95 concurrency of `options` (or nothing when it is not a valid layout).
std::optional<int64_t> ConcurrencyP95(const sz::ModelSpec& model, const sz::GpuSpec& gpu, const PlanOptions& options) {
  PlanOptions o = options;
  o.target_concurrency.reset();
  auto r = ComputePlan(model, gpu, o);
  if (!r.ok()) return std::nullopt;
  return r->p95.total;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void AddAlternatives(const sz::ModelSpec& model, const sz::GpuSpec& gpu, PlanReport* r) {
  const PlanOptions& base = r->options;
  const int64_t target = *base.target_concurrency;
  const auto add = [&](std::string change, const PlanOptions& o, std::string note = "") {
    auto c = ConcurrencyP95(model, gpu, o);
    if (!c) return;
    r->alternatives.push_back({std::move(change), o.gpus, *c, *c >= target, std::move(note)});
  };
  const auto cheaper = [](sz::Precision a, sz::Precision than) {
    const sz::BytesPerValue x = sz::PrecisionBytes(a), y = sz::PrecisionBytes(than);
    return x.numerator * y.denominator < y.numerator * x.denominator;
  };
  for (sz::Precision p : {sz::Precision::kFp8, sz::Precision::kInt4}) {
    if (!cheaper(p, base.kv)) continue;
    PlanOptions o = base;
    o.kv = p;
    add(fmt::format("KV {}", sz::PrecisionName(p)), o, "check quality: fp8 KV is usually safe, int4 KV often is not");
  }
  for (sz::Precision p : {sz::Precision::kFp8, sz::Precision::kInt4}) {
    if (!cheaper(p, base.weights)) continue;
    PlanOptions o = base;
    o.weights = p;
    add(fmt::format("weights {}", sz::PrecisionName(p)), o);
  }
  for (int64_t tp = base.tensor_parallel * 2; tp <= 8; tp *= 2) {
    PlanOptions o = base;
    o.tensor_parallel = tp;
    o.gpus = CeilDiv(std::max(base.gpus, tp), tp) * tp;
    add(fmt::format("tensor parallel {}", tp), o, "more GPUs per replica: fewer replicas, each holding more");
  }
  if (r->p95.per_replica > 0) {
    PlanOptions o = base;
    o.gpus = CeilDiv(target, r->p95.per_replica) * base.tensor_parallel;
    if (o.gpus > base.gpus) add(fmt::format("{} GPUs ({} replicas)", o.gpus, o.gpus / base.tensor_parallel), o);
  }
  // Offload: the KV the target needs beyond HBM could live in host memory,
  // but only for sequences that are not decoding at that moment.
  // Tokens are far below 2^53 in any real deployment, so doubles are exact.
  const double need = static_cast<double>(target) * static_cast<double>(r->p95.context_tokens);
  const double have = static_cast<double>(r->tokens_per_replica) * static_cast<double>(r->replicas);
  if (need > have) {
    r->target_overflow_bytes = static_cast<int64_t>(
        std::min((need - have) * static_cast<double>(r->kv_bytes_per_token), 9.2e18));
    r->alternatives.push_back(
        {fmt::format("host tier of {}", sz::FormatBytes(r->target_overflow_bytes)), base.gpus, target, false,
         fmt::format("reaches {} only when at most {} of them decode at once; the rest wait in the tier",
                     target, r->p95.total)});
  }
}

}  // namespace

Result<PlanReport> ComputePlan(const sz::ModelSpec& model, const sz::GpuSpec& gpu, const PlanOptions& o) {
  if (o.tensor_parallel < 1 || o.gpus < 1 || o.gpus % o.tensor_parallel != 0) {
    return InvalidArgument(fmt::format("--gpus {} must be a positive multiple of --tp {}", o.gpus, o.tensor_parallel));
  }
  if (o.context_p50 < 1 || o.context_p50 > o.context_p95 || o.context_p95 > o.context_p99) {
    return InvalidArgument(fmt::format("context p50 {}, p95 {}, p99 {}: must be positive and ascending", o.context_p50,
                                       o.context_p95, o.context_p99));
  }
  if (!(o.activation_fraction >= 0 && o.activation_fraction < 1)) {
    return InvalidArgument(fmt::format("activation fraction {}: must be in [0, 1)", o.activation_fraction));
  }
  if (o.runtime_reserve_bytes < 0) return InvalidArgument("runtime reserve: must not be negative");
  if (o.target_concurrency && *o.target_concurrency < 1) return InvalidArgument("--concurrency: must be at least 1");

  PlanReport r;
  r.options = o;
  r.replicas = o.gpus / o.tensor_parallel;
  r.hbm_bytes = gpu.hbm_bytes;
  r.activation_bytes = sz::WorkspaceReserve::Fraction(o.activation_fraction).BytesOn(gpu.hbm_bytes);
  r.reserve_bytes = o.runtime_reserve_bytes;
  sz::SizingOptions so;
  so.gpus = o.tensor_parallel;
  so.weights = o.weights;
  so.kv = o.kv;
  so.context_tokens = o.context_p95;
  so.sequences = 1;
  so.workspace = sz::WorkspaceReserve::Bytes(r.activation_bytes + r.reserve_bytes);
  auto sizing = sz::ComputeSizing(model, gpu, so);
  if (!sizing.ok()) return sizing.status();
  r.sizing = std::move(sizing).value();
  r.weight_bytes = r.sizing.weight_bytes_per_gpu;
  r.kv_bytes = r.sizing.kv_budget_bytes_per_gpu;
  r.short_bytes = r.sizing.shortfall_bytes_per_gpu;
  r.kv_bytes_per_token = r.sizing.kv_bytes_per_token;
  r.kv_bytes_per_token_per_gpu = r.sizing.kv_bytes_per_token_per_gpu;
  r.tokens_per_replica = r.sizing.tokens_that_fit;
  r.p50 = At(r.sizing, o.context_p50, r.replicas);
  r.p95 = At(r.sizing, o.context_p95, r.replicas);
  r.p99 = At(r.sizing, o.context_p99, r.replicas);
  if (o.target_concurrency) AddAlternatives(model, gpu, &r);
  return r;
}

}  // namespace kvstack::plan
