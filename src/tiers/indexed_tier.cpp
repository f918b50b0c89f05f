#include "tiers/indexed_tier.h"

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

}  // namespace kvstack::tiers_internal
