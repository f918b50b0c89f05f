// Tier: one level of KV block storage below the device pool (host RAM, local
// disk, a remote Redis), behind one interface with asynchronous results.
//
// A tier stores whole blocks: a 128-bit BlockHash names one block of exactly
// bytes_per_block() bytes (a KvArena block stride). Each tier is bounded and
// evicts with the cache core's own code: a BlockPool (metadata, hash index,
// eviction policy queues) ranks its blocks, so priority and hit count order
// evictions in every tier as they do on the device (see eviction_policy.h).
// Tiers compose into a chain (tier_chain.h), as RocksDB's SecondaryCache does.
//
// Calls start work and return a TierFuture at once; the caller polls
// IsReady() (or Wait()s) and reads per-block outcomes. Faults are never
// errors of the call: a server that is down or slow, a full disk, a corrupt or
// torn block all make the block a miss (or a put that stored nothing), are
// counted in Metrics().faults and are logged at a limited rate.
//
// Thread safety: every Tier method may be called from any thread; a
// TierFuture may be polled from any one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/histogram.h"
#include "kvstack/status.h"

namespace kvstack {

// Where a tier writes its fault notes (one line each, no newline). Default:
// stderr. Called from the tier's threads; must be thread-safe.
using TierLogSink = std::function<void(std::string_view line)>;

// What a tier keeps about a block besides its bytes: its eviction rank.
struct TierBlockInfo {
  BlockHash hash;
  Priority priority = kDefaultPriority;
  uint32_t hits = 0;  // prefix hits on the device; ranks the block under LFU
};

// One block to store. `bytes.size()` must equal the tier's bytes_per_block().
struct TierPut {
  TierBlockInfo block;
  std::span<const std::byte> bytes;
};

// One block to read into `dest` (bytes_per_block() bytes).
struct TierGet {
  BlockHash hash;
  std::span<std::byte> dest;
};

namespace tiers_internal {
struct OpState;
}

// The completion handle of one batch call. Move-only. Destroying a handle
// whose operation is still running waits for it, so a get never writes into a
// destination after its handle is gone.
class TierFuture {
 public:
  TierFuture() = default;  // an empty batch: ready, size 0
  explicit TierFuture(std::shared_ptr<tiers_internal::OpState> state);
  TierFuture(TierFuture&&) noexcept = default;
  TierFuture& operator=(TierFuture&& other) noexcept;
  TierFuture(const TierFuture&) = delete;
  TierFuture& operator=(const TierFuture&) = delete;
  ~TierFuture();

  // Non-blocking: whether every block of the batch is finished.
  bool IsReady() const;
  // Blocks until IsReady().
  void Wait() const;
  // Blocks in the batch.
  size_t size() const;
  // REQUIRES: IsReady(), i < size(). A get: the block's verified bytes are in
  // its destination. A put: the tier holds the block. A lookup: the tier has
  // it. False is a miss (or nothing stored), whatever the reason.
  bool ok(size_t i) const;
  // REQUIRES: IsReady(). How many ok(i) are true.
  size_t num_ok() const;

