// Block hashes: the keys of the prefix cache.
//
// A full block of B tokens is identified by a chained 128-bit hash:
//   key(block i) = XXH3-128(key(block i-1) || token ids of block i, seed)
// and the chain starts from a root key derived from the request's ExtraKeys
// (model identity, tenant cache_salt, adapter id). Equal keys therefore mean
// equal tokens from the very first token, under the same model, tenant and
// adapter: no prefix is ever shared across tenants or models. The seed is
// configurable so that every process of one deployment (engines, router,
// simulator) computes the same keys.
//
// Callers: the cache core (admission, commit), the router and the simulator.
// Thread safety: BlockHasher is immutable after construction; share freely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace kvstack {

// A token id, as the model's vocabulary numbers it.
using Token = int32_t;

// A 128-bit block key. The all-zero value means "no hash" (an uncommitted block,
// or the parent of a sequence's first block); BlockHasher never produces it.
struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;

  bool IsZero() const { return lo == 0 && hi == 0; }
  friend bool operator==(const BlockHash&, const BlockHash&) = default;
  // 32 lowercase hex digits, hi first.
  std::string ToHex() const;
};

// What, besides the tokens, makes two blocks different. Every field takes part
// in the root key; an empty field is distinct from any non-empty one.
struct ExtraKeys {
  std::string model_id;    // e.g. the model file's identity (name + content hash)
  std::string cache_salt;  // the tenant: prefixes are shared only within a salt
  std::string adapter_id;  // a LoRA or other adapter; empty for the base model
};

class BlockHasher {
 public:
  explicit BlockHasher(uint64_t seed = 0) : seed_(seed) {}

  uint64_t seed() const { return seed_; }

  // The key that a sequence's first block chains from.
  BlockHash Root(const ExtraKeys& keys) const;

  // The key of one full block. REQUIRES: block_tokens is exactly one block.
  BlockHash Chain(const BlockHash& parent, std::span<const Token> block_tokens) const;

  // Appends the keys of every full block of `tokens` (a trailing partial block
  // gets none), chaining from `parent`. REQUIRES: block_size >= 1.
  void ChainBlocks(const BlockHash& parent, std::span<const Token> tokens, size_t block_size,
                   std::vector<BlockHash>* out) const;

 private:
  uint64_t seed_;
};

}  // namespace kvstack

template <>
struct std::hash<kvstack::BlockHash> {
  size_t operator()(const kvstack::BlockHash& h) const noexcept { return h.lo; }
};
