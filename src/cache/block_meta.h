// Per-block metadata of the block pool: one cache line per block.
#pragma once

#include <cstdint>
#include <limits>

#include "kvstack/block_hash.h"
#include "kvstack/clock.h"
#include "kvstack/eviction_policy.h"

namespace kvstack {

// The life of a block slot:
//
//            Allocate()                 Commit()            (stays InUse)
//   Free ─────────────────▶ InUse ───────────────────────▶ InUse, hash set
//    ▲                       │  ▲                              │
//    │ Release(),            │  │ AcquireCached() (a prefix    │ Release() to
//    │ no hash               │  │ hit takes it off its queue)  │ ref_count 0
//    └───────────────────────┘  │                              ▼
//    ▲                          └───────────────────────── Cached (in a queue)
//    │ Allocate() evicts the policy's victim: the hash leaves   │   ▲
//    └──────────────────────────────────────────────────────────┘   │
//                                                                    │ Unpin() to
//   Pin() from InUse or Cached (hash set) ───────────▶ Pinned ───────┘ pin_count 0
//
// Which fields prove each state (CheckInvariants() verifies all of them):
//   Free    hash zero, ref_count 0, pin_count 0, on the free stack, in no list.
//   InUse   ref_count > 0, pin_count 0, in no list. hash zero while the block
//           is private to its sequence (its KV is not computed yet, or it is a
//           partial block, or a duplicate of a block already cached).
//   Cached  hash set and in the hash index, ref_count 0, pin_count 0, linked in
//           queue policy.QueueFor(priority, hit_count); queues are ordered by
//           last_use (non-decreasing from head to tail).
//   Pinned  hash set and indexed, pin_count > 0, priority 100, no expiry,
//           ref_count >= 0 (sequences may read a pinned block), in no list.
// Lazy eviction: a Cached block keeps its hash and KV bytes until Allocate()
// needs its slot, so a later prefix hit can still take it back.
enum class BlockState : uint8_t { kFree = 0, kInUse = 1, kCached = 2, kPinned = 3 };

inline constexpr Micros kNoExpiry = std::numeric_limits<Micros>::max();

// Aligned to a cache line, so that reading one block's metadata is one miss.
// A Cached block's links in its eviction queue live apart (BlockPool::links_):
// walking a queue then stays within a small array instead of a line a block.
struct alignas(64) BlockMeta {
  BlockHash hash;            // the block's key; zero while private
  Micros last_use = 0;       // when the block was last released or hit
  Micros expiry = kNoExpiry; // when `priority` falls back to the default
  Micros stored_at = 0;      // when the block was committed (lifetime metric)
  int32_t parent = -1;       // block holding the previous block of the prefix
                             //   when this one was committed; a hint only: that
                             //   slot may since have been evicted and reused
  uint32_t ref_count = 0;    // sequences whose block table holds this block
  uint32_t hit_count = 0;    // prefix hits since the block was committed
  uint16_t pin_count = 0;    // live pins (PrefixPin handles) covering the block
  Priority priority = kDefaultPriority;  // effective retention priority
  BlockState state = BlockState::kFree;
};
static_assert(sizeof(BlockMeta) == 64, "block metadata must stay one cache line");

}  // namespace kvstack
