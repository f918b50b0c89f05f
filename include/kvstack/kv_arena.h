// KvArena: the bytes of K and V for every block of a pool.
//
// Layout (what the attention kernels read). Blocks are contiguous and in block
// id order, so one block moves between tiers as one contiguous byte range:
//
//   arena  = block[0] block[1] ... block[num_blocks-1]
//   block  = layer[0] ... layer[L-1]                       block_bytes()
//   layer  = K[kv_head 0..H-1] then V[kv_head 0..H-1]      layer_bytes()
//   K or V of one head = KvHeadBytes(type, part, B, D) bytes (below)
//
// so K of (block b, layer l, kv head h) starts at
//   b*block_bytes + l*layer_bytes + h*k_head_bytes
// and V of the same head at b*block_bytes + l*layer_bytes + H*k_head_bytes +
// h*v_head_bytes. K and V may have different types (shape.dtype for K,
// shape.v_type() for V). Within a head the tokens of a block are adjacent: a
// kernel walking a sequence's block table streams each head's keys block by
// block.
//
// One head of one block (B tokens of D elements), by type. Every scale lives
// inside these bytes, so a block stays one self-contained range:
//   f32, f16, bf16   token[0..B-1], each D elements (4, 2, 2 bytes).
//   fp8-e4m3/e5m2, V q[B][D] bytes (OCP FP8: e4m3 bias 7, max 448, no
//                    infinities; e5m2 bias 15, max 57344), then code[B]
//                    bytes: element d of token t = fp8(q[t][d]) *
//                    Fp8RowScale(code[t]) = 2^((code - 160) / 16)
//                    (kv_fp8_scale.h). The store picks each row's code
//                    among sixteen sixteenths of an octave for the least
//                    squared error; values beyond the largest multiplier's
//                    range saturate.
//   fp8-e4m3/e5m2, K q[B][D] and code[B] as for V, then o[D] e4m3 bytes
//                    (unscaled): channel d of token t = fp8(q[t][d]) *
//                    Fp8RowScale(code[t]) + e4m3(o[d]), o[d] the midpoint
//                    of channel d's range over the block (each channel
//                    centred, as int4 K below: within a block RoPE's slow
//                    channels sit away from zero, and FP8's step grows
//                    with the value).
//   int8, V          q[B][D] int8, then scale[B][D/G] binary16, G =
//                    KvGroupSize(D): element d of token t = q[t][d] *
//                    scale[t][d/G] (symmetric, |q| <= 127).
//   int8, K          q[B][D] int8, then one float S and code[D] uint8:
//                    channel d of every token has scale S * code[d] (per
//                    channel, as int4 K below).
//   int4, V          n[B][D/2] bytes, then scale[B][D/G] binary16. Byte i of
//                    a token holds element i in its low nibble and element
//                    i + D/2 in its high nibble; element = (nibble - 8) *
//                    scale[t][element/G] (symmetric, nibbles 1..15). Per-token
//                    groups, as KIVI does for values.
//   int4, K          n[B][D/2] bytes packed as for V, then float S, float U,
//                    e[D/2] bytes and o[D] int8: channel d of every token
//                    in the block = (nibble - 8) * S * kInt4KeyScaleSteps[e_d]
//                    + U * o[d], where e_d is the low nibble of e[d] for d <
//                    D/2 and the high nibble of e[d - D/2] above (per-channel
//                    grouping inside the block, as KIVI does for keys: keys
//                    have outlier channels, and a per-token scale would be
//                    set by them; and each channel is centred on its own
//                    offset, since within a block RoPE's slow channels sit
//                    away from zero). The scale steps and offsets cost 1.5
//                    bytes a channel, so int4 keeps 3.5x f16's tokens at head
//                    dims 64 and 128.
//   int8, int4 and fp8 K are written a whole block at a time: channel scales
//   and offsets come from all of the block's tokens (kernels::QuantizeKvHead;
//   the engine holds a partial block at f16 until it is full,
//   engine/kv_residual.h).
//
// A metadata-only arena (simulator, router) has the same shape and sizes but no
// bytes; asking it for a pointer is a bug.
//
// Memory is allocated and touched once at creation and never returned while
// the arena lives (memory given back and re-touched is slow on these hosts).
// Thread safety: the arena never moves; distinct blocks may be written from
// distinct threads. The caller orders reads and writes of the same block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kvstack/kv_int4_key_steps.h"
#include "kvstack/status.h"

