// Conversions between float and the KV cache's element types.
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
inline float Bf16ToFloat(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t FloatToF16(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
// Every half as a float, computed once: without F16C in this translation unit
// the compiler converts in software, far too slowly for attention's inner
// loop; a 256 KiB table is what ggml does too.
inline const float* F16Table() {
  static const float* table = [] {
    static float t[65536];
    for (uint32_t u = 0; u < 65536; ++u) {
      _Float16 h;
      const uint16_t bits = static_cast<uint16_t>(u);
      std::memcpy(&h, &bits, 2);
      t[u] = static_cast<float>(h);
    }
    return t;
  }();
  return table;
}
inline float F16ToFloat(uint16_t u) { return F16Table()[u]; }

// Stores n floats as `dtype` elements at dst.
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
  }
}

// Loads n `dtype` elements at src as floats.
inline void LoadKv(KvDType dtype, const void* src, float* dst, int n) {
  switch (dtype) {
    case KvDType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case KvDType::kF16: {
      const float* table = F16Table();
      for (int i = 0; i < n; ++i) dst[i] = table[static_cast<const uint16_t*>(src)[i]];
      return;
    }
    case KvDType::kBF16:
      for (int i = 0; i < n; ++i) dst[i] = Bf16ToFloat(static_cast<const uint16_t*>(src)[i]);
      return;
  }
}

}  // namespace kvstack::engine
