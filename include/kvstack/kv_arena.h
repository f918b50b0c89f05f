// KvArena: the bytes of K and V for every block of a pool.
//
// Layout (what the attention kernels read). Blocks are contiguous and in block
// id order, so one block moves between tiers as one contiguous byte range:
//
//   arena  = block[0] block[1] ... block[num_blocks-1]
//   block  = layer[0] ... layer[L-1]                       block_bytes()
//   layer  = K[kv_head 0..H-1] then V[kv_head 0..H-1]      layer_bytes()
//   K or V of one head = token[0..B-1], each head_dim elements
//
// so K of (block b, layer l, kv head h, slot t) starts at
//   b*block_bytes + l*layer_bytes + (h*B + t)*head_dim*elem
// and V at the same place plus H*B*head_dim*elem. Within a head the tokens of a
// block are adjacent: a kernel walking a sequence's block table streams each
// head's keys block by block.
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
#include <string_view>

#include "kvstack/status.h"

namespace kvstack {

enum class KvDType : uint8_t { kF32, kF16, kBF16 };
std::string_view KvDTypeName(KvDType t);
size_t KvDTypeBytes(KvDType t);
Result<KvDType> ParseKvDType(std::string_view name);  // "f32", "f16", "bf16"

struct KvShape {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;  // tokens per block
  KvDType dtype = KvDType::kF16;

  size_t head_bytes() const;   // one head of K (or V) for one block
  size_t layer_bytes() const;  // K and V of one layer for one block
  size_t block_bytes() const;  // everything of one block
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