namespace kvstack {

enum class KvDType : uint8_t { kF32, kF16, kBF16, kInt8, kFp8E4M3, kFp8E5M2, kInt4 };
// "f32", "f16", "bf16", "int8", "fp8-e4m3", "fp8-e5m2", "int4".
std::string_view KvDTypeName(KvDType t);
// Bytes per element of a float type, and 1 for the 8-bit ones. REQUIRES: not
// int4 (half a byte: use KvHeadBytes, which also counts the scales).
size_t KvDTypeBytes(KvDType t);
// The names above ("fp8" is fp8-e4m3); InvalidArgument naming the bad one.
Result<KvDType> ParseKvDType(std::string_view name);
// Whether values are stored with less than 16 bits (int8, fp8, int4).
inline bool IsQuantizedKv(KvDType t) { return t >= KvDType::kInt8; }

// Which half of a layer: int4 groups keys per channel and values per token.
enum class KvPart : uint8_t { kKey, kValue };

// Elements per scale group of an int8 or int4 token row: 64 where D is a
// multiple of 128 (so a group never spans the two nibble halves of int4),
// else the whole row.
inline int32_t KvGroupSize(int32_t head_dim) { return head_dim % 128 == 0 ? 64 : head_dim; }

// Bytes of one head of K or V of one block of `block_size` tokens, scales
// included (the layouts above). REQUIRES: head_dim even for int4.
inline size_t KvHeadBytes(KvDType t, KvPart part, int32_t block_size, int32_t head_dim) {
  const size_t B = static_cast<size_t>(block_size), D = static_cast<size_t>(head_dim);
  const size_t groups = D / static_cast<size_t>(KvGroupSize(head_dim));
  switch (t) {
    case KvDType::kF32: return B * D * 4;
    case KvDType::kF16:
    case KvDType::kBF16: return B * D * 2;
    case KvDType::kFp8E4M3:
    case KvDType::kFp8E5M2: return B * D + B + (part == KvPart::kKey ? D : 0);
    case KvDType::kInt8: return B * D + (part == KvPart::kKey ? 4 + D : B * groups * 2);
    case KvDType::kInt4: return B * D / 2 + (part == KvPart::kKey ? 8 + D / 2 + D : B * groups * 2);
  }
  return 0;
}

struct KvShape {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;  // tokens per block
  KvDType dtype = KvDType::kF16;     // K's type, and V's unless v_dtype is set
  std::optional<KvDType> v_dtype;  // V's type where it differs from K's

  KvDType k_type() const { return dtype; }
  KvDType v_type() const { return v_dtype.value_or(dtype); }
  size_t k_head_bytes() const;  // one head of K for one block
  size_t v_head_bytes() const;  // one head of V for one block
  size_t layer_bytes() const;   // K and V of one layer for one block
  size_t block_bytes() const;   // everything of one block
  // "int8" when K and V share a type, else "k=int8,v=int4": what logs,
  // metrics and identities name the layout by.
  std::string types_name() const;
  // The whole layout (types, block size, KV heads, head dim, layers) as one
  // string, part of a block's identity: blocks of different layouts never
  // share a key in any tier.
  std::string layout_identity() const;
};

enum class KvStorageMode : uint8_t {
  kAllocate,      // real bytes, for the engine
  kMetadataOnly,  // no bytes, for the simulator and the router
};

class KvArena {
 public:
  // InvalidArgument names a bad shape field; ResourceExhausted when the memory
  // cannot be allocated.
  static Result<KvArena> Create(const KvShape& shape, int32_t num_blocks, KvStorageMode mode);

  KvArena(KvArena&&) noexcept = default;
  KvArena& operator=(KvArena&&) noexcept = default;

  const KvShape& shape() const { return shape_; }
  int32_t num_blocks() const { return num_blocks_; }
  bool has_storage() const { return data_ != nullptr; }
  size_t block_bytes() const { return shape_.block_bytes(); }
  // Bytes this arena would hold with storage (also for metadata-only arenas).
  size_t total_bytes() const { return block_bytes() * static_cast<size_t>(num_blocks_); }

  // REQUIRES: has_storage(), 0 <= block < num_blocks(), 0 <= layer < num_layers.
  std::byte* Block(int32_t block);
  const std::byte* Block(int32_t block) const;
  std::byte* K(int32_t block, int32_t layer);  // [kv_head][slot][head_dim]
  std::byte* V(int32_t block, int32_t layer);
  const std::byte* K(int32_t block, int32_t layer) const;
  const std::byte* V(int32_t block, int32_t layer) const;

  // Copies all of block `src` into block `dst` (copy-on-write of a shared
  // tail). A no-op without storage.
  void CopyBlock(int32_t src, int32_t dst);

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  KvArena(const KvShape& shape, int32_t num_blocks, std::byte* data)
      : shape_(shape), num_blocks_(num_blocks), data_(data) {}

  KvShape shape_;
  int32_t num_blocks_;
  std::unique_ptr<std::byte, Free> data_;
};

}  // namespace kvstack
