// Histogram: counts of observations in fixed buckets, for latency and size
// metrics exported to Prometheus and /v1/memory.
//
// Buckets are given by their upper bounds (ascending); one more bucket holds
// everything above the last bound. Percentiles are estimated by linear
// interpolation within the bucket that holds them.
// Thread safety: none; wrap in the owner's lock.
#pragma once

#include <cstdint>
#include <vector>

namespace kvstack {

class Histogram {
 public:
  // REQUIRES: upper_bounds ascending, non-empty.
  explicit Histogram(std::vector<double> upper_bounds);

  // Bounds 1, 2, 5, 10, 20, 50, ... up to `max` (inclusive if it lands on one).
  static Histogram Decades125(double min, double max);

  void Observe(double value);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  // counts()[i] holds observations in (bounds[i-1], bounds[i]]; the last entry
  // holds those above the last bound. Not cumulative.
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  double max() const { return max_; }

  // q in [0, 1]; 0 when empty.
  double Percentile(double q) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
  double max_ = 0;
};

}  // namespace kvstack
