#include "engine/tier_onboarder.h"

#include <algorithm>
#include <cstring>

#include "engine/kv_block_convert.h"
#include "kvstack/tier_policy.h"

namespace kvstack::engine {

TierOnboarder::TierOnboarder(std::unique_ptr<TierChain> chain, const Options& options, const Clock* clock)
    : chain_(std::move(chain)), options_(options), clock_(clock) {
  get_bytes_per_s_.assign(static_cast<size_t>(chain_->num_tiers()), 0.0);
}

TierOnboarder::~TierOnboarder() {
  // Reads must finish before the arena and scratch buffers go; blocks queued
  // for the lower tiers are written, so a disk tier is warm after a restart.
  fetches_.clear();
  abandoned_.clear();
  prefetches_.clear();
  chain_->Flush();
}

void TierOnboarder::OnEvicting(BlockId id, const BlockHash& key, Priority priority, uint32_t hits) {
  if (arena_ == nullptr || key.IsZero()) return;
  std::span<const std::byte> bytes(arena_->Block(ToIndex(id)), arena_->block_bytes());
  if (options_.tier_shape) {
    offload_scratch_.resize(chain_->bytes_per_block());
    ConvertKvBlock(arena_->shape(), bytes.data(), *options_.tier_shape, offload_scratch_.data());
    bytes = offload_scratch_;
  }
  switch (chain_->Offload(key, priority, hits, bytes)) {
    case OffloadOutcome::kStored: ++metrics_.offloaded_blocks; break;
    case OffloadOutcome::kSkipped: ++metrics_.offload_skipped_blocks; break;
    case OffloadOutcome::kRefused: ++metrics_.offload_refused_blocks; break;
  }
}

void TierOnboarder::Onboard(const std::byte* tier_block, std::byte* device_block) const {
  if (options_.tier_shape) {
    ConvertKvBlock(*options_.tier_shape, tier_block, arena_->shape(), device_block);
  } else {
    std::memcpy(device_block, tier_block, arena_->block_bytes());
  }
}

void TierOnboarder::RefreshBandwidth() {
  const Micros now = clock_->Now();
  if (bandwidth_read_at_ >= 0 && now - bandwidth_read_at_ < 100'000) return;
  bandwidth_read_at_ = now;
  const TierChainMetrics m = chain_->Metrics();
  for (size_t i = 0; i < m.tiers.size() && i < get_bytes_per_s_.size(); ++i) {
    get_bytes_per_s_[i] = m.tiers[i].get_bytes_per_s;
  }
}

double TierOnboarder::FetchSecondsPerBlock(int tier) {
  const double bw = get_bytes_per_s_[static_cast<size_t>(tier)];
  return bw > 0 ? double(chain_->bytes_per_block()) / bw : 0.0;
}

void TierOnboarder::Stage(const BlockHash& key, std::span<const std::byte> bytes) {
  if (staged_.count(key)) return;
  // Oldest out first: a prefetch whose request never came should not keep
  // newer ones from landing.
  while (!staged_.empty() && staged_bytes_ + bytes.size() > options_.max_prefetch_bytes) {
    auto oldest = std::min_element(staged_.begin(), staged_.end(),
                                   [](const auto& a, const auto& b) { return a.second.order < b.second.order; });
    staged_bytes_ -= oldest->second.bytes.size();
    staged_.erase(oldest);
  }
  if (staged_bytes_ + bytes.size() > options_.max_prefetch_bytes) return;
  staged_[key] = Staged{.bytes = std::vector<std::byte>(bytes.begin(), bytes.end()), .order = ++staged_order_};
  staged_bytes_ += bytes.size();
}

void TierOnboarder::ReapPrefetches() {
  for (size_t i = 0; i < prefetches_.size();) {
    PrefetchJob& job = prefetches_[i];
    if (!chain_->Poll(job.handle)) {
      ++i;
      continue;
    }
    const size_t block = chain_->bytes_per_block();
    for (int32_t b = 0; b < job.handle.blocks_ready(); ++b) {
      const size_t at = static_cast<size_t>(b) * block;
      Stage(job.hashes[static_cast<size_t>(b)], std::span<const std::byte>(job.scratch.data() + at, block));
    }
    prefetch_bytes_ -= job.scratch.size();
    prefetches_.erase(prefetches_.begin() + static_cast<ptrdiff_t>(i));
  }
}

void TierOnboarder::Prefetch(RequestId, std::span<const BlockHash> keys) {
  ReapPrefetches();
  std::vector<BlockHash> below;  // blocks not yet in the fastest tier nor staged
  for (int32_t i : BlocksToPrefetch(chain_->LookupPrefix(keys))) {
    const BlockHash& key = keys[static_cast<size_t>(i)];
    if (!staged_.count(key)) below.push_back(key);
  }
  if (below.empty()) return;
  const size_t bytes = below.size() * chain_->bytes_per_block();
  if (prefetch_bytes_ + bytes > options_.max_prefetch_bytes) return;  // stay bounded; admission fetches anyway
  PrefetchJob job;
  job.scratch.resize(bytes);
  job.hashes = below;
  std::vector<std::span<std::byte>> dests;
  dests.reserve(below.size());
  for (size_t i = 0; i < below.size(); ++i) {
    dests.emplace_back(job.scratch.data() + i * chain_->bytes_per_block(), chain_->bytes_per_block());
  }
  job.handle = chain_->StartFetch(below, dests);
  prefetch_bytes_ += bytes;
  ++metrics_.prefetch_requests;
  metrics_.prefetched_blocks += below.size();
  prefetches_.push_back(std::move(job));
}

int32_t TierOnboarder::Start(RequestId id, std::span<const BlockHash> keys, std::span<const BlockId> blocks) {
  ReapPrefetches();
  if (arena_ == nullptr || keys.empty()) return 0;
  std::vector<int> source =
      OnboardSources(*chain_, keys, [this](const BlockHash& key) { return staged_.count(key) > 0; });
  // Blocks no tier is known to hold may still be in a shared tier, put there
  // by another server: ask it (a miss ends the prefix; they are computed).
  const int32_t known = static_cast<int32_t>(source.size());
  if (chain_->shared_tier() >= 0) {
    for (size_t i = source.size(); i < keys.size(); ++i) source.push_back(chain_->shared_tier());
  }
  int32_t n = static_cast<int32_t>(source.size());
  if (n == 0) return 0;
  if (options_.only_when_faster && recompute_tokens_per_s_ > 0) {
    RefreshBandwidth();
    const int32_t worth = BlocksWorthFetching(source, double(options_.block_size) / recompute_tokens_per_s_,
                                              [this](int tier) { return FetchSecondsPerBlock(tier); });
    if (worth < n) metrics_.recompute_chosen_blocks += static_cast<uint64_t>(std::max<int32_t>(0, std::min(n, known) - worth));
    n = worth;
    if (n == 0) return 0;
  }
  Fetch f;
  f.requested = n;
  std::vector<BlockHash> hashes;
  std::vector<std::span<std::byte>> dests;
  for (int32_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    std::byte* dest = arena_->Block(ToIndex(blocks[k]));
    if (i < known && source[k] <= 0) ++metrics_.timely_blocks;  // staged or already in host RAM
    if (source[k] < 0) {
      auto staged = staged_.find(keys[k]);
      Onboard(staged->second.bytes.data(), dest);
      staged_bytes_ -= staged->second.bytes.size();
      staged_.erase(staged);
      continue;
    }
    hashes.push_back(keys[k]);
    f.fetched.push_back(i);
    if (options_.tier_shape) {
      f.targets.push_back(dest);
    } else {
      dests.emplace_back(dest, arena_->block_bytes());
    }
  }
  if (options_.tier_shape && !hashes.empty()) {
    const size_t block = chain_->bytes_per_block();
    f.scratch.resize(hashes.size() * block);
    for (size_t b = 0; b < hashes.size(); ++b) dests.emplace_back(f.scratch.data() + b * block, block);
  }
  if (!hashes.empty()) {
    f.handle = chain_->StartFetch(hashes, dests);
    f.reading = true;
  }
  f.started = clock_->Now();
  fetches_[id] = std::move(f);
  ++metrics_.onboard_requests;
  // Blocks asked of a shared tier on the chance another server put them
  // there are not counted as requested (only the ones that arrive count, as
  // onboarded): timeliness stays about blocks known to be below.
  metrics_.onboard_blocks_requested += static_cast<uint64_t>(std::min(n, known));
  return n;
}

std::optional<int32_t> TierOnboarder::Poll(RequestId id) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return 0;
  Fetch& f = it->second;
  int32_t ready = f.requested;
  if (f.reading) {
    if (!chain_->Poll(f.handle)) return std::nullopt;
    // The handle's leading arrivals, mapped back to key order: the prefix
    // ends at the first block that was read and did not arrive.
    const size_t arrived = static_cast<size_t>(f.handle.blocks_ready());
    if (arrived < f.fetched.size()) ready = f.fetched[arrived];
    for (size_t b = 0; b < arrived && b < f.targets.size(); ++b) {
      Onboard(f.scratch.data() + b * chain_->bytes_per_block(), f.targets[b]);
    }
  }
  metrics_.onboarded_blocks += static_cast<uint64_t>(ready);
  metrics_.wait_us.Observe(double(clock_->Now() - f.started));
  fetches_.erase(it);
  return ready;
}

void TierOnboarder::Abandon(RequestId id) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return;
  // Waiting here would stall every running request for as long as the
  // slowest read takes (a Redis server's timeout): the scheduler holds the
  // blocks instead until Draining() is false.
  if (it->second.reading && !chain_->Poll(it->second.handle)) abandoned_.emplace(id, std::move(it->second));
  fetches_.erase(it);
}

bool TierOnboarder::Draining(RequestId id) {
  auto it = abandoned_.find(id);
  if (it == abandoned_.end()) return false;
  if (!chain_->Poll(it->second.handle)) return true;
  ++metrics_.abandoned_fetches;
  abandoned_.erase(it);
  return false;
}

OnboardMetrics TierOnboarder::Metrics() const {
  OnboardMetrics m = metrics_;
  m.recompute_tokens_per_s = recompute_tokens_per_s_;
  return m;
}

}  // namespace kvstack::engine
