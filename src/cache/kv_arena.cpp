#include "kvstack/kv_arena.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "cache/check.h"

namespace kvstack {

std::string_view KvDTypeName(KvDType t) {
  switch (t) {
    case KvDType::kF32: return "f32";
    case KvDType::kF16: return "f16";
    case KvDType::kBF16: return "bf16";
    case KvDType::kInt8: return "int8";
    case KvDType::kFp8E4M3: return "fp8-e4m3";
    case KvDType::kFp8E5M2: return "fp8-e5m2";
    case KvDType::kInt4: return "int4";
  }
  return "?";
}

size_t KvDTypeBytes(KvDType t) {
  switch (t) {
    case KvDType::kF32: return 4;
    case KvDType::kF16:
    case KvDType::kBF16: return 2;
    default: return 1;
  }
}

Result<KvDType> ParseKvDType(std::string_view name) {
  if (name == "f32") return KvDType::kF32;
  if (name == "f16") return KvDType::kF16;
  if (name == "bf16") return KvDType::kBF16;
  if (name == "int8") return KvDType::kInt8;
  if (name == "fp8-e4m3" || name == "fp8") return KvDType::kFp8E4M3;
  if (name == "fp8-e5m2") return KvDType::kFp8E5M2;
  if (name == "int4") return KvDType::kInt4;
  return InvalidArgument(
      fmt::format("KV dtype '{}': must be f32, f16, bf16, int8, fp8-e4m3 (or fp8), fp8-e5m2 or int4", name));
}

size_t KvShape::k_head_bytes() const { return KvHeadBytes(k_type(), KvPart::kKey, block_size, head_dim); }
size_t KvShape::v_head_bytes() const { return KvHeadBytes(v_type(), KvPart::kValue, block_size, head_dim); }
size_t KvShape::layer_bytes() const { return static_cast<size_t>(num_kv_heads) * (k_head_bytes() + v_head_bytes()); }

std::string KvShape::types_name() const {
  if (k_type() == v_type()) return std::string(KvDTypeName(k_type()));
  return fmt::format("k={},v={}", KvDTypeName(k_type()), KvDTypeName(v_type()));
}

namespace {
// A type as identities name it, revised where its bytes changed: int4 keys
// gained channel offsets on 2026-12-06 ("int4.2"), and fp8 rows a scale code
// the same day ("fp8-e4m3.2", "fp8-e5m2.2"), so a disk folder or Redis
// written by an earlier build never hands those blocks to this one.
std::string LayoutName(KvDType t, KvPart part) {
  if (t == KvDType::kInt4 && part == KvPart::kKey) return "int4.2";
  if (t == KvDType::kFp8E4M3 || t == KvDType::kFp8E5M2) return std::string(KvDTypeName(t)) + ".2";
  return std::string(KvDTypeName(t));
}
}  // namespace

std::string KvShape::layout_identity() const {
  return fmt::format("kv:k={},v={},B={},H={},D={},L={}", LayoutName(k_type(), KvPart::kKey),
                     LayoutName(v_type(), KvPart::kValue), block_size, num_kv_heads, head_dim, num_layers);
}
size_t KvShape::block_bytes() const { return static_cast<size_t>(num_layers) * layer_bytes(); }

void KvArena::Free::operator()(std::byte* p) const { std::free(p); }

Result<KvArena> KvArena::Create(const KvShape& s, int32_t num_blocks, KvStorageMode mode) {
  if (s.num_layers < 1) return InvalidArgument(fmt::format("KV shape: num_layers {} must be >= 1", s.num_layers));
  if (s.num_kv_heads < 1) return InvalidArgument(fmt::format("KV shape: num_kv_heads {} must be >= 1", s.num_kv_heads));
  if (s.head_dim < 1) return InvalidArgument(fmt::format("KV shape: head_dim {} must be >= 1", s.head_dim));
  if (s.block_size < 1) return InvalidArgument(fmt::format("KV shape: block_size {} must be >= 1", s.block_size));
  if (s.head_dim % 2 != 0 && (s.k_type() == KvDType::kInt4 || s.v_type() == KvDType::kInt4)) {
    return InvalidArgument(fmt::format("KV shape: int4 needs an even head_dim, not {}", s.head_dim));
  }
  if (num_blocks < 1) return InvalidArgument(fmt::format("KV arena: num_blocks {} must be >= 1", num_blocks));
  if (mode == KvStorageMode::kMetadataOnly) return KvArena(s, num_blocks, nullptr);
  const size_t bytes = s.block_bytes() * static_cast<size_t>(num_blocks);
  if (bytes / static_cast<size_t>(num_blocks) != s.block_bytes()) {
    return InvalidArgument("KV arena: size overflows");
  }
  // 64-byte alignment keeps every head row aligned for AVX-512 loads whenever
  // head_bytes() is a multiple of 64.
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) {
    return ResourceExhausted(fmt::format("KV arena: cannot allocate {} bytes ({} blocks of {} bytes)", bytes,
                                         num_blocks, s.block_bytes()));
  }
  std::memset(p, 0, rounded);  // touch every page now, not on the critical path
  return KvArena(s, num_blocks, static_cast<std::byte*>(p));
}

std::byte* KvArena::Block(int32_t block) {
  KVSTACK_CHECK(data_ && block >= 0 && block < num_blocks_, "KV arena: block %d of %d (storage %d)", block,
                num_blocks_, data_ != nullptr);
  return data_.get() + static_cast<size_t>(block) * block_bytes();
}
const std::byte* KvArena::Block(int32_t block) const { return const_cast<KvArena*>(this)->Block(block); }

std::byte* KvArena::K(int32_t block, int32_t layer) {
  KVSTACK_CHECK(layer >= 0 && layer < shape_.num_layers, "KV arena: layer %d of %d", layer, shape_.num_layers);
  return Block(block) + static_cast<size_t>(layer) * shape_.layer_bytes();
}
std::byte* KvArena::V(int32_t block, int32_t layer) {
  return K(block, layer) + static_cast<size_t>(shape_.num_kv_heads) * shape_.k_head_bytes();
}
const std::byte* KvArena::K(int32_t block, int32_t layer) const { return const_cast<KvArena*>(this)->K(block, layer); }
const std::byte* KvArena::V(int32_t block, int32_t layer) const { return const_cast<KvArena*>(this)->V(block, layer); }

void KvArena::CopyBlock(int32_t src, int32_t dst) {
  if (!data_) return;
  std::memcpy(Block(dst), Block(src), block_bytes());
}

}  // namespace kvstack