 private:
  std::shared_ptr<tiers_internal::OpState> state_;
};

// Counters since the tier was created, and latency per batch call.
// One node of a tier spread over several servers (Redis: each server of
// --redis, or each master and replica of --redis-cluster).
struct TierNodeMetrics {
  std::string node;             // "host:port"
  std::string role;             // "server" (--redis), "master" or "replica" (--redis-cluster)
  uint64_t hits = 0;            // gets and lookups this node answered with a verified block
  uint64_t misses = 0;          // ... without one (faults included)
  uint64_t stored = 0;          // puts this node stored
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t redirections = 0;    // MOVED or ASK answers this node gave (each followed)
  uint64_t faults = 0;          // I/O errors, timeouts, error replies, corrupt values
};

struct TierMetrics {
  std::string name;
  int64_t blocks = 0;           // blocks held now (Redis: the ones this process knows of)
  int64_t capacity_blocks = 0;
  uint64_t hits = 0;            // blocks a get (or lookup) found and verified
  uint64_t misses = 0;          // blocks a get (or lookup) did not find, faults included
  uint64_t stored = 0;          // blocks a put stored
  uint64_t not_stored = 0;      // blocks a put refused (full, faulty, busy)
  uint64_t bytes_in = 0;        // block bytes stored
  uint64_t bytes_out = 0;       // block bytes returned by gets
  uint64_t faults = 0;          // I/O errors, timeouts, corrupt blocks, a full disk
  uint64_t evictions = 0;       // blocks the tier's policy pushed out
  Histogram get_latency_us = Histogram::Decades125(1, 1e7);  // per get batch
  Histogram put_latency_us = Histogram::Decades125(1, 1e7);  // per put batch
  // Bandwidth observed by get and put batches: bytes over the batch's wall
  // time, smoothed over recent batches (0 until one was measured). The
  // engine compares these to its recompute rate to choose onboard or recompute.
  double get_bytes_per_s = 0;
  double put_bytes_per_s = 0;
  // Remote tiers only: per node, and for a cluster the redirections followed
  // and the times the slot map was read.
  std::vector<TierNodeMetrics> nodes;
  uint64_t redirections = 0;
  uint64_t slot_map_refreshes = 0;
};

class Tier {
 public:
  virtual ~Tier() = default;

  // "host", "disk", "redis".
  virtual std::string_view name() const = 0;
  virtual size_t bytes_per_block() const = 0;
  virtual int64_t capacity_blocks() const = 0;

  // Synchronous and metadata-only: whether this tier probably holds `hash`.
  // A true answer can still miss at Get() (a remote entry expired, a corrupt
  // block); a remote tier answers only for blocks this process stored or read.
  virtual bool Contains(const BlockHash& hash) const = 0;

  // True for a tier other processes write too (Redis, shared by a fleet):
  // its Contains() knows only what this process stored or read, so a block
  // it does not know may still be there, put by another server. The chain
  // then asks it for such blocks at admission (see TierChain::StartFetch).
  virtual bool shared() const { return false; }

  // Stores blocks. The bytes are copied before Put returns; the caller may
  // reuse them at once. A block already held is not rewritten (its rank is
  // refreshed). REQUIRES: each bytes.size() == bytes_per_block().
  virtual TierFuture Put(std::span<const TierPut> blocks) = 0;

  // Asks whether blocks are present (a remote tier asks its servers).
  virtual TierFuture Lookup(std::span<const BlockHash> hashes) = 0;

  // Reads blocks into their destinations, verified (checksums) before ok(i).
  // A hit counts as a use for eviction. REQUIRES: each dest.size() ==
  // bytes_per_block(), and the destinations stay valid and untouched until
  // the future is ready.
  virtual TierFuture Get(std::span<const TierGet> blocks) = 0;

  // Forgets a block (no-op when absent). Later gets miss.
  virtual void Remove(const BlockHash& hash) = 0;

  virtual TierMetrics Metrics() const = 0;

  // Hears every block this tier stops holding: evicted by its policy, removed,
  // or found missing or corrupt. Called on the tier's threads (or the
  // caller's) with the tier's lock held: it must be quick and must not call
  // back into the tier. An empty function detaches it. The default tier
  // reports nothing.
  virtual void SetRemovalListener(std::function<void(const BlockHash&)> listener) { (void)listener; }

  // Calls `held` for every block the tier holds now (a remote tier: the ones
  // this process knows of, as Contains() does; a disk tier: those found at
  // open among them), with its priority. Under the tier's lock, as removals
  // are reported: `held` must be quick and must not call back into the tier.
  // The default tier lists nothing.
  virtual void ForEachHeld(const std::function<void(const BlockHash&, Priority)>& held) const { (void)held; }

  // Verifies the tier's index (see BlockPool::CheckInvariants) and its own
  // bookkeeping; the first violation is returned as Internal.
  virtual Status CheckInvariants() const = 0;
};

}  // namespace kvstack
