#include "sim/sim_tiers.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "kvstack/tier_policy.h"
#include "kvstack/tiers.h"

namespace kvstack::sim {

Result<std::unique_ptr<SimTiers>> SimTiers::Create(const Options& o, const CostModel* cost) {
  std::unique_ptr<SimTiers> t(new SimTiers(o, cost));
  TierChainOptions chain;
  chain.min_priority = o.min_priority;
  chain.min_hits = o.min_hits;
  chain.inline_lower_writes = true;
  const std::pair<int64_t, Tier> levels[] = {{o.host_blocks, Tier::kHost}, {o.disk_blocks, Tier::kDisk}};
  for (const auto& [blocks, tier] : levels) {
    if (blocks < 1) continue;
    HostTierOptions h;
    h.metadata_only = true;
    h.capacity_blocks = blocks;
    h.policy = o.policy;
    h.clock = o.clock;
    h.name = std::string(TierName(tier));
    auto made = MakeHostTier(h);
    if (!made.ok()) {
      return InvalidArgument(fmt::format("{} tier: {}", TierName(tier), made.status().message()));
    }
    chain.tiers.push_back(std::move(made).value());
    t->tier_of_.push_back(tier);
  }
  if (chain.tiers.empty()) return InvalidArgument("simulated tiers: neither a host nor a disk tier has capacity");
  auto made = TierChain::Create(std::move(chain));
  if (!made.ok()) return made.status();
  t->chain_ = std::move(made).value();
  return t;
}

void SimTiers::OnEvicting(BlockId, const BlockHash& key, Priority priority, uint32_t hits) {
  if (key.IsZero()) return;
  if (chain_->Offload(key, priority, hits, {}) == OffloadOutcome::kStored) ++offloaded_;
}

double SimTiers::TransferSeconds(std::span<const int32_t> per_tier) const {
  double s = 0;
  for (size_t t = 0; t < per_tier.size(); ++t) {
    if (per_tier[t] > 0) s += cost_->OnboardSeconds(tier_of_[t], int64_t{per_tier[t]} * o_.block_size);
  }
  return s;
}

void SimTiers::Prefetch(engine::RequestId, std::span<const BlockHash> keys) {
  if (!o_.prefetch) return;
  LandPrefetches();
  const PrefixLocation where = chain_->LookupPrefix(keys);
  std::vector<int32_t> per_tier(tier_of_.size(), 0);
  std::vector<BlockHash> coming;
  for (int32_t i : BlocksToPrefetch(where)) {
    const BlockHash& key = keys[static_cast<size_t>(i)];
    if (staged_.count(key)) continue;  // already up (one on its way is read again, as the engine does)
    ++per_tier[static_cast<size_t>(where.tier[static_cast<size_t>(i)])];
    coming.push_back(key);
  }
  if (coming.empty()) return;
  const Micros at = o_.clock->Now() + static_cast<Micros>(std::ceil(TransferSeconds(per_tier) * 1e6));
  for (const BlockHash& key : coming) landing_.emplace(at, key);
  prefetched_ += coming.size();
}

void SimTiers::LandPrefetches() {
  const Micros now = o_.clock->Now();
  std::vector<BlockHash> landed;
  while (!landing_.empty() && landing_.begin()->first <= now) {
    landed.push_back(landing_.begin()->second);
    landing_.erase(landing_.begin());
  }
  if (landed.empty()) return;
  // Read through the chain, as the engine's prefetch does: a block the lower
  // tier lost meanwhile misses, and what arrives is promoted into tier 0 and
  // staged for its request's admission.
  std::vector<std::span<std::byte>> dests(landed.size());
  FetchHandle h = chain_->StartFetch(landed, dests);
  chain_->Wait(h);
  for (int32_t i = 0; i < h.blocks_ready(); ++i) staged_.insert(landed[static_cast<size_t>(i)]);
}

int32_t SimTiers::Start(engine::RequestId id, std::span<const BlockHash> keys, std::span<const BlockId>) {
  LandPrefetches();
  const std::vector<int> source =
      OnboardSources(*chain_, keys, [this](const BlockHash& key) { return staged_.count(key) > 0; });
  const int32_t n = BlocksWorthFetching(
      source, o_.only_when_faster ? o_.recompute_seconds_per_block : 0.0, [this](int tier) {
        return cost_->OnboardSeconds(tier_of_[static_cast<size_t>(tier)], o_.block_size);
      });
  if (n == 0) return 0;
  // A staged block is a copy in host RAM: it moves at the host link's speed.
  std::vector<int32_t> per_tier(tier_of_.size(), 0);
  std::array<int32_t, kNumTiers> by{};
  std::vector<BlockHash> read;
  for (int32_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    const int tier = source[k];
    ++per_tier[static_cast<size_t>(std::max(tier, 0))];
    ++by[static_cast<size_t>(tier_of_[static_cast<size_t>(std::max(tier, 0))])];
    if (tier < 0) {
      staged_.erase(keys[k]);
    } else {
      read.push_back(keys[k]);
    }
  }
  Fetch f;
  f.ready_us = o_.clock->Now() + static_cast<Micros>(std::ceil(TransferSeconds(per_tier) * 1e6));
  f.blocks = n;
  if (!read.empty()) {
    std::vector<std::span<std::byte>> dests(read.size());
    f.handle = chain_->StartFetch(read, dests);
  }
  fetches_[id] = std::move(f);
  started_.push_back(id);
  first_onboard_.try_emplace(id, by);
  return n;
}

std::optional<int32_t> SimTiers::Poll(engine::RequestId id) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return 0;
  if (o_.clock->Now() < it->second.ready_us) return std::nullopt;
  // The chain finishes the read now (touching and promoting its blocks), as
  // the engine's Poll does when its reads are done.
  chain_->Wait(it->second.handle);
  const int32_t n = it->second.blocks;
  onboarded_ += static_cast<uint64_t>(n);
  fetches_.erase(it);
  return n;
}

double SimTiers::NextReady() const {
  double t = std::numeric_limits<double>::infinity();
  for (const auto& [id, f] : fetches_) t = std::min(t, static_cast<double>(f.ready_us) / 1e6);
  return t;
}

std::array<int32_t, kNumTiers> SimTiers::FirstOnboard(engine::RequestId id) const {
  auto it = first_onboard_.find(id);
  return it == first_onboard_.end() ? std::array<int32_t, kNumTiers>{} : it->second;
}

}  // namespace kvstack::sim
