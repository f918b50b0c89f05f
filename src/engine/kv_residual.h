// KvResidual: the tokens of a sequence's last, partial block, kept at f16
// while the KV cache stores quantized blocks (KIVI's full-precision residual).
//
// Why: a quantized key block groups its channels over the whole block, so
// its scales are only right once all of its tokens are known; and the newest
// tokens are the ones attention weighs most. So with an int8, fp8 or int4
// part, a token's K and V go to its sequence's residual until the block that
// holds it is full; then the whole block is quantized once, from the f16
// rows, with scales from the whole block (kernels::QuantizeKvHead), into the
// arena, and the residual starts over for the next block. Measured on
// stories260K (BENCHMARKS.md, issue 12): int8 keys written token by token
// agree with f32 KV on 98.7% of positions; with the residual, 99.5%.
//
// Contract (Forward keeps it): for a sequence whose first L tokens have KV,
// the residual holds tokens [L - L % B, L) of the block table's block
// L / B, in slots 0 .. L % B - 1; blocks below it hold quantized bytes in the
// arena; when L % B == 0 the residual holds nothing. Every row goes through
// f16 before it is quantized, whether it waited in the residual or was
// computed in the step that filled the block, so a block's bytes do not
// depend on how its tokens were batched (chunked prefill, decode steps).
//
// Ownership: one per sequence, owned by whoever owns the sequence (the
// engine's request; a fork copies its parent's). Preempting a sequence for
// recompute needs nothing: it restarts from a block boundary. Not shared
// between threads while a forward pass uses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvstack/kv_arena.h"

namespace kvstack::engine {

class KvResidual {
 public:
  // Room for one block of `shape`: every layer, K and V, every KV head.
  explicit KvResidual(const KvShape& shape);

  // Whether a pass over an arena of this shape writes through a residual:
  // K or V quantized.
  static bool Needed(const KvShape& shape) { return IsQuantizedKv(shape.k_type()) || IsQuantizedKv(shape.v_type()); }

  // The block_size x head_dim f16 rows of one head of K or V, slot-major.
  uint16_t* Head(int32_t layer, KvPart part, int32_t kv_head) { return &data_[Offset(layer, part, kv_head)]; }
  const uint16_t* Head(int32_t layer, KvPart part, int32_t kv_head) const {
    return &data_[Offset(layer, part, kv_head)];
  }
  size_t bytes() const { return data_.size() * sizeof(uint16_t); }
  // Bytes of one residual for `shape` (what a running sequence holds beside
  // its blocks).
  static size_t BytesFor(const KvShape& shape);

 private:
  size_t Offset(int32_t layer, KvPart part, int32_t kv_head) const {
    return ((static_cast<size_t>(layer) * 2 + (part == KvPart::kValue ? 1 : 0)) * kv_heads_ +
            static_cast<size_t>(kv_head)) *
           head_elems_;
  }
  size_t kv_heads_;
  size_t head_elems_;  // block_size * head_dim
  std::vector<uint16_t> data_;
};

}  // namespace kvstack::engine
