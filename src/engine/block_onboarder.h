// BlockOnboarder: the scheduler's view of the storage below the device pool.
//
// A prompt block the device cache misses may still be held by a tier (host
// RAM, disk, Redis). The scheduler asks the onboarder to bring such blocks
// into the request's own, freshly allocated device blocks while other
// requests keep running; the request waits (state kOnboarding, holding its
// blocks) and becomes runnable the step its bytes are resident, whatever its
// place in the queue. Blocks that do not arrive (a miss, a fault) are simply
// computed: onboarding can make a request faster, never wrong.
//
// Calls come from the engine's step loop only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "kvstack/block_hash.h"
#include "kvstack/kv_cache.h"

namespace kvstack::engine {

using RequestId = uint64_t;

class BlockOnboarder {
 public:
  virtual ~BlockOnboarder() = default;

  // A request entered the queue with these full-block keys (those past its
  // device hits): start moving them toward the fastest tier (prefetch).
  virtual void Prefetch(RequestId id, std::span<const BlockHash> keys) = 0;

  // The request was admitted; `keys[i]` is the key of the block the request
  // holds as `blocks[i]`, the first blocks it would otherwise compute.
  // Starts fetching the leading blocks some tier holds (or, for a tier shared
  // with other servers, may hold), if that is faster than computing them. Returns how many leading blocks are on their way
  // (0: compute them all). REQUIRES: keys.size() == blocks.size(); the blocks
  // stay allocated to the request until Poll() returns, or after Abandon()
  // until Draining() is false.
  virtual int32_t Start(RequestId id, std::span<const BlockHash> keys, std::span<const BlockId> blocks) = 0;

  // nullopt while the fetch runs; then how many leading blocks arrived with
  // their bytes verified (the rest must be computed). Forgets the fetch.
  virtual std::optional<int32_t> Poll(RequestId id) = 0;

  // The request ends mid-fetch. Returns at once: a read already issued (a
  // slow disk, a Redis server up to its timeout) may go on writing into the
  // request's blocks, so they stay allocated until Draining() says false.
  virtual void Abandon(RequestId id) = 0;
  // True while an abandoned request's reads may still write into its
  // blocks; false once they stopped (the fetch is then forgotten) or for a
  // request with nothing abandoned. REQUIRES: ids are never reused.
  virtual bool Draining(RequestId id) = 0;

  // Called every step: finishes background work whose reads are done (a
  // prefetch's blocks enter host RAM here), so no finished read goes
  // unnoticed while the engine has nothing else to do.
  virtual void Progress() = 0;
  // True while some background read is in flight (the engine keeps stepping).
  virtual bool Busy() const = 0;
};

}  // namespace kvstack::engine
