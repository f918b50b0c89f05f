// Conversion of K and V from float to the KV cache's element type on store.
// (Reads widen whole blocks through kernels::DequantizeRow, which uses F16C.)
#pragma once

#include <cstdint>
#include <cstring>

#include "kvstack/kv_arena.h"

namespace kvstack::engine {

inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}
inline uint16_t FloatToF16(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
// Stores n floats as `dtype` elements at dst. REQUIRES: a float type
// (quantized heads store through kernels::QuantizeKvRow: they hold scales).
inline void StoreKv(KvDType dtype, const float* src, void* dst, int n) {
  switch (dtype) {
    case KvDType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case KvDType::kF16:
      for (int i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToF16(src[i]);
      return;
    case KvDType::kBF16:
      for (int i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToBf16(src[i]);
      return;
    default:
      return;  // unreachable: see REQUIRES
  }
}

}  // namespace kvstack::engine
