#include "kvstack/tier_policy.h"

namespace kvstack {

std::vector<int> OnboardSources(const TierChain& chain, std::span<const BlockHash> keys,
                                const std::function<bool(const BlockHash&)>& staged) {
  std::vector<int> source;
  for (const BlockHash& key : keys) {
    if (staged(key)) {
      source.push_back(-1);
      continue;
    }
    const PrefixLocation where = chain.LookupPrefix(std::span<const BlockHash>(&key, 1));
    if (where.blocks == 0) break;
    source.push_back(where.tier[0]);
  }
  return source;
}

int32_t BlocksWorthFetching(std::span<const int> source, double recompute_seconds_per_block,
                            const std::function<double(int tier)>& fetch_seconds_per_block) {
  const int32_t n = static_cast<int32_t>(source.size());
  if (recompute_seconds_per_block <= 0) return n;
  for (int32_t i = 0; i < n; ++i) {
    const int tier = source[static_cast<size_t>(i)];
    if (tier >= 0 && fetch_seconds_per_block(tier) > recompute_seconds_per_block) return i;
  }
  return n;
}

std::vector<int32_t> BlocksToPrefetch(const PrefixLocation& where) {
  std::vector<int32_t> below;
  for (int32_t i = 0; i < where.blocks; ++i) {
    if (where.tier[static_cast<size_t>(i)] > 0) below.push_back(i);
  }
  return below;
}

}  // namespace kvstack
