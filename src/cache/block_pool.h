// BlockPool: the fixed array of KV block slots and their bookkeeping.
//
// Owns per-block metadata (BlockMeta, 64 bytes), the free stack, the evictable
// queues of the eviction policy, the hash index of committed blocks and the
// retention expiry heap. It knows nothing of sequences or tokens: KvCache
// drives it. Every call is O(1) except ExpireRetention() (O(log n) per expired
// block, plus the walk to re-place it in LRU order) and the diagnostic walks.
//
// Callers: KvCache (device pool, simulator) and, through KvCache, the tiers.
// Thread safety: none. The engine step loop is single-threaded over the pool.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "cache/block_meta.h"
#include "cache/hash_index.h"
#include "kvstack/clock.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/status.h"

namespace kvstack {

// Told about evictions before they happen, while the block's hash and KV bytes
// are intact (the place to emit BlockRemoved or to offload the bytes).
class BlockPoolObserver {
 public:
  virtual ~BlockPoolObserver() = default;
  virtual void OnEvict(int32_t id, const BlockMeta& meta) = 0;
};

struct BlockPoolOptions {
  int32_t num_blocks = 0;                  // 1 .. 2^30
  const EvictionPolicy* policy = nullptr;  // required; must outlive the pool
  const Clock* clock = nullptr;            // required; must outlive the pool
  Priority default_priority = kDefaultPriority;
  int32_t max_pinned_blocks = 0;           // Pin() beyond this is refused
  BlockPoolObserver* observer = nullptr;   // optional; must outlive the pool
};

class BlockPool {
 public:
  // Fails with InvalidArgument naming the bad option.
  static Result<std::unique_ptr<BlockPool>> Create(const BlockPoolOptions& options);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t num_free() const { return static_cast<int32_t>(free_ids_.size()); }
  int32_t num_cached() const { return num_cached_; }
  int32_t num_pinned() const { return num_pinned_; }
  int32_t num_in_use() const { return num_blocks_ - num_free() - num_cached_ - num_pinned_; }
  // Slots Allocate() can still hand out: free ones plus evictable ones.
  int32_t num_available() const { return num_free() + num_cached_; }
  int32_t max_pinned_blocks() const { return max_pinned_; }
  Priority default_priority() const { return default_priority_; }
  const EvictionPolicy& policy() const { return *policy_; }

  // Takes a slot with ref_count 1, state InUse, no hash: a Free one if any,
  // else the policy's victim among Cached blocks (evicted: observer told, hash
  // unindexed). nullopt when every block is InUse or Pinned.
  std::optional<int32_t> Allocate();

  // Allocate() `n` times, appending the ids to `out`; reads the clock once.
  // All or nothing: false, changing nothing, when fewer than n are available.
  bool AllocateMany(int64_t n, std::vector<int32_t>* out);

  // A prefix hit: one more reference to a committed block, counted as a hit.
  // A Cached block leaves its queue and becomes InUse.
  // REQUIRES: the block is committed (InUse, Cached or Pinned with a hash).
  void AcquireHit(int32_t id);

  // One more reference to a block some sequence already holds (fork).
  // REQUIRES: ref_count > 0.
  void AddRef(int32_t id);

  // Drops one reference. At zero, a committed block becomes Cached (joins the
  // tail of its queue) unless pinned; a private block becomes Free.
  // REQUIRES: ref_count > 0 (aborts otherwise: a double release is a bug).
  void Release(int32_t id);
  // Release() of each id in the order given; reads the clock once.
  void ReleaseMany(std::span<const int32_t> ids);

  // Enters an InUse block into the prefix cache under `hash`, with a retention
  // priority that falls back to the default at `expiry` (kNoExpiry: never).
  // Returns false, changing nothing, when another block already holds that
  // hash (the block stays private). REQUIRES: state InUse, no hash yet, hash
  // non-zero, priority <= 100.
  bool Commit(int32_t id, const BlockHash& hash, int32_t parent, Priority priority, Micros expiry);

  // Raises a committed block's retention: a higher priority replaces the
  // current one with its expiry; an equal one extends the expiry; a lower one
  // changes nothing. Ignored for pinned blocks. REQUIRES: state InUse.
  void RaiseRetention(int32_t id, Priority priority, Micros expiry);

