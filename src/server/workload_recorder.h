// WorkloadRecorder: what finished requests say about the workload, for
// GET /v1/memory and the dashboard (GET /metrics keeps its own cumulative
// histograms in MetricsRecorder):
//   prompt length p50/p95/p99 over a sliding window;
//   TTFT p50/p95/p99 over the same window, split by how much of the prompt
//     the prefix cache served: none, under half, half or more;
//   the hottest prefixes (HotPrefixes);
//   a timeline of fixed buckets (requests, prompt tokens, cached tokens, TTFT
//     sum) from which the dashboard draws the hit rate over time.
// Times are the engine clock's (RequestMetrics), so callers pass `now` from
// the same clock.
// Thread safety: thread-safe (one mutex, never held while calling out).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/engine.h"
#include "server/hot_prefixes.h"
#include "server/sliding_window.h"

namespace kvstack::server {

// How much of a prompt came from the prefix cache.
enum class HitShare : uint8_t { kNone = 0, kUnderHalf = 1, kHalfOrMore = 2 };
inline constexpr int kNumHitShares = 3;
HitShare HitShareOf(int32_t prompt_tokens, int32_t cached_tokens);
std::string_view HitShareName(HitShare s);  // "none", "under_half", "half_or_more"

struct WorkloadOptions {
  Micros window = 300'000'000;     // percentile window: 5 minutes
  size_t max_window_samples = 16384;
  Micros bucket = 5'000'000;       // timeline resolution: 5 seconds
  size_t max_buckets = 120;        // 10 minutes of timeline
  size_t max_prefixes = 1024;      // tracked hot prefixes
};

struct TimelineBucket {
  Micros start = 0;  // engine clock
  uint64_t requests = 0;
  uint64_t prompt_tokens = 0;
  uint64_t cached_tokens = 0;
  uint64_t generated_tokens = 0;
};

class WorkloadRecorder {
 public:
  explicit WorkloadRecorder(const WorkloadOptions& options = {});

  // One finished request (cancelled ones too: their prompt was served) of
  // tenant `tenant` (its label, tenant_label.h: never the salt).
  void Record(const RequestMetrics& m, const std::string& tenant);

  struct Snapshot {
    Micros now = 0;
    double window_s = 0;
    double bucket_s = 0;
    Percentiles prompt_tokens;
    std::array<Percentiles, kNumHitShares> ttft_s;  // by HitShare
    std::vector<HotPrefix> hot_prefixes;            // hottest first
    std::vector<TimelineBucket> timeline;           // oldest first
    uint64_t recorded = 0;                          // requests since start
  };
  Snapshot Get(Micros now, size_t top_prefixes) const;

 private:
  const WorkloadOptions options_;
  mutable std::mutex mu_;
  // GUARDED_BY(mu_):
  SlidingWindow prompt_tokens_;
  std::array<SlidingWindow, kNumHitShares> ttft_s_;
  HotPrefixes hot_;
  std::deque<TimelineBucket> timeline_;
  uint64_t recorded_ = 0;
};

}  // namespace kvstack::server
