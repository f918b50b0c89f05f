// Simulator analyses over many replays and over a trace itself: hit rate vs
// capacity, prefixes worth pinning, context percentiles, and the review that
// answers an architecture review's questions. Every replay here is
// Simulate() (sim_replay.h); the rest is arithmetic on the trace.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvstack/sim_cost_model.h"
#include "kvstack/sim_replay.h"
#include "kvstack/sizing.h"
#include "kvstack/status.h"
#include "kvstack/trace.h"

namespace kvstack::sim {

struct SweepPoint {
  std::string policy;
  int64_t device_tokens = 0;
  double token_hit_rate = 0;
  double block_hit_rate = 0;
  double ttft_p50_s = 0;
};
// Capacities on a log axis: `points` values from `min_tokens` to `max_tokens`
// (both rounded to blocks), each replayed under each policy.
// REQUIRES: points >= 2, 0 < min_tokens <= max_tokens (else kInvalidArgument).
Result<std::vector<SweepPoint>> SweepCapacity(const Trace& trace, const CostModel& cost, const SimOptions& base,
                                              const std::vector<std::string>& policies, int64_t min_tokens,
                                              int64_t max_tokens, int points);
// Tokens a cache needs to hold every distinct full block of the trace (the
// capacity past which no eviction happens), at `block_size`.
int64_t DistinctPromptTokens(const Trace& trace, int32_t block_size);

// A prefix whose reuse would pay for a pin.
struct PinCandidate {
  int64_t tokens = 0;       // prefix length
  int64_t reuses = 0;       // requests after the first that start with it
  int64_t score = 0;        // reuses x tokens: prefill tokens a pin could save
  int64_t kv_bytes = 0;     // capacity it would take (0 when unknown)
  std::string tenant;
  std::string example;      // the first block ids, for recognition
};
// The top `limit` prefixes by score, none a prefix of another, from the
// trace's content ids (trace analysis only; no cache involved).
std::vector<PinCandidate> FindPinCandidates(const Trace& trace, int64_t kv_bytes_per_token, size_t limit);

struct ContextStats {
  std::string group;  // "all" or a tenant
  int64_t requests = 0;
  Percentiles input_tokens, total_tokens;  // prompt, prompt + output
};
std::vector<ContextStats> ContextPercentiles(const Trace& trace);

// The six questions of `kvstack sim --review`, answered from one trace.
struct Review {
  std::vector<ContextStats> contexts;
  // HBM split at the replay's peak: from sizing, with KV at the peak's blocks.
  std::optional<sizing::SizingReport> sizing;
  int64_t peak_kv_bytes_per_gpu = 0;
  int32_t peak_running = 0;
  std::vector<PinCandidate> pins;
  std::vector<SimResult> policies;  // one replay per policy, same capacity
  bool has_priorities = false;
  SimResult baseline;               // the first policy's replay
  // The counterfactual: the cache shrunk until the hit rate halves.
  SimResult halved;
  int64_t halved_device_tokens = 0;
  std::vector<SweepPoint> sweep;
};

struct ReviewOptions {
  std::vector<std::string> policies{"lru", "priority-lru", "lfu"};
  int sweep_points = 8;
  size_t pin_limit = 10;
  // For the HBM split; absent: no split (a --profile cost model).
  std::optional<sizing::ModelSpec> model;
  std::optional<sizing::GpuSpec> gpu;
  sizing::SizingOptions sizing;
};
Result<Review> RunReview(const Trace& trace, const CostModel& cost, const SimOptions& base,
                         const ReviewOptions& options);

}  // namespace kvstack::sim
