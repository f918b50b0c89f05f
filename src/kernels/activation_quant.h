// Activation rounding for MatMul's batched int8 path. Internal to the
// kernels component; the public half is QuantizeActivationRow (kernels.h).
#pragma once

#include <cstdint>

#include "kvstack/gguf.h"

namespace kvstack::kernels::internal {

// Replaces x[0..n) with the values its activation blocks (kernels.h) stand
// for, q * d, each exactly the float the integer products scale: MatMul's
// float GEMM over these values computes the integer products' sums up to
// float summation order. REQUIRES: as QuantizeActivationRow.
void RoundActivationRow(GgmlType weight_type, float* x, int64_t n);

}  // namespace kvstack::kernels::internal
