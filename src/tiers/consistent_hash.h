// ConsistentHashRing: which server holds a key, so that adding or removing
// one of n servers moves about 1/n of the keys (Karger et al.; each server
// owns many points on the ring to even out the shares).
// Thread safety: immutable after construction; share freely.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kvstack/block_hash.h"

namespace kvstack::tiers_internal {

class ConsistentHashRing {
 public:
  // `labels` name the servers (e.g. "host:port"); REQUIRES: not empty.
  explicit ConsistentHashRing(const std::vector<std::string>& labels, int points_per_server = 160);

  // Index into `labels` of the server that owns `hash`.
  int ServerFor(const BlockHash& hash) const;

 private:
  std::vector<std::pair<uint64_t, int>> points_;  // sorted by point
};

}  // namespace kvstack::tiers_internal
