// The integer products for CPUs with AVX2, FMA and F16C (simd_int_x86.h).
#include "kernels/kernel_table.h"
#include "kernels/simd_int_dot.h"
#include "kernels/simd_int_x86.h"

namespace kvstack::kernels::internal {

constinit const IntKernelTable kAvx2IntKernels = MakeIntKernelTable<X86Int>();

}  // namespace kvstack::kernels::internal
