// The 256-bit integer vector of simd_int_dot.h on x86: AVX2's vpmaddubsw
// (unsigned x signed bytes into saturating int16 pairs, which never saturate
// within the operand ranges simd_int_dot.h allows) then vpmaddwd into int32.
// Included by the AVX2, AVX-512 BW and AVX-512 VNNI translation units, each
// compiled with its own flags; the VNNI one replaces the two-step byte
// product with vpdpbusd (int_dot_avx512_vnni.cpp).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/x86_sum.h"

namespace kvstack::kernels::internal {
namespace {

struct X86Int {
  using B = __m256i;
  using A = __m256i;
  using S = __m256i;  // int16 scales: lanes 0-7 lo, 8-15 hi
  using F = __m256;

  static B LoadB(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static B Expand16(const uint8_t* p) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
  }
  static B LowNibbles(B q) { return _mm256_and_si256(q, _mm256_set1_epi8(15)); }
  static B HighNibbles(B q) { return _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(15)); }
  static B Sub8(B q) { return _mm256_sub_epi8(q, _mm256_set1_epi8(8)); }
  template <int M>
  static B And(B q) {
    return _mm256_and_si256(q, _mm256_set1_epi8(static_cast<char>(M)));
  }
  static B Or(B a, B b) { return _mm256_or_si256(a, b); }
  // Bytewise shifts: shift 16-bit lanes, then clear the bits that crossed
  // from the neighbouring byte.
  template <int N>
  static B Shr(B q) {
    return _mm256_and_si256(_mm256_srli_epi16(q, N), _mm256_set1_epi8(static_cast<char>(0xFF >> N)));
  }
  template <int N>
  static B Shl(B q) {
    return _mm256_and_si256(_mm256_slli_epi16(q, N), _mm256_set1_epi8(static_cast<char>((0xFF << N) & 0xFF)));
  }

  static A DotUS(B w, B y) { return _mm256_madd_epi16(_mm256_maddubs_epi16(w, y), _mm256_set1_epi16(1)); }
  // |w| times y with w's sign: exact for w = -128 too (|w| is 128 unsigned),
  // and y = -128 never occurs (REQUIRES of Q8_0 activations).
  static A DotSS(B w, B y) { return DotUS(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w)); }
  static S Scales(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(hi)), _mm_set1_epi16(static_cast<int16_t>(lo)));
  }
  static A DotUSScaled(B w, B y, S s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(w, y), s); }

  using W16 = __m256i;
  static W16 WidenPairsW16(uint64_t bytes) {
    const __m128i b = _mm_cvtsi64_si128(static_cast<long long>(bytes));
    return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(b, b));
  }
  static W16 WidenW16(const int8_t* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static A Madd16(const uint8_t* p, W16 c) {
    return _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), c);
  }

  static A ZeroA() { return _mm256_setzero_si256(); }
  static A AddA(A a, A b) { return _mm256_add_epi32(a, b); }
  static A SubA(A a, A b) { return _mm256_sub_epi32(a, b); }
  template <int N>
  static A ShlA(A a) {
    return _mm256_slli_epi32(a, N);
  }
  static F ToF(A a) { return _mm256_cvtepi32_ps(a); }
  static F ZeroF() { return _mm256_setzero_ps(); }
  static F Set1F(float v) { return _mm256_set1_ps(v); }
  static F MulF(F a, F b) { return _mm256_mul_ps(a, b); }
  static F FmaF(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F FmsubF(F a, F b, F c) { return _mm256_fmsub_ps(a, b, c); }
  static float ReduceF(F v) { return Sum256(v); }
  static float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }
};

}  // namespace
}  // namespace kvstack::kernels::internal
