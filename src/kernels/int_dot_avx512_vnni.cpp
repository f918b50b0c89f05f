// The integer products for CPUs with AVX-512 VNNI: vpdpbusd multiplies
// unsigned by signed bytes and adds each group of four into an int32 lane in
// one instruction, with no int16 step to saturate.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "kernels/kernel_table.h"
#include "kernels/simd_int_dot.h"
#include "kernels/simd_int_x86.h"

namespace kvstack::kernels::internal {
namespace {

struct VnniInt : X86Int {
  static A DotUS(B w, B y) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, y); }
  static A DotSS(B w, B y) { return DotUS(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w)); }
};

}  // namespace

constinit const IntKernelTable kAvx512VnniIntKernels = MakeIntKernelTable<VnniInt>();

}  // namespace kvstack::kernels::internal
