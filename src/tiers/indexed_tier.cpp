#include "tiers/indexed_tier.h"

#include <vector>

#include "tiers/op_state.h"

namespace kvstack::tiers_internal {

bool IndexedTier::Contains(const BlockHash& hash) const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_->Find(hash).has_value();
}

void IndexedTier::SetRemovalListener(std::function<void(const BlockHash&)> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  index_->set_on_forget(std::move(listener));
}

void IndexedTier::ForEachHeld(const std::function<void(const BlockHash&, Priority)>& held) const {
  std::lock_guard<std::mutex> lock(mu_);
  index_->ForEach(held);
}

void IndexedTier::RemoveIndexed(const BlockHash& hash) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto slot = index_->Find(hash)) index_->Remove(*slot);
}

TierMetrics IndexedTier::IndexedMetrics(const TierStats& stats) const {
  int64_t blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocks = index_->size();
  }
  return stats.Snapshot(blocks, index_->capacity());
}

TierFuture IndexedTier::LookupIndexed(std::span<const BlockHash> hashes, TierStats& stats) {
  const int64_t start = WallMicros();
  std::vector<uint8_t> ok(hashes.size(), 0);
  uint64_t hits = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < hashes.size(); ++i) {
      ok[i] = index_->Find(hashes[i]).has_value();
      hits += ok[i];
    }
  }
  stats.RecordGet(hits, hashes.size() - hits, 0, start);
  return ReadyFuture(std::move(ok));
}

}  // namespace kvstack::tiers_internal
