// KvCache internals shared by its implementation files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <absl/container/node_hash_map.h>

#include "cache/block_pool.h"
#include "kvstack/kv_cache.h"

namespace kvstack {

// One sequence's view of the cache.
// Invariants (KvCache::CheckInvariants):
//   blocks.size() == ceil((tokens.size() + reserved) / B), at least 1
//   hashes.size() == tokens.size() / B: keys of the full blocks, chained from root
//   committed <= hashes.size(); blocks [0, committed) carry hashes[i] in the
//     pool (unless they were duplicates of an already cached block, kept private)
//   hit_tokens <= computed_tokens <= tokens.size()
struct Sequence {
  std::vector<Token> tokens;
  std::vector<BlockId> blocks;
  std::vector<BlockHash> hashes;
  BlockHash root;
  int32_t prompt_tokens = 0;
  int32_t computed_tokens = 0;
  int32_t hit_tokens = 0;
  int32_t committed = 0;  // leading blocks considered committed
  // Forked, or a fork: only then can a block past its full ones be held by
  // another sequence (prefix hits share full blocks only), so only then can
  // its tail be shared.
  bool forked = false;
  RetentionSpec retention;
  std::string tenant;
};

struct KvCache::Impl final : BlockPoolObserver {
  KvCache* cache = nullptr;
  std::unique_ptr<EvictionPolicy> policy;
  std::unique_ptr<BlockPool> pool;
  absl::node_hash_map<uint64_t, Sequence> sequences;
  uint64_t next_sequence = 1;
  std::unordered_map<uint64_t, std::vector<int32_t>> pins;
  uint64_t next_pin = 1;
  CacheMetrics counters;  // counters and histograms; block counts filled on read
  bool quiet_evictions = false;  // ResetPrefixCache publishes AllCleared instead

  void OnEvict(int32_t id, const BlockMeta& m) override;

  Sequence* Find(SequenceId id) {
    auto it = sequences.find(id.value);
    return it == sequences.end() ? nullptr : &it->second;
  }
  const Sequence* Find(SequenceId id) const {
    auto it = sequences.find(id.value);
    return it == sequences.end() ? nullptr : &it->second;
  }
  PrefixCounters& Tenant(const std::string& tenant);
  // The priority and expiry a sequence asks for its block `b`.
  struct BlockRetention {
    Priority priority;
    Micros expiry;
  };
  BlockRetention RetentionFor(const Sequence& s, int32_t b, Micros now) const;
  // Commits blocks [s.committed, full computed blocks).
  void CommitComputed(Sequence& s);
  // Whether the block that receives s's next token is shared with a fork:
  // the next append copies it first.
  bool TailShared(const Sequence& s) const {
    if (!s.forked) return false;  // without reading the block's metadata
    const size_t next_slot_block = s.tokens.size() / static_cast<size_t>(cache->block_size());
    return next_slot_block < s.blocks.size() &&
           pool->meta(static_cast<int32_t>(s.blocks[next_slot_block])).ref_count > 1;
  }
  // KvCache::Append and MarkComputed on a sequence already found (`id`
  // names it in errors).
  Status AppendTo(Sequence& s, SequenceId id, std::span<const Token> tokens);
  Status MarkComputedIn(Sequence& s, SequenceId id, int32_t num_computed_tokens);
};

inline int32_t Idx(BlockId b) { return static_cast<int32_t>(b); }

}  // namespace kvstack
