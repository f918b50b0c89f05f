// TierIndex: which blocks a tier holds and which goes first, built on the
// cache core's BlockPool (metadata, hash index, eviction policy queues), so
// every tier evicts exactly as the device pool does.
//
// A tier slot is a BlockPool block. Its states, as the tiers use them:
//   Free    no block.
//   Busy    InUse: ref_count counts the tier's I/O in flight on the slot (a
//           write of its bytes, reads). A busy slot is never evicted or reused,
//           so its storage cannot change under an I/O.
//   Held    Cached: the bytes are in place; evictable in policy order.
// Insert() returns a Busy slot (ref 1, hash committed); the tier Release()s it
// when the bytes are in place. Remove() uncommits: a Held slot frees at once,
// a Busy one at its last Release() (its hash is gone from the index at once).
//
// Thread safety: none; each tier guards its index with its own mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "cache/block_pool.h"
#include "kvstack/clock.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/status.h"
#include "kvstack/tier.h"
#include "tiers/tier_stats.h"

namespace kvstack::tiers_internal {

class TierIndex : private BlockPoolObserver {
 public:
  // `policy` nullptr: priority-LRU (owned). `clock` nullptr: steady.
  // `on_evict` (optional) hears every slot the policy frees for reuse, with
  // its hash, before the slot is handed out again.
  static Result<std::unique_ptr<TierIndex>> Create(int64_t capacity, const EvictionPolicy* policy,
                                                   const Clock* clock,
                                                   std::function<void(int32_t slot, const BlockHash&)> on_evict = {});

  int64_t capacity() const { return pool_->num_blocks(); }
  // Blocks indexed (Held or Busy with a hash).
  int64_t size() const { return pool_->num_blocks() - pool_->num_free() - private_busy_; }

  std::optional<int32_t> Find(const BlockHash& hash) const { return pool_->Find(hash); }

  // A Busy slot for a new block (evicting the policy's victim when full),
  // ranked by the block's priority and hit count. nullopt when every slot is
  // Busy. REQUIRES: the hash is not indexed.
  std::optional<int32_t> Insert(const TierBlockInfo& block);

  // A use of an indexed slot: ref +1 (Busy), hit counted, LRU touched.
  void Acquire(int32_t slot) { pool_->AcquireHit(slot); }
  // Raises the slot's priority (a re-put with a higher one). REQUIRES: Busy.
  void Raise(int32_t slot, Priority priority) { pool_->RaiseRetention(slot, priority, kNoExpiry); }
  // REQUIRES: Busy.
  void Release(int32_t slot);

  // Forgets the slot's block. REQUIRES: indexed.
  void Remove(int32_t slot);

  const BlockMeta& meta(int32_t slot) const { return pool_->meta(slot); }

  // Calls `fn` for every indexed block (Held, or Busy with its hash).
  void ForEach(const std::function<void(const BlockHash&, Priority)>& fn) const;

  // Hears every hash that leaves the index, evicted or removed (the tier's
  // Tier::SetRemovalListener). Called with the tier's lock held.
  void set_on_forget(std::function<void(const BlockHash&)> on_forget) { on_forget_ = std::move(on_forget); }

  // For re-indexing at open: takes every slot (a fresh index hands them out in
  // order 0, 1, 2, ...). Then Restore() the slots that hold a block, oldest
  // first, and Release() every slot; free slots are handed out lowest first
  // if released from the highest down.
  void TakeAllSlots();
  // Commits `block` into a slot taken by TakeAllSlots(); false if the hash is
  // already indexed (a duplicate record: the later one is dropped).
  bool Restore(int32_t slot, const TierBlockInfo& block);

  Status CheckInvariants() const;

 private:
  TierIndex() = default;
  void OnEvict(int32_t id, const BlockMeta& meta) override;

  std::unique_ptr<EvictionPolicy> owned_policy_;
  std::unique_ptr<BlockPool> pool_;
  std::function<void(int32_t, const BlockHash&)> on_evict_;
  std::function<void(const BlockHash&)> on_forget_;
  int64_t private_busy_ = 0;  // Busy slots removed while busy (no hash)
};

}  // namespace kvstack::tiers_internal
