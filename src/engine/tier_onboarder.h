// TierOnboarder: the engine's link to the tier chain, both ways.
//
//   down  (EvictionListener) a cached block the device pool evicts is offered
//         to the chain while its bytes are intact; the chain keeps it if it
//         is worth keeping (priority or hits) and writes lower tiers off the
//         engine's thread.
//   up    (BlockOnboarder) a queued request's blocks are prefetched from
//         below host RAM and held here (staged, bounded) until its admission,
//         so the churn of offloads into host RAM cannot push them out first;
//         at admission its next blocks come from the staging area (a copy) or
//         are fetched straight into its device blocks, if the tiers' measured
//         bandwidth makes that faster than recomputing them at the engine's
//         measured prefill rate.
//
// Calls come from the engine's step loop only (the chain is thread-safe).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <span>
#include <vector>

#include "engine/block_onboarder.h"
#include "kvstack/clock.h"
#include "kvstack/engine.h"
#include "kvstack/kv_arena.h"
#include "kvstack/kv_cache.h"
#include "kvstack/tier_chain.h"

namespace kvstack::engine {

class TierOnboarder final : public BlockOnboarder, public EvictionListener {
 public:
  struct Options {
    int32_t block_size = 16;       // tokens per block
    bool only_when_faster = true;  // compare measured bandwidth with the recompute rate
    size_t max_prefetch_bytes = 64u << 20;  // scratch held by prefetches in flight
    // The layout the tiers store (kv_block_convert.h): blocks are converted
    // to it on offload and widened back into the device layout on
    // onboarding. Unset: the tiers hold device blocks byte for byte.
    std::optional<KvShape> tier_shape;
  };
  TierOnboarder(std::unique_ptr<TierChain> chain, const Options& options, const Clock* clock);
  ~TierOnboarder() override;

  // REQUIRES: called once, before any other call; the arena outlives this.
  void Attach(KvArena* arena) { arena_ = arena; }
  // The engine's measured prefill throughput (tokens/s); 0: not known yet.
  void SetRecomputeRate(double tokens_per_s) { recompute_tokens_per_s_ = tokens_per_s; }

  void OnEvicting(BlockId id, const BlockHash& key, Priority priority, uint32_t hits) override;

  void Prefetch(RequestId id, std::span<const BlockHash> keys) override;
  int32_t Start(RequestId id, std::span<const BlockHash> keys, std::span<const BlockId> blocks) override;
  std::optional<int32_t> Poll(RequestId id) override;
  void Abandon(RequestId id) override;
  bool Draining(RequestId id) override;
  void Progress() override { ReapPrefetches(); }
  bool Busy() const override { return !prefetches_.empty(); }

  TierChain& chain() { return *chain_; }
  OnboardMetrics Metrics() const;

 private:
  struct Fetch {
    // With a tier layout: the handle reads into scratch, and each arrived
    // block is widened into its device block (targets, in handle order).
    // Declared before the handle, so it outlives the reads the handle's
    // destructor waits for.
    std::vector<std::byte> scratch;
    std::vector<std::byte*> targets;
    FetchHandle handle;             // the blocks not staged, in key order
    std::vector<int32_t> fetched;   // key index of each block the handle reads
    int32_t requested = 0;          // leading keys being brought up
    bool reading = false;           // false: every block was staged (copied)
    Micros started = 0;
  };
  struct PrefetchJob {
    std::vector<std::byte> scratch;
    std::vector<BlockHash> hashes;
    FetchHandle handle;
  };
  // A prefetched block waiting for its request's admission.
  struct Staged {
    std::vector<std::byte> bytes;
    uint64_t order = 0;
  };
  void Stage(const BlockHash& key, std::span<const std::byte> bytes);
  // A tier's block (chain().bytes_per_block() bytes) into a device block.
  void Onboard(const std::byte* tier_block, std::byte* device_block) const;
  // Finishes prefetches whose reads are done (the chain promotes their
  // blocks into the fastest tier as it finishes them).
  void ReapPrefetches();
  // Seconds to bring one block up from `tier`, from its measured bandwidth
  // (0 when none was measured yet).
  double FetchSecondsPerBlock(int tier);
  void RefreshBandwidth();

  std::unique_ptr<TierChain> chain_;
  const Options options_;
  const Clock* clock_;
  KvArena* arena_ = nullptr;
  std::vector<std::byte> offload_scratch_;  // one block in the tier layout
  double recompute_tokens_per_s_ = 0;
  std::vector<double> get_bytes_per_s_;  // per tier, refreshed at most every 100 ms
  Micros bandwidth_read_at_ = -1;
  std::map<RequestId, Fetch> fetches_;
  // Fetches of ended requests whose reads were still running (Abandon):
  // kept until they stop writing into the blocks (Draining).
  std::map<RequestId, Fetch> abandoned_;
  std::vector<PrefetchJob> prefetches_;
  size_t prefetch_bytes_ = 0;           // scratch of prefetches in flight
  std::unordered_map<BlockHash, Staged> staged_;
  size_t staged_bytes_ = 0;             // bounded by max_prefetch_bytes too
  uint64_t staged_order_ = 0;
  OnboardMetrics metrics_;
};

}  // namespace kvstack::engine
