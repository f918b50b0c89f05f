// Plan: how many sequences a deployment holds at once, and what would reach
// a target concurrency.
//
// `kvstack plan` is its command-line face. It stands on sizing.h (the same
// model and GPU presets and the same exact byte arithmetic as `kvstack
// size`) and adds the deployment view: the HBM of each GPU split into
// weights, KV, activations and workspace, and a runtime reserve; tokens that
// fit per replica (a tensor-parallel group); the maximum concurrent
// sequences at the p50, p95 and p99 context length; and, for a target
// concurrency, the alternatives that reach it (KV or weight precision,
// tensor parallelism, more GPUs, an offload tier).
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvstack/sizing.h"
#include "kvstack/status.h"

namespace kvstack::plan {

struct PlanOptions {
  int64_t gpus = 1;            // GPUs in total; replicas = gpus / tensor_parallel
  int64_t tensor_parallel = 1;
  sizing::Precision weights = sizing::Precision::kBf16;
  sizing::Precision kv = sizing::Precision::kBf16;
  // Tokens per sequence (prompt plus output) at each percentile.
  int64_t context_p50 = 4096, context_p95 = 16384, context_p99 = 32768;
  // HBM for activations and the kernels' workspace: a fraction of each GPU.
  double activation_fraction = 0.08;
  // HBM the runtime keeps (CUDA context, communication buffers, allocator
  // slack), per GPU.
  int64_t runtime_reserve_bytes = int64_t{2} << 30;
  std::optional<int64_t> target_concurrency;
};

struct Concurrency {
  int64_t context_tokens = 0;
  int64_t per_replica = 0;  // floor(tokens that fit / context)
  int64_t total = 0;        // per_replica x replicas
};

// One way to change the deployment, evaluated at the p95 context.
struct Alternative {
  std::string change;       // "KV fp8", "tensor parallel 4", "6 GPUs", "host tier"
  int64_t gpus = 0;
  int64_t concurrency_p95 = 0;
  bool reaches_target = false;
  std::string note;
};

struct PlanReport {
  sizing::SizingReport sizing;  // one GPU of a replica, context = p95
  PlanOptions options;
  int64_t replicas = 0;
  // Per GPU; they add up to hbm_bytes (kv is 0 and short > 0 when the
  // weights and reserves do not fit).
  int64_t hbm_bytes = 0, weight_bytes = 0, kv_bytes = 0, activation_bytes = 0, reserve_bytes = 0, short_bytes = 0;
  int64_t kv_bytes_per_token = 0;          // whole model
  int64_t kv_bytes_per_token_per_gpu = 0;
  int64_t tokens_per_replica = 0;          // tokens that fit in one replica
  Concurrency p50, p95, p99;
  std::vector<Alternative> alternatives;   // empty without a target
  // KV the target needs beyond HBM at p95 (whole model, bytes), for sizing
  // an offload tier; 0 when the target fits.
  int64_t target_overflow_bytes = 0;
};

// On failure: kInvalidArgument for gpus not a multiple of tensor_parallel,
// contexts < 1 or not ascending, an activation fraction outside [0, 1), a
// negative reserve, or a ComputeSizing error.
Result<PlanReport> ComputePlan(const sizing::ModelSpec& model, const sizing::GpuSpec& gpu, const PlanOptions& options);

// The terminal table.
std::string FormatPlan(const PlanReport& report);
// A self-contained HTML page: the memory split as an SVG bar, the tables.
std::string RenderPlanHtml(const PlanReport& report);

}  // namespace kvstack::plan
