// The shared state behind a TierFuture: per-block outcomes, filled by the
// tier (often on its worker thread), read by the caller once done.
//
// Protocol: the tier sets ok[i] for the blocks it finishes, then calls
// Finish() once for the whole batch. Finish() publishes every ok[i] written
// before it (release), and IsReady() acquires: a caller that saw ready reads
// final outcomes. After Finish() nothing writes the state again.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kvstack/tier.h"

namespace kvstack::tiers_internal {

struct OpState {
  explicit OpState(size_t n) : ok(n, 0) {}

  bool IsReady() const { return done.load(std::memory_order_acquire); }
  void Finish() {
    {
      std::lock_guard<std::mutex> lock(mu);
      done.store(true, std::memory_order_release);
    }
    cv.notify_all();
  }
  void Wait() {
    if (IsReady()) return;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return IsReady(); });
  }

  std::vector<uint8_t> ok;  // written by the tier until Finish()
  std::atomic<bool> done{false};
  std::mutex mu;
  std::condition_variable cv;
};

// A future already finished with the given outcomes.
inline TierFuture ReadyFuture(std::vector<uint8_t> ok) {
  auto s = std::make_shared<OpState>(0);
  s->ok = std::move(ok);
  s->Finish();
  return TierFuture(std::move(s));
}

}  // namespace kvstack::tiers_internal
