#include "kvstack/clock.h"

#include <chrono>

namespace kvstack {

Micros SteadyClock::Now() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const Clock& SteadyClock::Default() {
  static const SteadyClock clock;
  return clock;
}

}  // namespace kvstack
