// The kernel table for any CPU: the shared kernels over 4-lane vectors of the
// baseline target. Built without instruction-set flags.
#include <cstdint>
#include <cstring>

#include "kernels/half.h"
#include "kernels/kernel_table.h"
#include "kernels/simd_kernels.h"

namespace kvstack::kernels::internal {
namespace {

// GCC / Clang vector extensions: plain C++ arithmetic on 16-byte vectors,
// which the compiler lowers to the baseline target's vector unit (SSE2 on
// x86-64, NEON on AArch64) or to scalar code.
struct Portable {
  static constexpr int kLanes = 4;
  static constexpr int kRegisters = 16;
  static constexpr int kGemmRows = 2;
  static constexpr int kGemmCols = 4;
  static constexpr bool kHasLut16 = false;
  typedef float F __attribute__((vector_size(16)));
  typedef int32_t I __attribute__((vector_size(16)));

  static F Zero() { return F{0.0f, 0.0f, 0.0f, 0.0f}; }
  static F Set1(float s) { return F{s, s, s, s}; }
  static F Load(const float* p) {
    F r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  static void Store(float* p, F a) { std::memcpy(p, &a, sizeof a); }
  static F Add(F a, F b) { return a + b; }
  static F Mul(F a, F b) { return a * b; }
  static F Fma(F a, F b, F c) { return a * b + c; }
  // a * b is exact for every use (a quant times a scale), so computing it
  // apart from the subtraction rounds the same as a fused multiply-subtract.
  static F MulSub(F a, F b, F c) { return a * b - c; }
  static float ReduceAdd(F a) { return (a[0] + a[1]) + (a[2] + a[3]); }

  static F LoadF16(const uint8_t* p) {
    return F{Fp16ToFp32(ReadU16(p)), Fp16ToFp32(ReadU16(p + 2)), Fp16ToFp32(ReadU16(p + 4)),
             Fp16ToFp32(ReadU16(p + 6))};
  }
  static F LoadBF16(const uint8_t* p) {
    I bits = {ReadU16(p), ReadU16(p + 2), ReadU16(p + 4), ReadU16(p + 6)};
    bits <<= 16;
    F r;
    std::memcpy(&r, &bits, sizeof r);
    return r;
  }
  static I LoadU8(const uint8_t* p) { return I{p[0], p[1], p[2], p[3]}; }
  static I LoadI8(const uint8_t* p) {
    return I{static_cast<int8_t>(p[0]), static_cast<int8_t>(p[1]), static_cast<int8_t>(p[2]),
             static_cast<int8_t>(p[3])};
  }
  // Lanes hold small non-negative values wherever these are used, so the
  // arithmetic shift of a signed lane equals the logical one.
  template <int N>
  static I And(I a) { return a & N; }
  static I Or(I a, I b) { return a | b; }
  template <int N>
  static I Shr(I a) { return a >> N; }
  template <int N>
  static I Shl(I a) { return a << N; }
  template <int N>
  static I Sub(I a) { return a - N; }
  static F ToFloat(I a) { return __builtin_convertvector(a, F); }
  static float HalfToFloat(uint16_t h) { return Fp16ToFp32(h); }
  // 4 FP8 bytes through binary16 (simd_kv.h says why that is exact).
  static F LoadE5M2(const uint8_t* p) {
    return F{Fp16ToFp32(static_cast<uint16_t>(p[0] << 8)), Fp16ToFp32(static_cast<uint16_t>(p[1] << 8)),
             Fp16ToFp32(static_cast<uint16_t>(p[2] << 8)), Fp16ToFp32(static_cast<uint16_t>(p[3] << 8))};
  }
  // Divided by 256: the caller folds it into its scale.
  static float E4M3Over256(uint8_t b) {
    return Fp16ToFp32(static_cast<uint16_t>(((b & 0x80) << 8) | ((b & 0x7f) << 7)));
  }
  static F LoadE4M3Over256(const uint8_t* p) {
    return F{E4M3Over256(p[0]), E4M3Over256(p[1]), E4M3Over256(p[2]), E4M3Over256(p[3])};
  }
  static F Pin(F v) { return v; }
};

}  // namespace

constinit const KernelTable kPortableKernels = MakeKernelTable<Portable>();

}  // namespace kvstack::kernels::internal
