// Scalar conversions between float and the 16-bit float formats ggml stores
// (IEEE binary16 "F16" and bfloat16 "BF16"), bit-exact, for any CPU.
//
// Internal to the kernels component, for the translation units built without
// instruction-set flags (the SIMD ones convert with F16C and must not include
// this: see simd_kernels.h on why they include no inline library code).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/unaligned.h"

namespace kvstack::kernels::internal {
namespace {

inline void StoreU16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }

// Exact: every binary16 value, subnormals and infinities included, is a
// float. NaNs keep their payload (shifted into the float mantissa).
inline float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round to nearest, ties to even (what F16C's vcvtps2ph and ggml's
// GGML_FP32_TO_FP16 do); overflow gives infinity, NaN stays a quiet NaN.
inline uint16_t Fp32ToFp16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  // 65520 (0x477ff000) is the midpoint between 65504, the largest half, and
  // 2^16; ties go to the even neighbour, infinity.
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (magnitude < 0x38800000u) {
    // Below 2^-14 the half is subnormal: its mantissa is |f| * 2^24 rounded
    // (the product is exact; 1024 becomes the smallest normal, as it should).
    const float scaled = std::fabs(f) * 0x1p24f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::lrint(scaled)));
  }
  const uint32_t rebased = magnitude - (112u << 23);
  const uint32_t rounded = (rebased + 0x0fffu + ((rebased >> 13) & 1u)) >> 13;
  return static_cast<uint16_t>(sign | rounded);
}

inline float Bf16ToFp32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Round to nearest, ties to even, as ggml's GGML_FP32_TO_BF16; NaN is kept
// quiet by forcing a mantissa bit.
inline uint16_t Fp32ToBf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 64u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace
}  // namespace kvstack::kernels::internal
