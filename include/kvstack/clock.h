// Clock: the seam through which kvstack reads time.
//
// Retention expiry, pin TTLs, block lifetimes and latency metrics all read time
// through a Clock, so tests move time by hand (ManualClock) instead of sleeping.
// Time is a count of microseconds on a monotonic scale; only differences mean
// anything.
//
// Thread safety: SteadyClock is stateless and safe from any thread. ManualClock
// is safe from any thread (its value is atomic).
#pragma once

#include <atomic>
#include <cstdint>

namespace kvstack {

// Microseconds on a monotonic scale.
using Micros = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  // Never decreases between two calls on the same clock.
  virtual Micros Now() const = 0;
};

// The process's monotonic clock (std::chrono::steady_clock).
class SteadyClock final : public Clock {
 public:
  Micros Now() const override;
  // A process-wide instance, for callers that were given no clock.
  static const Clock& Default();
};

// A clock that stands still until told to move; for tests and the simulator.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Micros start = 0) : now_(start) {}
  Micros Now() const override { return now_.load(std::memory_order_relaxed); }
  // REQUIRES: delta >= 0 (time never goes backwards).
  void Advance(Micros delta) { now_.fetch_add(delta, std::memory_order_relaxed); }
  // REQUIRES: t >= Now().
  void Set(Micros t) { now_.store(t, std::memory_order_relaxed); }

 private:
  std::atomic<Micros> now_;
};

}  // namespace kvstack
