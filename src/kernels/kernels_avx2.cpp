// The kernel table for CPUs with AVX2, FMA and F16C. Built with those
// instruction-set flags (CMakeLists.txt) and called only after cpu_level.cpp
// has seen them on this CPU.
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernel_table.h"
#include "kernels/simd_kernels.h"
#include "kernels/x86_sum.h"

namespace kvstack::kernels::internal {
namespace {

struct Avx2 {
  static constexpr int kLanes = 8;
  static constexpr int kRegisters = 16;
  static constexpr int kGemmRows = 3;
  static constexpr int kGemmCols = 4;
  static constexpr bool kHasLut16 = false;  // a 16-entry permute takes two here
  using F = __m256;
  using I = __m256i;

  static F Zero() { return _mm256_setzero_ps(); }
  static F Set1(float v) { return _mm256_set1_ps(v); }
  static F Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F Add(F a, F b) { return _mm256_add_ps(a, b); }
  static F Mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F Fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F MulSub(F a, F b, F c) { return _mm256_fmsub_ps(a, b, c); }
  static float ReduceAdd(F v) { return Sum256(v); }

  static F LoadF16(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F LoadBF16(const uint8_t* p) {
    const I wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static I LoadU8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
  static I LoadI8(const uint8_t* p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
  template <int N>
  static I And(I v) { return _mm256_and_si256(v, _mm256_set1_epi32(N)); }
  static I Or(I a, I b) { return _mm256_or_si256(a, b); }
  template <int N>
  static I Shr(I v) { return _mm256_srli_epi32(v, N); }
  template <int N>
  static I Shl(I v) { return _mm256_slli_epi32(v, N); }
  template <int N>
  static I Sub(I v) { return _mm256_sub_epi32(v, _mm256_set1_epi32(N)); }
  static F ToFloat(I v) { return _mm256_cvtepi32_ps(v); }
  static float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }
  // 8 FP8 bytes through binary16 (simd_kv.h says why that is exact).
  static F LoadE5M2(const uint8_t* p) {
    const __m128i w = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_cvtph_ps(_mm_slli_epi16(w, 8));
  }
  // Divided by 256: the caller folds it into its scale.
  static F LoadE4M3Over256(const uint8_t* p) {
    const __m128i w = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(0x80)), 8),
                                   _mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(0x7f)), 7));
    return _mm256_cvtph_ps(h);
  }
  // The value, in a register (an empty asm the compiler cannot see through).
  static F Pin(F v) {
    asm("" : "+v"(v));
    return v;
  }
};

}  // namespace

constinit const KernelTable kAvx2Kernels = MakeKernelTable<Avx2>();

}  // namespace kvstack::kernels::internal
