// The kernel table for CPUs with AVX-512 (F, BW, VL, DQ) plus FMA and F16C.
// Built with those instruction-set flags (CMakeLists.txt) and called only
// after cpu_level.cpp has seen them on this CPU.

#include "kernels/avx512_intrinsics.h"  // first: its pragmas cover the rest

#include <cstdint>

#include "kernels/kernel_table.h"
#include "kernels/simd_kernels.h"

namespace kvstack::kernels::internal {
namespace {

struct Avx512 {
  static constexpr int kLanes = 16;
  static constexpr int kRegisters = 32;
  // 4 x 6 over 3 x 8: 10 loads per 24 FMAs instead of 11, and fewer
  // activation rows per tile; kernels_bench MatMul of F32 / F16 / BF16
  // (exact) at 16 and 64 rows, one thread: +8-15% on Sapphire Rapids.
  static constexpr int kGemmRows = 4;
  static constexpr int kGemmCols = 6;
  static constexpr bool kHasLut16 = true;
  using F = __m512;
  using I = __m512i;

  static F Zero() { return _mm512_setzero_ps(); }
  static F Set1(float v) { return _mm512_set1_ps(v); }
  static F Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F Add(F a, F b) { return _mm512_add_ps(a, b); }
  static F Mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F Fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F MulSub(F a, F b, F c) { return _mm512_fmsub_ps(a, b, c); }
  static float ReduceAdd(F v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static F LoadF16(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static F LoadBF16(const uint8_t* p) {
    const I wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static I LoadU8(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static I LoadI8(const uint8_t* p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  template <int N>
  static I And(I v) { return _mm512_and_si512(v, _mm512_set1_epi32(N)); }
  static I Or(I a, I b) { return _mm512_or_si512(a, b); }
  template <int N>
  static I Shr(I v) { return _mm512_srli_epi32(v, N); }
  template <int N>
  static I Shl(I v) { return _mm512_slli_epi32(v, N); }
  template <int N>
  static I Sub(I v) { return _mm512_sub_epi32(v, _mm512_set1_epi32(N)); }
  static F ToFloat(I v) { return _mm512_cvtepi32_ps(v); }
  static float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }
  // 16 FP8 bytes through binary16 (simd_kv.h says why that is exact).
  static F LoadE5M2(const uint8_t* p) {
    const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm512_cvtph_ps(_mm256_slli_epi16(w, 8));
  }
  // Divided by 256 (the caller folds it into its scale): the sign to bit
  // 15 and the rest to bits 7-13, one ternary-logic select.
  static F LoadE4M3Over256(const uint8_t* p) {
    const __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i h = _mm256_ternarylogic_epi32(_mm256_slli_epi16(w, 8),
                                                _mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x7f)), 7),
                                                _mm256_set1_epi16(static_cast<int16_t>(0x8000)), 0xE4);
    return _mm512_cvtph_ps(h);
  }
  // The value, in a register (an empty asm the compiler cannot see through).
  static F Pin(F v) {
    asm("" : "+v"(v));
    return v;
  }

  // {start, start + 1, ..., start + 15}.
  static F Ramp(float start) {
    return _mm512_add_ps(_mm512_set1_ps(start),
                         _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  }
  // Lane i gets table[index[i] & 15] (the permute reads only the low 4 bits).
  static F Lut16(F table, I index) { return _mm512_permutexvar_ps(index, table); }
};

}  // namespace

constinit const KernelTable kAvx512Kernels = MakeKernelTable<Avx512>();

}  // namespace kvstack::kernels::internal
