// IndexedTier: what every tier built on a TierIndex does the same way, under
// the one mutex that guards its index: answer Contains(), forget a block,
// report and list what it holds. The host, disk and Redis tiers derive from
// it and keep only their storage of the bytes.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include "kvstack/tier.h"
#include "tiers/tier_index.h"
#include "tiers/tier_stats.h"

namespace kvstack::tiers_internal {

class IndexedTier : public Tier {
 public:
  int64_t capacity_blocks() const override { return index_->capacity(); }
  bool Contains(const BlockHash& hash) const override;
  void SetRemovalListener(std::function<void(const BlockHash&)> listener) override;
  void ForEachHeld(const std::function<void(const BlockHash&, Priority)>& held) const override;

 protected:
  // Forgets `hash` (a no-op when absent); its removal is reported.
  void RemoveIndexed(const BlockHash& hash);
  // Metrics with the blocks held now.
  TierMetrics IndexedMetrics(const TierStats& stats) const;
  // Lookup() answered from the index alone (a local tier knows all it holds).
  TierFuture LookupIndexed(std::span<const BlockHash> hashes, TierStats& stats);

  // The tier's lock: it guards index_ and whatever else the tier says.
  mutable std::mutex mu_;
  // Set by the tier before any other call (its Init), never replaced.
  std::unique_ptr<TierIndex> index_;  // GUARDED_BY(mu_)
};

}  // namespace kvstack::tiers_internal
