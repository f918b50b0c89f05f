// DequantizeRow and DotRow: one row through the active kernel table.
#include <cstdint>

#include "kernels/dispatch.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {

void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  internal::CheckRowArguments("DequantizeRow", type, n);
  if (n == 0) return;
  internal::FindKernels(internal::ActiveKernels(), type)->dequantize(src, dst, n);
}

float DotRow(GgmlType type, const void* row, const float* x, int64_t n) {
  internal::CheckRowArguments("DotRow", type, n);
  if (n == 0) return 0.0f;
  float out;
  internal::FindKernels(internal::ActiveKernels(), type)->dot_tile(row, x, 0, 1, n, &out);
  return out;
}

}  // namespace kvstack::kernels
