#include "tiers/consistent_hash.h"

#include <algorithm>

#include <fmt/format.h>
#include <xxhash.h>

namespace kvstack::tiers_internal {

ConsistentHashRing::ConsistentHashRing(const std::vector<std::string>& labels, int points_per_server) {
  for (size_t s = 0; s < labels.size(); ++s) {
    for (int i = 0; i < points_per_server; ++i) {
      const std::string p = fmt::format("{}#{}", labels[s], i);
      points_.emplace_back(XXH3_64bits(p.data(), p.size()), static_cast<int>(s));
    }
  }
  std::sort(points_.begin(), points_.end());
}

int ConsistentHashRing::ServerFor(const BlockHash& hash) const {
  // The block hash is already uniform; mix both halves so the ring position
  // does not depend on the low word alone.
  const uint64_t k = XXH3_64bits(&hash, sizeof(hash));
  auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(k, 0));
  if (it == points_.end()) it = points_.begin();
  return it->second;
}

}  // namespace kvstack::tiers_internal
