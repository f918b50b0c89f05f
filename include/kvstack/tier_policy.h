// Tier policy: the decisions about the tiers below the device pool that do
// not depend on how blocks are stored, in one place, so the engine (with its
// measured bandwidth and prefill rate) and the simulator (with its cost
// model) decide alike. The offload gate (priority or hits) is TierChain's
// own: the simulator offloads through a TierChain of metadata-only tiers.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kvstack/tier_chain.h"

namespace kvstack {

// Where each of a request's next blocks would come from, as far as they
// can: -1 for a block `staged` holds (a prefetched copy in RAM), else the
// fastest tier of `chain` that holds it; stops at the first block neither
// holds. Metadata only.
std::vector<int> OnboardSources(const TierChain& chain, std::span<const BlockHash> keys,
                                const std::function<bool(const BlockHash&)>& staged);

// Onboard or recompute. `source[i]` is where the i-th of a request's next
// blocks would come from: a tier index (fastest first), or -1 for a copy
// already in RAM (a staged prefetch), always worth taking.
// `fetch_seconds_per_block(tier)` is 0 while unknown (nothing measured yet:
// fetch, and the reads measure it); `recompute_seconds_per_block` 0 when
// unknown (fetch everything). Returns how many leading blocks to fetch: the
// prefix is cut at the first block whose tier is slower than recomputing it.
int32_t BlocksWorthFetching(std::span<const int> source, double recompute_seconds_per_block,
                            const std::function<double(int tier)>& fetch_seconds_per_block);

// Prefetch on queueing: of a queued request's blocks (those past its device
// hits, located by TierChain::LookupPrefix), the indices of those held only
// below the fastest tier, to be brought up to it before admission.
std::vector<int32_t> BlocksToPrefetch(const PrefixLocation& where);

}  // namespace kvstack
