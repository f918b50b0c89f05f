// DotRowInt8Reference: the integer products element by element, the truth
// the kernels of simd_int_dot.h are tested against.
//
// Each block's (or super-block's) sum of quant products is computed exactly
// in int64 straight from the quants, without the activations' bsums or the
// kernels' unsigned offsets, then scaled by the same float scale products the
// kernels use and summed in double. A kernel thus differs from it only by
// float rounding of the scaled block sums.
#include <cstdint>

#include "kernels/blocks.h"
#include "kernels/dispatch.h"
#include "kernels/half.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using internal::Fp16ToFp32;
using internal::kQk;
using internal::kQkK;
using internal::ReadF32;
using internal::ReadU16;

int8_t Q(const uint8_t* p, int i) { return static_cast<int8_t>(p[i]); }

// Weight quant j of a 32-element block, with its offset removed.
int WeightQ32(GgmlType type, const uint8_t* block, int j) {
  if (type == GgmlType::kQ8_0) return Q(block + internal::q8_0::kQs, j);
  const uint8_t byte = block[internal::q4_0::kQs + j % 16];
  return (j < 16 ? byte & 0x0F : byte >> 4) - 8;
}

double DotQ32(GgmlType type, const uint8_t* w, const uint8_t* y, int64_t n) {
  const int w_bytes = type == GgmlType::kQ8_0 ? internal::q8_0::kBytes : internal::q4_0::kBytes;
  double sum = 0.0;
  for (int64_t b = 0; b < n / kQk; ++b, w += w_bytes, y += internal::q8_0::kBytes) {
    int64_t isum = 0;
    for (int j = 0; j < kQk; ++j) isum += WeightQ32(type, w, j) * Q(y + internal::q8_0::kQs, j);
    const float scale = Fp16ToFp32(ReadU16(w)) * Fp16ToFp32(ReadU16(y + internal::q8_0::kD));
    sum += static_cast<double>(scale) * static_cast<double>(isum);
  }
  return sum;
}

double DotQ4_K(const uint8_t* w, const uint8_t* y, int64_t n) {
  namespace q = internal::q4_k;
  double sum = 0.0;
  for (int64_t b = 0; b < n / kQkK; ++b, w += q::kBytes, y += internal::q8_k::kBytes) {
    int64_t scaled = 0, mins = 0;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      internal::GetScaleMinK4(s, w + q::kScales, &sc, &m);
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = w[q::kQs + 32 * (s / 2) + l];
        const int quant = s % 2 == 0 ? byte & 0x0F : byte >> 4;
        const int yq = Q(y + internal::q8_k::kQs, 32 * s + l);
        scaled += int64_t{sc} * quant * yq;
        mins += int64_t{m} * yq;
      }
    }
    const float dy = ReadF32(y + internal::q8_k::kD);
    const float d = Fp16ToFp32(ReadU16(w + q::kD)) * dy;
    const float dmin = Fp16ToFp32(ReadU16(w + q::kDmin)) * dy;
    sum += static_cast<double>(d) * static_cast<double>(scaled) - static_cast<double>(dmin) * static_cast<double>(mins);
  }
  return sum;
}

double DotQ6_K(const uint8_t* w, const uint8_t* y, int64_t n) {
  namespace q = internal::q6_k;
  double sum = 0.0;
  for (int64_t b = 0; b < n / kQkK; ++b, w += q::kBytes, y += internal::q8_k::kBytes) {
    int64_t isum = 0;
    for (int i = 0; i < kQkK; ++i) {
      // Element i = 128 * half + 32 * k + l (blocks.h).
      const int half = i / 128, k = (i % 128) / 32, l = i % 32;
      const uint8_t ql = w[q::kQl + 64 * half + 32 * (k % 2) + l];
      const uint8_t qh = w[q::kQh + 32 * half + l];
      const int quant = ((k < 2 ? ql & 0x0F : ql >> 4) | (((qh >> (2 * k)) & 3) << 4)) - 32;
      const int sc = Q(w + q::kScales, 8 * half + 2 * k + l / 16);
      isum += int64_t{sc} * quant * Q(y + internal::q8_k::kQs, i);
    }
    const float d = Fp16ToFp32(ReadU16(w + q::kD)) * ReadF32(y + internal::q8_k::kD);
    sum += static_cast<double>(d) * static_cast<double>(isum);
  }
  return sum;
}

}  // namespace

float DotRowInt8Reference(GgmlType type, const void* row, const void* xq, int64_t n) {
  // ActivationRowBytes checks the arguments (aborting with a message).
  (void)ActivationRowBytes(type, n);
  const auto* w = static_cast<const uint8_t*>(row);
  const auto* y = static_cast<const uint8_t*>(xq);
  switch (type) {
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0: return static_cast<float>(DotQ32(type, w, y, n));
    case GgmlType::kQ4_K: return static_cast<float>(DotQ4_K(w, y, n));
    case GgmlType::kQ6_K: return static_cast<float>(DotQ6_K(w, y, n));
    default: return 0.0f;  // ActivationRowBytes has rejected the rest
  }
}

}  // namespace kvstack::kernels
