// The sum of a 256-bit float vector's eight lanes, for the x86 kernels.
// Internal to the kernels component; internal linkage, so each
// instruction-set translation unit compiles its own copy with its own flags
// (see simd_kernels.h on why).
#pragma once

#include <immintrin.h>

namespace kvstack::kernels::internal {
namespace {

inline float Sum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace
}  // namespace kvstack::kernels::internal