  // Pins a committed block: priority 100, never evicted until the last Unpin().
  // ResourceExhausted when the block is not pinned yet and max_pinned_blocks
  // are pinned already. REQUIRES: the block is committed.
  Status Pin(int32_t id);
  // REQUIRES: pin_count > 0. At zero the block returns to the default priority.
  void Unpin(int32_t id);

  std::optional<int32_t> Find(const BlockHash& hash) const { return index_.Find(hash, meta_span()); }
  void PrefetchFind(const BlockHash& hash) const { index_.Prefetch(hash); }

  // Moves blocks whose retention has expired back to the default priority
  // (re-placed in LRU order within their new queue). Allocate() calls it
  // before choosing a victim; callers may call it any time.
  void ExpireRetention();

  // Cached blocks in the order Allocate() would evict them (after expiry).
  std::vector<int32_t> EvictionOrder();

  // Evicts every Cached block (observer told for each). Returns how many.
  int32_t EvictAllCached();

  // Takes one committed block out of the prefix cache now, at the caller's
  // request (a tier removing a block; the observer is not told). Its hash
  // leaves the index: a Cached block becomes Free at once; an InUse one becomes
  // private and turns Free at its last Release(). REQUIRES: the block has a
  // hash and is not pinned.
  void Uncommit(int32_t id);

  const BlockMeta& meta(int32_t id) const { return meta_[id]; }
  // The priority with expiry applied as of now, even if not yet processed.
  Priority EffectivePriority(int32_t id) const;

  // Metadata and index bytes, for the "bytes per block" figure.
  size_t metadata_bytes() const {
    return meta_.size() * sizeof(BlockMeta) + links_.size() * sizeof(Link) + index_.bytes() +
           free_ids_.capacity() * sizeof(int32_t);
  }

  // Verifies every invariant documented in block_meta.h and the list, queue,
  // bitmap and index structure; the first violation is returned as Internal.
  Status CheckInvariants() const;

 private:
  explicit BlockPool(const BlockPoolOptions& options);

  std::span<const BlockMeta> meta_span() const { return {meta_.data(), static_cast<size_t>(num_blocks_)}; }
  int32_t QueueSentinel(int q) const { return num_blocks_ + q; }
  int QueueOf(const BlockMeta& m) const { return policy_->QueueFor({m.priority, m.hit_count}); }

  void LinkBefore(int32_t id, int32_t before);
  void Unlink(int32_t id);
  void Enqueue(int32_t id);         // tail of its queue
  void EnqueueByLastUse(int32_t id);  // keeps the queue ordered by last_use
  void Dequeue(int32_t id);
  void Evict(int32_t id);
  void ScheduleExpiry(int32_t id, Micros expiry);
  int32_t TakeSlot();  // a free slot, else an evicted one; REQUIRES available
  void ReleaseAt(int32_t id, Micros now);

  struct ExpiryEntry {
    Micros expiry;
    int32_t id;
    // Equal expiries are processed in block order, so the order is reproducible.
    bool operator>(const ExpiryEntry& o) const { return expiry != o.expiry ? expiry > o.expiry : id > o.id; }
  };

  int32_t num_blocks_;
  const EvictionPolicy* policy_;
  const Clock* clock_;
  Priority default_priority_;
  int32_t max_pinned_;
  BlockPoolObserver* observer_;

  std::vector<BlockMeta> meta_;  // blocks 0..n-1
  // Eviction-queue links of blocks 0..n-1 (-1: in no queue), then one
  // sentinel per queue; every queue is circular through its sentinel.
  struct Link {
    int32_t prev = -1, next = -1;
  };
  std::vector<Link> links_;
  // Free blocks. A stack, not a list: free blocks are never taken from the
  // middle, and popping a contiguous array beats chasing links when an
  // admission takes thousands at once. The most recently freed (cache-warm)
  // block is reused first.
  std::vector<int32_t> free_ids_;
  HashIndex index_;
  std::array<uint64_t, EvictionPolicy::kMaxQueues / 64> nonempty_{};
  std::vector<ExpiryEntry> expiry_heap_;  // min-heap; stale entries skipped
  Micros expired_through_ = 0;            // ExpireRetention() ran at this time
  int32_t num_cached_ = 0;
  int32_t num_pinned_ = 0;
};

}  // namespace kvstack
