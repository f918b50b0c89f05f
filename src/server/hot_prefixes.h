// HotPrefixes: which cached prefixes serve the most requests, named by the key
// of their last block (a BlockHash: never the text), with their length in
// tokens and their tenant. /v1/memory's answer to "which prefixes repeat often
// enough to deserve cache priority".
//
// Bounded: at most `capacity` prefixes are tracked. When a new one arrives at
// capacity, the tracked prefix with the fewest hits (the oldest last hit among
// equals) is dropped, so a prefix that keeps being hit is never forgotten
// while one-off hits churn through the remaining slots.
// Thread safety: none; the owner (WorkloadRecorder) locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/clock.h"

namespace kvstack::server {

struct HotPrefix {
  BlockHash key;
  int32_t tokens = 0;    // the longest hit seen on this key, in tokens
  std::string tenant;    // the tenant's label ("" = no salt), never the salt
  uint64_t hits = 0;     // requests it served
  Micros last_hit = 0;
};

class HotPrefixes {
 public:
  // REQUIRES: capacity > 0.
  explicit HotPrefixes(size_t capacity);

  // One request served `tokens` prompt tokens from the prefix ending at `key`.
  // A zero key is ignored.
  void Record(const BlockHash& key, int32_t tokens, const std::string& tenant, Micros at);
  // The `k` most hit, most hits first (then the longest, then the most recent).
  std::vector<HotPrefix> Top(size_t k) const;
  size_t size() const { return by_key_.size(); }

 private:
  void DropColdest();

  size_t capacity_;
  std::unordered_map<BlockHash, HotPrefix> by_key_;
};

}  // namespace kvstack::server
