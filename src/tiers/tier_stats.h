// TierStats: the counters and latency histograms behind Tier::Metrics(),
// recorded from any thread.
// Thread safety: every method is safe from any thread (one internal mutex,
// held only to add numbers).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "kvstack/tier.h"

namespace kvstack::tiers_internal {

// Wall time for latency and bandwidth: metrics always use the real clock, so
// a test's manual clock (which drives behavior) does not flatten them.
inline int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class TierStats {
 public:
  explicit TierStats(std::string name) { m_.name = std::move(name); }

  // A finished get (or lookup, with bytes 0) batch that started at `start_us`.
  void RecordGet(uint64_t hits, uint64_t misses, uint64_t bytes, int64_t start_us);
  // A finished put batch.
  void RecordPut(uint64_t stored, uint64_t not_stored, uint64_t bytes, int64_t start_us);
  void AddFaults(uint64_t n);
  void AddEvictions(uint64_t n);

  // `blocks` and `capacity` come from the tier's index, read by the tier.
  TierMetrics Snapshot(int64_t blocks, int64_t capacity) const;

 private:
  mutable std::mutex mu_;
  TierMetrics m_;
};

}  // namespace kvstack::tiers_internal
