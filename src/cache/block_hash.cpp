#include "kvstack/block_hash.h"

#include <algorithm>
#include <cstring>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

namespace kvstack {
namespace {

BlockHash FromXxh(XXH128_hash_t h) {
  BlockHash out{h.low64, h.high64};
  // Zero is reserved for "no hash"; remapping one of 2^128 values costs nothing.
  if (out.IsZero()) out.lo = 1;
  return out;
}

void AppendField(std::string* buf, const std::string& field) {
  uint64_t n = field.size();
  buf->append(reinterpret_cast<const char*>(&n), sizeof n);
  buf->append(field);
}

}  // namespace

std::string BlockHash::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[15 - i] = kDigits[(hi >> (4 * i)) & 0xf];
    s[31 - i] = kDigits[(lo >> (4 * i)) & 0xf];
  }
  return s;
}

BlockHash BlockHasher::Root(const ExtraKeys& keys) const {
  // Length-prefixed fields, so ("ab","c") and ("a","bc") differ.
  std::string buf = "kvstack-root-v1";
  AppendField(&buf, keys.model_id);
  AppendField(&buf, keys.cache_salt);
  AppendField(&buf, keys.adapter_id);
  return FromXxh(XXH3_128bits_withSeed(buf.data(), buf.size(), seed_));
}

BlockHash BlockHasher::Chain(const BlockHash& parent, std::span<const Token> block_tokens) const {
  // Small blocks (the common 16 tokens) hash from one stack buffer: one call,
  // no streaming state.
  constexpr size_t kStackTokens = 64;
  const size_t token_bytes = block_tokens.size_bytes();
  if (block_tokens.size() <= kStackTokens) {
    alignas(16) unsigned char buf[sizeof(BlockHash) + kStackTokens * sizeof(Token)];
    std::memcpy(buf, &parent.lo, 8);
    std::memcpy(buf + 8, &parent.hi, 8);
    if (token_bytes != 0) std::memcpy(buf + 16, block_tokens.data(), token_bytes);
    return FromXxh(XXH3_128bits_withSeed(buf, 16 + token_bytes, seed_));
  }
  XXH3_state_t state;
  XXH3_128bits_reset_withSeed(&state, seed_);
  XXH3_128bits_update(&state, &parent.lo, 8);
  XXH3_128bits_update(&state, &parent.hi, 8);
  XXH3_128bits_update(&state, block_tokens.data(), token_bytes);
  return FromXxh(XXH3_128bits_digest(&state));
}

void BlockHasher::ChainBlocks(const BlockHash& parent, std::span<const Token> tokens,
                              size_t block_size, std::vector<BlockHash>* out) const {
  const size_t full = tokens.size() / block_size;
  // Geometric growth: a decoding sequence adds one key at a time, and an
  // exact reserve would reallocate the whole chain for each.
  if (out->capacity() < out->size() + full) out->reserve(std::max(out->size() + full, 2 * out->capacity()));
  BlockHash prev = parent;
  for (size_t b = 0; b < full; ++b) {
    prev = Chain(prev, tokens.subspan(b * block_size, block_size));
    out->push_back(prev);
  }
}

}  // namespace kvstack
