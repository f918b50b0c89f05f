// TierChain: the tiers below the device pool, as the engine sees them.
//
// Tiers are ordered fastest first (host RAM, then disk, then remote). The
// engine calls, all from its step loop:
//   Offload(hash, priority, hits, bytes)   from BlockPoolObserver::OnEvict,
//       while the device bytes are intact: blocks worth keeping (priority >=
//       min_priority, or hits >= min_hits) are copied into tier 0 and into a
//       staging queue before the call returns; a background thread writes the
//       staged copies through to every lower tier. A block therefore lives in
//       tier 0 until tier 0 evicts it, and in the lower tiers until they do:
//       demotion needs no read-back. Tier 0 should complete puts at once (the
//       host tier does); Offload waits for it.
//   LookupPrefix(hashes)                   at admission: how many leading
//       blocks some tier holds, and which tier; metadata only, no I/O.
//   StartFetch(hashes, destinations)       starts reading those blocks, each
//       from the fastest tier that holds it, into the destinations.
//   Poll(handle)                           each step: done yet? then how many
//       leading blocks arrived (a miss cuts the prefix there).
//   Metrics()                              per-tier counters and observed
//       bandwidth, to choose onboarding over recomputation.
//
// Thread safety: every method may be called from any thread (the engine
// thread and the chain's writer thread meet in the tiers, which are
// thread-safe, and in a mutex-guarded queue). A FetchHandle belongs to the
// thread that polls it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/status.h"
#include "kvstack/tier.h"

namespace kvstack {

struct TierChainOptions {
  std::vector<std::unique_ptr<Tier>> tiers;  // required, >= 1, fastest first; equal bytes_per_block
  // Offload keeps a block when priority >= min_priority or hits >= min_hits.
  Priority min_priority = 50;
  uint32_t min_hits = 2;
  // Bytes of blocks copied and queued for the lower tiers; when full, Offload
  // stores in tier 0 only (counted in writes_dropped).
  size_t max_queued_bytes = 256u << 20;
  // Blocks the writer moves per batch (one Put per lower tier).
  size_t write_batch = 64;
  // A block fetched from a lower tier is also put into tier 0.
  bool promote_on_fetch = true;
  // Ask a shared tier (Tier::shared(), e.g. Redis used by a fleet) for the
  // blocks after the prefix this process knows of: another server may have
  // put them there. Costs one pipelined round trip per admission that misses.
  bool ask_shared_tiers = true;
  // Offload writes the lower tiers itself, on the caller's thread, before it
  // returns (no writer thread, no queue): for the simulator, whose replay
  // must not depend on thread timing, and whose metadata-only tiers complete
  // every put at once. The engine keeps the writer thread.
  bool inline_lower_writes = false;
};

enum class OffloadOutcome : uint8_t {
  kStored,   // in tier 0 (and queued for the lower tiers, if any)
  kSkipped,  // below min_priority and min_hits: not worth keeping
  kRefused,  // tier 0 stored nothing (every slot busy, or a fault)
};

// Hears which blocks each tier (by index, fastest first) holds: a put that
// stored a block (an offload into tier 0, the writer's put into a lower tier,
// a fetched block promoted into tier 0) and a block a tier stopped holding
// (evicted, removed, found missing). A put of a block already held reports it
// again. Called from the engine thread, the chain's writer thread and the
// tiers' own threads (removals, with the tier's lock held): implementations
// are thread-safe, quick, and never call back into the chain or its tiers.
// What it hears matches what the tiers hold, except when a block is removed
// from outside (Tier::Remove, a fault found by a read) while the chain is
// storing the same block: then the store may be heard last, and the listener
// believes a block held that is gone (a router's stale entry: a miss, never a
// wrong answer).
class TierChainListener {
 public:
  virtual ~TierChainListener() = default;
  virtual void OnTierStored(int tier, const BlockHash& hash, Priority priority) = 0;
  virtual void OnTierRemoved(int tier, const BlockHash& hash) = 0;
};

// Where the leading blocks of a chain of hashes are.
struct PrefixLocation {
  int32_t blocks = 0;           // leading hashes held by some tier
  std::vector<int8_t> tier;     // for each of them, the fastest tier holding it
};

// One fetch in flight. Move-only; destroying it waits for its reads.
class FetchHandle {
 public:
  FetchHandle() = default;
  FetchHandle(FetchHandle&&) noexcept = default;
  FetchHandle& operator=(FetchHandle&&) noexcept = default;

