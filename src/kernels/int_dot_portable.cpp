// The integer products for any CPU: simd_int_dot.h over GCC / Clang vector
// extensions, which the compiler lowers to the baseline vector unit.
#include <cstdint>
#include <cstring>

#include "kernels/half.h"
#include "kernels/kernel_table.h"
#include "kernels/simd_int_dot.h"

namespace kvstack::kernels::internal {
namespace {

struct PortableInt {
  typedef uint8_t B __attribute__((vector_size(32)));
  typedef int32_t A __attribute__((vector_size(32)));
  typedef int32_t S __attribute__((vector_size(32)));
  typedef float F __attribute__((vector_size(32)));

  static B LoadB(const uint8_t* p) {
    B r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  static B Expand16(const uint8_t* p) {
    B r;
    for (int i = 0; i < 16; ++i) {
      r[i] = p[i] & 15;
      r[i + 16] = p[i] >> 4;
    }
    return r;
  }
  static B LowNibbles(B q) { return q & uint8_t{15}; }
  static B HighNibbles(B q) { return q >> 4; }
  static B Sub8(B q) { return q - uint8_t{8}; }
  template <int M>
  static B And(B q) {
    return q & static_cast<uint8_t>(M);
  }
  static B Or(B a, B b) { return a | b; }
  template <int N>
  static B Shr(B q) {
    return q >> N;
  }
  template <int N>
  static B Shl(B q) {
    return q << N;
  }

  static A DotSS(B w, B y) {
    A r;
    for (int i = 0; i < 8; ++i) {
      int32_t s = 0;
      for (int k = 4 * i; k < 4 * i + 4; ++k) s += static_cast<int8_t>(w[k]) * static_cast<int8_t>(y[k]);
      r[i] = s;
    }
    return r;
  }
  static A DotUS(B w, B y) {
    A r;
    for (int i = 0; i < 8; ++i) {
      int32_t s = 0;
      for (int k = 4 * i; k < 4 * i + 4; ++k) s += w[k] * static_cast<int8_t>(y[k]);
      r[i] = s;
    }
    return r;
  }
  static S Scales(int lo, int hi) { return S{lo, lo, lo, lo, hi, hi, hi, hi}; }
  static A DotUSScaled(B w, B y, S s) { return DotUS(w, y) * s; }

  typedef int16_t W16 __attribute__((vector_size(32)));
  static W16 WidenPairsW16(uint64_t bytes) {
    W16 r;
    for (int i = 0; i < 16; ++i) r[i] = static_cast<int16_t>((bytes >> (8 * (i / 2))) & 0xFF);
    return r;
  }
  static W16 WidenW16(const int8_t* p) {
    W16 r;
    for (int i = 0; i < 16; ++i) r[i] = p[i];
    return r;
  }
  static A Madd16(const uint8_t* p, W16 c) {
    A r;
    for (int i = 0; i < 8; ++i) {
      int16_t v[2];
      std::memcpy(v, p + 4 * i, sizeof v);
      r[i] = v[0] * c[2 * i] + v[1] * c[2 * i + 1];
    }
    return r;
  }

  static A ZeroA() { return A{}; }
  static A AddA(A a, A b) { return a + b; }
  static A SubA(A a, A b) { return a - b; }
  template <int N>
  static A ShlA(A a) {
    return a * (1 << N);  // a shift of a negative lane would be UB before C++20
  }
  static F ToF(A a) { return __builtin_convertvector(a, F); }
  static F ZeroF() { return F{}; }
  static F Set1F(float v) { return F{v, v, v, v, v, v, v, v}; }
  // Not fused: the portable build has no FMA to rely on.
  static F MulF(F a, F b) { return a * b; }
  static F FmaF(F a, F b, F c) { return a * b + c; }
  static F FmsubF(F a, F b, F c) { return a * b - c; }
  static float ReduceF(F v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }
  static float HalfToFloat(uint16_t h) { return Fp16ToFp32(h); }
};

}  // namespace

constinit const IntKernelTable kPortableIntKernels = MakeIntKernelTable<PortableInt>();

}  // namespace kvstack::kernels::internal
