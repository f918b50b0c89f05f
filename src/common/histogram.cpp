#include "kvstack/histogram.h"

#include <algorithm>
#include <cassert>

namespace kvstack {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {
  assert(!bounds_.empty() && std::is_sorted(bounds_.begin(), bounds_.end()));
}

Histogram Histogram::Decades125(double min, double max) {
  std::vector<double> b;
  for (double decade = min; decade <= max; decade *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (decade * m <= max * (1 + 1e-9)) b.push_back(decade * m);
    }
  }
  return Histogram(std::move(b));
}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  ++count_;
  sum_ += value;
  if (count_ == 1 || value > max_) max_ = value;
}

double Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  const double rank = q * static_cast<double>(count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] == 0) continue;
    if (static_cast<double>(seen + counts_[i]) >= rank) {
      const double lo = i == 0 ? 0 : bounds_[i - 1];
      const double hi = i < bounds_.size() ? std::min(bounds_[i], max_) : max_;
      const double within = (rank - static_cast<double>(seen)) / static_cast<double>(counts_[i]);
      return lo + (std::max(hi, lo) - lo) * std::clamp(within, 0.0, 1.0);
    }
    seen += counts_[i];
  }
  return max_;
}

}  // namespace kvstack