  // REQUIRES: TierChain::Poll() returned true. Leading blocks whose bytes are
  // in their destinations; blocks after the first miss are not usable.
  int32_t blocks_ready() const { return blocks_ready_; }
  int32_t blocks_requested() const { return static_cast<int32_t>(hashes_.size()); }

 private:
  friend class TierChain;
  struct Part {
    int tier = 0;
    std::vector<size_t> index;  // which requested block each get is
    TierFuture future;
  };
  std::vector<BlockHash> hashes_;
  std::vector<std::span<std::byte>> dests_;
  std::vector<Part> parts_;
  bool done_ = false;
  int32_t blocks_ready_ = 0;
};

struct TierChainMetrics {
  uint64_t offloads = 0;          // Offload() calls
  uint64_t offload_skipped = 0;   // below the gate
  uint64_t offload_refused = 0;   // tier 0 stored nothing
  uint64_t writes_dropped = 0;    // blocks not queued for the lower tiers (queue full)
  uint64_t writes_done = 0;       // blocks the writer handed to the lower tiers
  uint64_t fetches = 0;           // StartFetch() calls
  uint64_t fetched_blocks = 0;    // blocks that arrived
  uint64_t promoted = 0;          // fetched blocks put into tier 0
  std::vector<TierMetrics> tiers; // one per tier, fastest first
};

class TierChain {
 public:
  // InvalidArgument when there is no tier or their block sizes differ.
  static Result<std::unique_ptr<TierChain>> Create(TierChainOptions options);
  // Stops the writer (queued lower-tier writes are dropped; call Flush()
  // first to keep them), then closes the tiers.
  ~TierChain();
  TierChain(const TierChain&) = delete;
  TierChain& operator=(const TierChain&) = delete;

  size_t bytes_per_block() const { return bytes_per_block_; }
  int num_tiers() const { return static_cast<int>(tiers_.size()); }
  Tier& tier(int i) { return *tiers_[static_cast<size_t>(i)]; }

  // REQUIRES: bytes.size() == bytes_per_block(). Copies before returning.
  OffloadOutcome Offload(const BlockHash& hash, Priority priority, uint32_t hits,
                         std::span<const std::byte> bytes);

  // Metadata only; stops at the first hash no tier holds.
  PrefixLocation LookupPrefix(std::span<const BlockHash> hashes) const;
  // The fastest shared tier that StartFetch asks for unknown blocks, or -1
  // (none, or ask_shared_tiers is off).
  int shared_tier() const { return shared_tier_; }

  // Starts reading each block from the fastest tier that holds it now; with
  // ask_shared_tiers, the blocks after the leading run some tier is known to
  // hold are asked of the fastest shared tier (they may miss: the prefix then
  // ends there, as blocks_ready() says).
  // REQUIRES: dests.size() == hashes.size(); each destination is
  // bytes_per_block() bytes and stays valid and untouched until Poll() says
  // done (or the handle is destroyed).
  FetchHandle StartFetch(std::span<const BlockHash> hashes, std::span<const std::span<std::byte>> dests);

  // Non-blocking. True once every read of the handle finished; then
  // handle.blocks_ready() says how many leading blocks arrived.
  bool Poll(FetchHandle& handle);
  // Blocks until Poll(handle) would return true.
  void Wait(FetchHandle& handle);

  // Blocks until every write queued so far reached the lower tiers (or failed).
  void Flush();

  TierChainMetrics Metrics() const;

  // Attaches a listener (nullptr detaches it); from any thread. It first
  // hears every block the tiers hold now as stored (a disk tier's blocks from
  // an earlier run among them), then every change: each tier's listing is
  // taken under the lock its removals are reported under, after its removal
  // listener is attached, so no removal falls between the two.
  void SetListener(std::shared_ptr<TierChainListener> listener);

 private:
  std::shared_ptr<TierChainListener> listener() const;
  void ReportStored(int tier, std::span<const TierPut> puts, const TierFuture& done) const;
  struct Writer;
  explicit TierChain(TierChainOptions options);
  void FinishFetch(FetchHandle& handle);

  std::vector<std::unique_ptr<Tier>> tiers_;
  size_t bytes_per_block_ = 0;
  Priority min_priority_;
  uint32_t min_hits_;
  bool promote_on_fetch_;
  bool inline_lower_writes_ = false;
  int shared_tier_ = -1;
  std::unique_ptr<Writer> writer_;
};

}  // namespace kvstack
