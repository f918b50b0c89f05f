#include "server/sliding_window.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kvstack::server {

SlidingWindow::SlidingWindow(Micros max_age, size_t max_samples) : max_age_(max_age), max_samples_(max_samples) {}

void SlidingWindow::Add(Micros at, double value) {
  if (!samples_.empty()) at = std::max(at, samples_.back().at);
  samples_.push_back({at, value});
  while (samples_.size() > max_samples_) samples_.pop_front();
  while (!samples_.empty() && samples_.front().at < at - max_age_) samples_.pop_front();
}

Percentiles SlidingWindow::Get(Micros now) const {
  std::vector<double> values;
  values.reserve(samples_.size());
  for (const Sample& s : samples_) {
    if (s.at >= now - max_age_) values.push_back(s.value);
  }
  Percentiles p;
  p.count = values.size();
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  auto rank = [&](double q) {
    const size_t r = static_cast<size_t>(std::ceil(q * double(values.size())));
    return values[std::clamp<size_t>(r, 1, values.size()) - 1];
  };
  p.p50 = rank(0.50);
  p.p95 = rank(0.95);
  p.p99 = rank(0.99);
  p.max = values.back();
  return p;
}

}  // namespace kvstack::server
