// Conversion of K and V from float to the KV cache's element type on store.
// (Reads widen whole blocks through kernels::DequantizeRow, which uses F16C.)
#pragma once

#include <cstring>

#include "kvstack/kernels.h"
#include "kvstack/kv_arena.h"

namespace kvstack::engine {

// Stores n floats as `dtype` elements at dst. REQUIRES: a float type
// (quantized heads store through kernels::QuantizeKvRow: they hold scales).
// F16 and BF16 round to nearest even, through the kernels' one bit-exact
// conversion (no compiler half type: clang before 15 has none on x86).
inline void StoreKv(KvDType dtype, const float* src, void* dst, int n) {
  switch (dtype) {
    case KvDType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case KvDType::kF16:
      // Cannot fail: F16 takes any float (infinities and NaN included).
      (void)kernels::QuantizeRow(GgmlType::kF16, src, dst, n);
      return;
    case KvDType::kBF16:
      (void)kernels::QuantizeRow(GgmlType::kBF16, src, dst, n);
      return;
    default:
      return;  // unreachable: see REQUIRES
  }
}

}  // namespace kvstack::engine
