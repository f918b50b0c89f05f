// The scalar references: what every vectorized kernel is tested against.
//
// Dequantization evaluates each element exactly as ggml's dequantize_row_*
// (and gguf-py's dequantize) do, operand order included, so the output is
// bit-identical to theirs, signs of zeros too (see blocks.h). The dot product
// accumulates in double, so it is the most accurate answer the float kernels
// can be held to, not merely another rounding of it.
#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/dispatch.h"
#include "kernels/half.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using internal::Bf16ToFp32;
using internal::Fp16ToFp32;
using internal::kQk;
using internal::kQkK;
using internal::ReadU16;

void DequantizeQ8_0(const uint8_t* row, float* y, int64_t n) {
  namespace q = internal::q8_0;
  for (int64_t b = 0; b < n / kQk; ++b, row += q::kBytes, y += kQk) {
    const float d = Fp16ToFp32(ReadU16(row + q::kD));
    const int8_t* qs = reinterpret_cast<const int8_t*>(row + q::kQs);
    for (int j = 0; j < kQk; ++j) y[j] = static_cast<float>(qs[j]) * d;
  }
}

void DequantizeQ4_0(const uint8_t* row, float* y, int64_t n) {
  namespace q = internal::q4_0;
  for (int64_t b = 0; b < n / kQk; ++b, row += q::kBytes, y += kQk) {
    const float d = Fp16ToFp32(ReadU16(row + q::kD));
    const uint8_t* qs = row + q::kQs;
    for (int j = 0; j < kQk / 2; ++j) {
      y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      y[j + kQk / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantizeQ4_K(const uint8_t* row, float* y, int64_t n) {
  namespace q = internal::q4_k;
  for (int64_t b = 0; b < n / kQkK; ++b, row += q::kBytes) {
    const float d = Fp16ToFp32(ReadU16(row + q::kD));
    const float dmin = Fp16ToFp32(ReadU16(row + q::kDmin));
    const uint8_t* qs = row + q::kQs;
    for (int sub = 0; sub < 8; sub += 2, qs += 32) {
      uint8_t sc, m;
      internal::GetScaleMinK4(sub, row + q::kScales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      internal::GetScaleMinK4(sub + 1, row + q::kScales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(qs[l] & 0x0F) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(qs[l] >> 4) - m2;
    }
  }
}

void DequantizeQ6_K(const uint8_t* row, float* y, int64_t n) {
  namespace q = internal::q6_k;
  for (int64_t b = 0; b < n / kQkK; ++b, row += q::kBytes) {
    const float d = Fp16ToFp32(ReadU16(row + q::kD));
    const uint8_t* ql = row + q::kQl;
    const uint8_t* qh = row + q::kQh;
    const int8_t* sc = reinterpret_cast<const int8_t*>(row + q::kScales);
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

void DequantizeRowReference(GgmlType type, const void* src, float* dst, int64_t n) {
  internal::CheckRowArguments("DequantizeRowReference", type, n);
  const auto* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::kF32:
      if (n > 0) std::memcpy(dst, p, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFp32(ReadU16(p + 2 * i));
      return;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFp32(ReadU16(p + 2 * i));
      return;
    case GgmlType::kQ8_0: return DequantizeQ8_0(p, dst, n);
    case GgmlType::kQ4_0: return DequantizeQ4_0(p, dst, n);
    case GgmlType::kQ4_K: return DequantizeQ4_K(p, dst, n);
    case GgmlType::kQ6_K: return DequantizeQ6_K(p, dst, n);
    default: return;  // CheckRowArguments has rejected the rest
  }
}

float DotRowReference(GgmlType type, const void* row, const float* x, int64_t n) {
  internal::CheckRowArguments("DotRowReference", type, n);
  const GgmlTypeTraits& traits = GetGgmlTypeTraits(type);
  // Dequantize a few blocks at a time: at least one K-quant super-block.
  constexpr int64_t kChunk = 256;
  const int64_t chunk = traits.block_elements == 1 ? kChunk : traits.block_elements;
  const int64_t chunk_bytes = chunk / traits.block_elements * traits.block_bytes;
  float w[kChunk];
  double sum = 0.0;
  const auto* p = static_cast<const uint8_t*>(row);
  for (int64_t begin = 0; begin < n; begin += chunk, p += chunk_bytes) {
    const int64_t len = n - begin < chunk ? n - begin : chunk;
    DequantizeRowReference(type, p, w, len);
    for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(w[i]) * static_cast<double>(x[begin + i]);
  }
  return static_cast<float>(sum);
}

}  // namespace kvstack::kernels
