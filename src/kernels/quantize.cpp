// QuantizeRow, and the quantizers of the simple formats.
//
// Q8_0 and Q4_0 follow ggml's reference quantizers (quantize_row_*_ref) step
// for step; the tests check that they reproduce, byte for byte, the blocks
// llama-quantize wrote into ../shared/models/tinyq-a-*.gguf.
#include <cmath>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "kernels/blocks.h"
#include "kernels/half.h"
#include "kernels/quantize.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace internal {

void QuantizeRowQ8_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQk; ++b, src += kQk, dst += q8_0::kBytes) {
    float amax = 0.0f;
    for (int j = 0; j < kQk; ++j) amax = std::fmax(amax, std::fabs(src[j]));
    // The scale rounds to fp16 but the quants divide by the unrounded one,
    // as ggml does.
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(dst + q8_0::kD, Fp32ToFp16(d));
    for (int j = 0; j < kQk; ++j) {
      dst[q8_0::kQs + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(src[j] * id)));
    }
  }
}

void QuantizeRowQ4_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQk; ++b, src += kQk, dst += q4_0::kBytes) {
    // The signed value of largest magnitude maps to -8, so the scale carries
    // its sign (and the codes use the full range 0..15 on that side).
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQk; ++j) {
      if (amax < std::fabs(src[j])) {
        amax = std::fabs(src[j]);
        max = src[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(dst + q4_0::kD, Fp32ToFp16(d));
    for (int j = 0; j < kQk / 2; ++j) {
      // Truncation of value + 8.5 rounds half up; 16 (the far end) clamps to 15.
      const int lo = static_cast<int8_t>(src[j] * id + 8.5f);
      const int hi = static_cast<int8_t>(src[j + kQk / 2] * id + 8.5f);
      dst[q4_0::kQs + j] = static_cast<uint8_t>((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
    }
  }
}

}  // namespace internal

Status QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n) {
  if (!IsSupportedWeightType(type)) {
    const auto traits = LookupGgmlType(static_cast<uint32_t>(type));
    return InvalidArgument(fmt::format("QuantizeRow: type {} is not supported (supported: F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K)",
                                       traits.ok() ? std::string((*traits)->name) : "unknown"));
  }
  const GgmlTypeTraits& traits = GetGgmlTypeTraits(type);
  if (n < 0 || n % traits.block_elements != 0) {
    return InvalidArgument(fmt::format("QuantizeRow: {} elements of {}: must be a non-negative multiple of {}", n,
                                       traits.name, traits.block_elements));
  }
  auto* out = static_cast<uint8_t*>(dst);
  switch (type) {
    case GgmlType::kF32:
      if (n > 0) std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      return Status::Ok();
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) internal::StoreU16(out + 2 * i, internal::Fp32ToFp16(src[i]));
      return Status::Ok();
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) internal::StoreU16(out + 2 * i, internal::Fp32ToBf16(src[i]));
      return Status::Ok();
    default: break;
  }
  // The block formats have no encoding for infinities or NaN: one would
  // silently turn its whole block into garbage.
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(src[i])) {
      return InvalidArgument(fmt::format("QuantizeRow: element {} is {}; {} can only store finite values", i, src[i],
                                         traits.name));
    }
  }
  switch (type) {
    case GgmlType::kQ8_0: internal::QuantizeRowQ8_0(src, out, n); break;
    case GgmlType::kQ4_0: internal::QuantizeRowQ4_0(src, out, n); break;
    case GgmlType::kQ4_K: internal::QuantizeRowQ4_K(src, out, n); break;
    case GgmlType::kQ6_K: internal::QuantizeRowQ6_K(src, out, n); break;
    default: break;
  }
  return Status::Ok();
}

}  // namespace kvstack::kernels
