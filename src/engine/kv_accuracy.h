// KV accuracy: how far attention over a quantized KV cache moves a model's
// next-token distribution from attention over f32 KV, teacher-forced.
//
// One text per window of `context` tokens is sampled from the model itself
// (f32 KV, temperature 1, seeded: text the model finds natural, of any
// length, for any model, random weights included). Every candidate KV type
// pair runs the same tokens in lockstep, one decode step per position, each
// over its own arena; at every position the candidate's distribution is
// compared with the f32 one: top-1 agreement and KL(p_f32 || p_candidate).
//
// Callers: `kvstack bench kv-accuracy`, the engine's accuracy tests.
// Thread safety: one call at a time per thread; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvstack/kv_arena.h"
#include "kvstack/status.h"

namespace kvstack::engine {

// One KV setting to compare with f32 KV.
struct KvCandidate {
  KvDType k = KvDType::kF16, v = KvDType::kF16;
  // Blocks that come back from tiers storing this type
  // (EngineOptions::tier_kv_dtype): each block, once full, is converted to it
  // and widened back in place, as if every earlier block had been offloaded
  // and onboarded. Unset: the device KV only.
  std::optional<KvDType> via_tier;
};

struct KvAccuracyOptions {
  std::string model_path;
  std::vector<KvCandidate> candidates;
  int64_t positions = 20000;  // compared positions in all (whole windows: rounded up)
  int32_t context = 0;        // tokens per window; 0: the model's training context
  int32_t block_size = 16;
  uint64_t seed = 1;
  int threads = 1;
};

struct KvAccuracy {
  KvDType k_type = KvDType::kF32, v_type = KvDType::kF32;
  std::optional<KvDType> via_tier;
  int64_t positions = 0;
  double top1_agreement = 0;  // share of positions whose argmax equals f32 KV's
  double mean_kl = 0;         // nats
  double p99_kl = 0;
  double max_kl = 0;
};

struct KvAccuracyReport {
  std::string model_identity;
  int32_t context = 0;
  int32_t windows = 0;
  std::vector<KvAccuracy> results;  // one per candidate, in order
};

// InvalidArgument names a bad option (no candidates, a context beyond the
// model's); the model loader's errors otherwise.
Result<KvAccuracyReport> MeasureKvAccuracy(const KvAccuracyOptions& options);

}  // namespace kvstack::engine
