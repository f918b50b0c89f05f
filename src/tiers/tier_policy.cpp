#include "kvstack/tier_policy.h"

namespace kvstack {

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
