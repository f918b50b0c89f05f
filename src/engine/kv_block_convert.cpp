#include "engine/kv_block_convert.h"

#include <vector>

#include <fmt/format.h>

#include "kvstack/kernels.h"

namespace kvstack::engine {
namespace {

bool IsFloatKv(KvDType t) { return t == KvDType::kF32 || t == KvDType::kF16 || t == KvDType::kBF16; }

}  // namespace

Result<KvShape> TierKvShape(const KvShape& device, KvDType tier_type) {
  if (!IsFloatKv(device.k_type()) || !IsFloatKv(device.v_type())) {
    return InvalidArgument(fmt::format(
        "tier KV type {}: the device KV is {}, already quantized; tiers store it as it is (give f32, f16 or bf16 "
        "device KV to convert)",
        KvDTypeName(tier_type), device.types_name()));
  }
  KvShape tier = device;
  tier.dtype = tier_type;
  tier.v_dtype.reset();
  if (tier.block_bytes() >= device.block_bytes()) {
    return InvalidArgument(fmt::format("tier KV type {}: its blocks ({} bytes) are not smaller than the device's {} "
                                       "blocks ({} bytes); give a narrower type such as int8",
                                       KvDTypeName(tier_type), tier.block_bytes(), device.types_name(),
                                       device.block_bytes()));
  }
  return tier;
}

void ConvertKvBlock(const KvShape& from, const std::byte* src, const KvShape& to, std::byte* dst) {
  const int32_t B = from.block_size, D = from.head_dim, H = from.num_kv_heads;
  thread_local std::vector<float> rows;
  rows.resize(static_cast<size_t>(B) * static_cast<size_t>(D));
  const struct {
    KvPart part;
    KvDType from_type, to_type;
    size_t from_head, to_head;  // bytes of one head
    size_t from_at, to_at;      // offset of head 0 within a layer
  } parts[2] = {
      {KvPart::kKey, from.k_type(), to.k_type(), from.k_head_bytes(), to.k_head_bytes(), 0, 0},
      {KvPart::kValue, from.v_type(), to.v_type(), from.v_head_bytes(), to.v_head_bytes(),
       static_cast<size_t>(H) * from.k_head_bytes(), static_cast<size_t>(H) * to.k_head_bytes()},
  };
  for (int32_t l = 0; l < from.num_layers; ++l) {
    const std::byte* from_layer = src + static_cast<size_t>(l) * from.layer_bytes();
    std::byte* to_layer = dst + static_cast<size_t>(l) * to.layer_bytes();
    for (const auto& p : parts) {
      for (int32_t h = 0; h < H; ++h) {
        const std::byte* in = from_layer + p.from_at + static_cast<size_t>(h) * p.from_head;
        std::byte* out = to_layer + p.to_at + static_cast<size_t>(h) * p.to_head;
        for (int32_t t = 0; t < B; ++t) {
          kernels::DequantizeKvRow(p.from_type, p.part, in, B, D, t, rows.data() + static_cast<size_t>(t) * D);
        }
        kernels::QuantizeKvHead(p.to_type, p.part, out, B, D, rows.data());
      }
    }
  }
}

}  // namespace kvstack::engine
