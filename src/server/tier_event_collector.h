// TierEventCollector: the tier chain's stores and removals as KV events, with
// `medium` naming the tier (CPU for host RAM, DISK, REDIS), so a subscriber
// knows which blocks sit below the device pool, not only in it.
//
// The chain reports from the engine thread, its writer thread and the tiers'
// threads; the collector keeps, under one lock, the events not yet taken and
// the blocks it announced per tier. It announces a block once per tier (a
// re-put of a held block is not an event) and a removal only of a block it
// announced, so its events and its listing always agree: a subscriber that
// applies them, or reads the listing, sees the same tiers. Blocks a tier held
// before the collector was attached (a warm disk at start) are not announced
// until stored again. Events carry no token ids and no parent: the tiers know
// blocks by key only (kvstack routers key by the hash).
//
// Thread safety: every method from any thread.
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvstack/cache_events.h"
#include "kvstack/tier_chain.h"

namespace kvstack::server {

class TierEventCollector final : public TierChainListener {
 public:
  // One medium per tier of the chain, fastest first (TierMedium()).
  explicit TierEventCollector(std::vector<StorageTier> media);

  void OnTierStored(int tier, const BlockHash& hash, Priority priority) override;
  void OnTierRemoved(int tier, const BlockHash& hash) override;

  // The events since the last Take(), oldest first.
  KvEventBatch Take();

  // Calls `publish` with the events not yet taken, then lists the blocks each
  // tier holds, under the lock: the listing covers exactly the events
  // published up to then.
  template <typename Publish>
  std::vector<std::pair<StorageTier, std::vector<std::pair<BlockHash, Priority>>>> TakeAndList(Publish&& publish) {
    std::lock_guard<std::mutex> lock(mu_);
    KvEventBatch batch = std::exchange(pending_, {});
    publish(std::move(batch));
    return ListLocked();
  }

 private:
  std::vector<std::pair<StorageTier, std::vector<std::pair<BlockHash, Priority>>>> ListLocked() const;

  const std::vector<StorageTier> media_;
  std::mutex mu_;
  KvEventBatch pending_;                                             // GUARDED_BY(mu_)
  std::vector<std::unordered_map<BlockHash, Priority>> held_;        // GUARDED_BY(mu_): per tier
};

// The medium a tier is published as, from its name: "host" CPU, "disk" DISK,
// anything else (Redis, a shared remote tier) REDIS.
StorageTier TierMedium(std::string_view tier_name);

}  // namespace kvstack::server
