// SimTiers: one simulated instance's tiers below the device pool, modelled
// around production code.
//
// Production: the blocks are held by a TierChain of metadata-only host tiers
// (the same TierIndex, eviction policy and offload gate as the engine's
// chain; lower tiers written through inside Offload, so the replay does not
// depend on thread timing), and what is onboarded, recomputed or prefetched
// is decided by tier_policy.h's rules, which the engine's TierOnboarder
// calls too. The engine's Scheduler drives it through BlockOnboarder, as it
// drives the engine's.
// Modelled: time. A transfer takes CostModel::OnboardSeconds per tier it
// reads from; recomputing a block takes the cost model's prefill time; a
// prefetch lands in the host tier when its transfer would have finished.
// No block is ever lost or corrupt here (the engine's faults are misses).
//
// Thread safety: none; one replay owns it.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "engine/block_onboarder.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/kv_cache.h"
#include "kvstack/sim_cost_model.h"
#include "kvstack/tier_chain.h"

namespace kvstack::sim {

class SimTiers final : public engine::BlockOnboarder, public EvictionListener {
 public:
  struct Options {
    int32_t block_size = 16;
    int64_t host_blocks = 0;  // 0: no host tier
    int64_t disk_blocks = 0;  // 0: no disk tier
    const EvictionPolicy* policy = nullptr;  // must outlive this
    const Clock* clock = nullptr;            // the instance's simulated clock; must outlive this
    Priority min_priority = 50;
    uint32_t min_hits = 2;
    bool only_when_faster = true;
    // The cost model's time to compute one block's tokens in a full step:
    // what the engine compares a tier's transfer with (its measured rate).
    double recompute_seconds_per_block = 0;
    bool prefetch = true;
  };
  // InvalidArgument when neither tier has a block of capacity.
  static Result<std::unique_ptr<SimTiers>> Create(const Options& options, const CostModel* cost);

  void OnEvicting(BlockId id, const BlockHash& key, Priority priority, uint32_t hits) override;

  void Prefetch(engine::RequestId id, std::span<const BlockHash> keys) override;
  int32_t Start(engine::RequestId id, std::span<const BlockHash> keys, std::span<const BlockId> blocks) override;
  std::optional<int32_t> Poll(engine::RequestId id) override;
  void Abandon(engine::RequestId id) override { fetches_.erase(id); }
  bool Draining(engine::RequestId) override { return false; }  // metadata only: no bytes land
  void Progress() override { LandPrefetches(); }
  // Simulated transfers need no stepping: the replay jumps to NextReady().
  bool Busy() const override { return false; }

  // When the earliest onboarding in flight lands (seconds); infinity if none.
  double NextReady() const;
  // Blocks the request's first admission brought up, by SimResult tier
  // (index 1 host, 2 disk); zeros when it onboarded nothing.
  std::array<int32_t, kNumTiers> FirstOnboard(engine::RequestId id) const;
  void Forget(engine::RequestId id) { first_onboard_.erase(id); }
  // Requests that went onboarding (were admitted) since the last call.
  std::vector<engine::RequestId> TakeStarted() { return std::exchange(started_, {}); }

  uint64_t offloaded_blocks() const { return offloaded_; }
  uint64_t onboarded_blocks() const { return onboarded_; }
  uint64_t prefetched_blocks() const { return prefetched_; }

 private:
  SimTiers(const Options& options, const CostModel* cost) : o_(options), cost_(cost) {}
  // Prefetches whose transfer has finished enter the host tier.
  void LandPrefetches();
  double TransferSeconds(std::span<const int32_t> blocks_per_chain_tier) const;

  struct Fetch {
    Micros ready_us = 0;  // on the instance's clock (whole microseconds: no rounding gap)
    int32_t blocks = 0;
    FetchHandle handle;   // the blocks read from the tiers (staged ones are not)
  };
  Options o_;
  const CostModel* cost_;
  std::unique_ptr<TierChain> chain_;
  std::vector<Tier> tier_of_;  // SimResult tier of each chain tier
  std::map<engine::RequestId, Fetch> fetches_;
  std::unordered_map<engine::RequestId, std::array<int32_t, kNumTiers>> first_onboard_;
  std::multimap<Micros, BlockHash> landing_;  // prefetched blocks by landing time
  std::vector<engine::RequestId> started_;
  // Prefetched blocks waiting for their request's admission (the engine's
  // staging area; unbounded here, 64 MiB there).
  std::unordered_set<BlockHash> staged_;
  uint64_t offloaded_ = 0, onboarded_ = 0, prefetched_ = 0;
};

}  // namespace kvstack::sim
