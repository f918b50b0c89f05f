// Loads of little-endian fields from any address: fields inside a mapped
// GGUF block or a KV head are not aligned for their type. Internal to the
// kernels component; internal linkage and memcpy only, so every
// instruction-set variant may include it (see simd_kernels.h on why).
#pragma once

#include <cstdint>
#include <cstring>

namespace kvstack::kernels::internal {
namespace {

inline uint16_t ReadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float ReadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace
}  // namespace kvstack::kernels::internal
