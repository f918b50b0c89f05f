#include "tiers/tier_stats.h"

#include <algorithm>

namespace kvstack::tiers_internal {
namespace {

// Exponential smoothing over batches: recent batches weigh most, one slow
// batch does not swing the engine's onboard-or-recompute choice.
constexpr double kSmoothing = 0.2;

void Smooth(double* avg, uint64_t bytes, int64_t micros) {
  if (bytes == 0) return;
  const double rate = static_cast<double>(bytes) * 1e6 / static_cast<double>(std::max<int64_t>(micros, 1));
  *avg = *avg == 0 ? rate : (1 - kSmoothing) * *avg + kSmoothing * rate;
}

}  // namespace

void TierStats::RecordGet(uint64_t hits, uint64_t misses, uint64_t bytes, int64_t start_us) {
  const int64_t micros = WallMicros() - start_us;
  std::lock_guard<std::mutex> lock(mu_);
  m_.hits += hits;
  m_.misses += misses;
  m_.bytes_out += bytes;
  m_.get_latency_us.Observe(static_cast<double>(micros));
  Smooth(&m_.get_bytes_per_s, bytes, micros);
}

void TierStats::RecordPut(uint64_t stored, uint64_t not_stored, uint64_t bytes, int64_t start_us) {
  const int64_t micros = WallMicros() - start_us;
  std::lock_guard<std::mutex> lock(mu_);
  m_.stored += stored;
  m_.not_stored += not_stored;
  m_.bytes_in += bytes;
  m_.put_latency_us.Observe(static_cast<double>(micros));
  Smooth(&m_.put_bytes_per_s, bytes, micros);
}

void TierStats::AddFaults(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  m_.faults += n;
}

void TierStats::AddEvictions(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  m_.evictions += n;
}

TierMetrics TierStats::Snapshot(int64_t blocks, int64_t capacity) const {
  std::lock_guard<std::mutex> lock(mu_);
  TierMetrics out = m_;
  out.blocks = blocks;
  out.capacity_blocks = capacity;
  return out;
}

}  // namespace kvstack::tiers_internal
