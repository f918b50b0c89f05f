#include "engine/tier_onboarder.h"

#include <algorithm>

namespace kvstack::engine {

TierOnboarder::TierOnboarder(std::unique_ptr<TierChain> chain, const Options& options, const Clock* clock)
    : chain_(std::move(chain)), options_(options), clock_(clock) {
  get_bytes_per_s_.assign(static_cast<size_t>(chain_->num_tiers()), 0.0);
}

TierOnboarder::~TierOnboarder() {
  // Reads must finish before the arena and scratch buffers go; blocks queued
  // for the lower tiers are written, so a disk tier is warm after a restart.
  fetches_.clear();
  prefetches_.clear();
  chain_->Flush();
}

void TierOnboarder::OnEvicting(BlockId id, const BlockHash& key, Priority priority, uint32_t hits) {
  if (arena_ == nullptr || key.IsZero()) return;
  const std::span<const std::byte> bytes(arena_->Block(ToIndex(id)), arena_->block_bytes());
  switch (chain_->Offload(key, priority, hits, bytes)) {
    case OffloadOutcome::kStored: ++metrics_.offloaded_blocks; break;
    case OffloadOutcome::kSkipped: ++metrics_.offload_skipped_blocks; break;
    case OffloadOutcome::kRefused: ++metrics_.offload_refused_blocks; break;
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

void TierOnboarder::ReapPrefetches() {
  for (size_t i = 0; i < prefetches_.size();) {
    if (!chain_->Poll(prefetches_[i].handle)) {
      ++i;
      continue;
    }
    prefetch_bytes_ -= prefetches_[i].scratch.size();
    prefetches_.erase(prefetches_.begin() + static_cast<ptrdiff_t>(i));
  }
}

void TierOnboarder::Prefetch(RequestId, std::span<const BlockHash> keys) {
  ReapPrefetches();
  const PrefixLocation where = chain_->LookupPrefix(keys);
  std::vector<BlockHash> below;  // blocks not yet in the fastest tier
  for (int32_t i = 0; i < where.blocks; ++i) {
    if (where.tier[static_cast<size_t>(i)] > 0) below.push_back(keys[static_cast<size_t>(i)]);
  }
  if (below.empty()) return;
  const size_t bytes = below.size() * chain_->bytes_per_block();
  if (prefetch_bytes_ + bytes > options_.max_prefetch_bytes) return;  // stay bounded; admission fetches anyway
  PrefetchJob job;
  job.scratch.resize(bytes);
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
  const PrefixLocation where = chain_->LookupPrefix(keys);
  int32_t n = where.blocks;
  if (n == 0) return 0;
  if (options_.only_when_faster && recompute_tokens_per_s_ > 0) {
    // Cut the prefix at the first block whose tier is slower than recomputing.
    RefreshBandwidth();
    const double recompute_s = double(options_.block_size) / recompute_tokens_per_s_;
    for (int32_t i = 0; i < n; ++i) {
      if (FetchSecondsPerBlock(where.tier[static_cast<size_t>(i)]) > recompute_s) {
        metrics_.recompute_chosen_blocks += static_cast<uint64_t>(n - i);
        n = i;
        break;
      }
    }
    if (n == 0) return 0;
  }
  std::vector<std::span<std::byte>> dests;
  dests.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    dests.emplace_back(arena_->Block(ToIndex(blocks[static_cast<size_t>(i)])), arena_->block_bytes());
    if (where.tier[static_cast<size_t>(i)] == 0) ++metrics_.timely_blocks;
  }
  Fetch f;
  f.handle = chain_->StartFetch(keys.first(static_cast<size_t>(n)), dests);
  f.started = clock_->Now();
  fetches_[id] = std::move(f);
  ++metrics_.onboard_requests;
  metrics_.onboard_blocks_requested += static_cast<uint64_t>(n);
  return n;
}

std::optional<int32_t> TierOnboarder::Poll(RequestId id) {
  auto it = fetches_.find(id);
  if (it == fetches_.end()) return 0;
  if (!chain_->Poll(it->second.handle)) return std::nullopt;
  const int32_t ready = it->second.handle.blocks_ready();
  metrics_.onboarded_blocks += static_cast<uint64_t>(ready);
  metrics_.wait_us.Observe(double(clock_->Now() - it->second.started));
  fetches_.erase(it);
  return ready;
}

void TierOnboarder::Abandon(RequestId id) { fetches_.erase(id); }

OnboardMetrics TierOnboarder::Metrics() const {
  OnboardMetrics m = metrics_;
  m.recompute_tokens_per_s = recompute_tokens_per_s_;
  return m;
}

}  // namespace kvstack::engine
