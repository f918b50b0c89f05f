// The integer products for the AVX-512 (F, BW, VL, DQ) level without VNNI:
// the 256-bit kernels of simd_int_x86.h, compiled with the AVX-512 flags so
// that the compiler may use the extra registers and instructions.
#include "kernels/avx512_intrinsics.h"  // first: its pragmas cover the rest

#include "kernels/kernel_table.h"
#include "kernels/simd_int_dot.h"
#include "kernels/simd_int_x86.h"

namespace kvstack::kernels::internal {

constinit const IntKernelTable kAvx512IntKernels = MakeIntKernelTable<X86Int>();

}  // namespace kvstack::kernels::internal
