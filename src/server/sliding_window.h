// SlidingWindow: the samples of the last `max_age` (at most `max_samples` of
// them, the newest kept), for exact percentiles over a recent window rather
// than since start: /v1/memory's prompt-length and TTFT percentiles describe
// the traffic now, which is what a capacity decision needs.
//
// Invariant: samples are in the order added and their times never decrease
// (Add() clamps a time that would go backwards to the newest one).
// Thread safety: none; the owner (WorkloadRecorder) locks.
#pragma once

#include <cstddef>
#include <deque>

#include "kvstack/clock.h"

namespace kvstack::server {

struct Percentiles {
  size_t count = 0;
  double p50 = 0, p95 = 0, p99 = 0;
  double max = 0;
};

class SlidingWindow {
 public:
  // REQUIRES: max_age > 0, max_samples > 0.
  SlidingWindow(Micros max_age, size_t max_samples);

  void Add(Micros at, double value);
  // Nearest-rank percentiles of the samples no older than max_age at `now`;
  // all zero when there are none.
  Percentiles Get(Micros now) const;

 private:
  struct Sample {
    Micros at;
    double value;
  };
  Micros max_age_;
  size_t max_samples_;
  std::deque<Sample> samples_;
};

}  // namespace kvstack::server
