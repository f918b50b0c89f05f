// Quantizing activations for the integer products, and DotRowInt8.
//
// One scalar quantizer per activation format serves every level: it runs
// once per activation row per product (O(cols)), against O(rows * cols) for
// the product itself, and the same bytes at every level keep the levels'
// results comparable. The rounding follows llama.cpp's x86 build, so that
// the products see the activations llama.cpp's goldens were computed from:
// quantize_row_q8_0's AVX path (scale 127 / amax, round to nearest even)
// and quantize_row_q8_K_ref (scale -127 / max, nearest_int, also to even).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/blocks.h"
#include "kernels/dispatch.h"
#include "kernels/half.h"
#include "kernels/unaligned.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using internal::kQk;
using internal::kQkK;

// Both divisions by amax round the same way in every build (no
// -ffast-math here). Rounding: adding and subtracting 1.5 * 2^23 leaves v
// rounded to an integer, ties to even, in the default rounding mode (which
// nothing in kvstack changes), for |v| < 2^22: nearbyint's result without
// its libm call (this file is built for the baseline ISA, where it is one;
// it was several percent of an int8 MatMul). Callers pass |v| <= 127.5.
int RoundToInt(float v) {
  // Without -ffast-math the compiler may not fold (v + k) - k into v.
  constexpr float kMagic = 0x1.8p23f;
  return static_cast<int>((v + kMagic) - kMagic);
}

void QuantizeQ8_0(const float* x, uint8_t* dst, int64_t n) {
  namespace q = internal::q8_0;
  for (int64_t b = 0; b < n / kQk; ++b, x += kQk, dst += q::kBytes) {
    float amax = 0.0f;
    // Not std::fmax (a libm call here); the same for finite x, the REQUIRES.
    for (int j = 0; j < kQk; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    internal::StoreU16(dst + q::kD, internal::Fp32ToFp16(amax / 127.0f));
    for (int j = 0; j < kQk; ++j) dst[q::kQs + j] = static_cast<uint8_t>(static_cast<int8_t>(RoundToInt(x[j] * id)));
  }
}

void QuantizeQ8_K(const float* x, uint8_t* dst, int64_t n) {
  namespace q = internal::q8_k;
  for (int64_t b = 0; b < n / kQkK; ++b, x += kQkK, dst += q::kBytes) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQkK; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    std::memset(dst, 0, q::kBytes);
    if (amax == 0.0f) continue;  // d = 0, quants and sums 0
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQkK; ++j) {
      const int v = RoundToInt(iscale * x[j]);
      dst[q::kQs + j] = static_cast<uint8_t>(static_cast<int8_t>(v < 127 ? v : 127));
    }
    for (int g = 0; g < kQkK / 16; ++g) {
      int16_t sum = 0;
      for (int j = 0; j < 16; ++j) sum = static_cast<int16_t>(sum + static_cast<int8_t>(dst[q::kQs + 16 * g + j]));
      std::memcpy(dst + q::kBsums + 2 * g, &sum, sizeof sum);
    }
    const float d = 1.0f / iscale;
    std::memcpy(dst + q::kD, &d, sizeof d);
  }
}

bool IsKQuant(GgmlType type) { return type == GgmlType::kQ4_K || type == GgmlType::kQ6_K; }

void CheckIntArguments(const char* what, GgmlType type, int64_t n) {
  if (!HasIntegerDot(type)) {
    const auto traits = LookupGgmlType(static_cast<uint32_t>(type));
    std::fprintf(stderr, "kernels::%s: weight type %s (id %u) has no integer product (those that do: Q8_0 Q4_0 Q4_K Q6_K)\n",
                 what, traits.ok() ? std::string((*traits)->name).c_str() : "unknown", static_cast<unsigned>(type));
    std::abort();
  }
  internal::CheckRowArguments(what, type, n);
}

}  // namespace

bool HasIntegerDot(GgmlType type) {
  return internal::FindIntKernel(internal::kPortableIntKernels, type) != nullptr;
}

size_t ActivationRowBytes(GgmlType weight_type, int64_t n) {
  CheckIntArguments("ActivationRowBytes", weight_type, n);
  return IsKQuant(weight_type) ? static_cast<size_t>(n / kQkK * internal::q8_k::kBytes)
                               : static_cast<size_t>(n / kQk * internal::q8_0::kBytes);
}

void QuantizeActivationRow(GgmlType weight_type, const float* x, void* dst, int64_t n) {
  CheckIntArguments("QuantizeActivationRow", weight_type, n);
  if (IsKQuant(weight_type)) {
    QuantizeQ8_K(x, static_cast<uint8_t*>(dst), n);
  } else {
    QuantizeQ8_0(x, static_cast<uint8_t*>(dst), n);
  }
}


float DotRowInt8(GgmlType type, const void* row, const void* xq, int64_t n) {
  CheckIntArguments("DotRowInt8", type, n);
  float out = 0.0f;
  if (n > 0) {
    const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
    const WeightMatrix w{.type = type,
                         .data = row,
                         .rows = 1,
                         .cols = n,
                         .row_bytes = static_cast<size_t>(n / t.block_elements) * t.block_bytes};
    internal::IntMatMulQuantized(w, static_cast<const uint8_t*>(xq), 0, 1, &out, nullptr);
  }
  return out;
}

namespace internal {

int64_t ActivationScaleCount(GgmlType weight_type, int64_t n) { return IsKQuant(weight_type) ? 0 : n / kQk; }

void WidenActivationScales(GgmlType weight_type, const uint8_t* xq, int64_t n, float* xd, int64_t stride) {
  for (int64_t b = 0; b < ActivationScaleCount(weight_type, n); ++b) {
    xd[b * stride] = Fp16ToFp32(ReadU16(xq + b * q8_0::kBytes));
  }
}

}  // namespace internal

}  // namespace kvstack::kernels
