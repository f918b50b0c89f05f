// fp8 rows' scales (kv_arena.h's fp8 layout): a row's code c in 0..255 gives
// the multiplier 2^((c - 160) / 16), from 2^-10 to about 2^6 in sixteenths of
// an octave. One table for the store, the scalar reference and every SIMD
// kernel, so they agree bit for bit on a scale. No includes: the kernels'
// per-instruction-set translation units take it (see simd_kernels.h).
#pragma once

namespace kvstack {

// 2^(k/16), k = 0..15, and 2^a, a = -10..5: the multiplier of code c is
// kFp8ScaleOctaves[c >> 4] * kFp8ScaleSteps[c & 15] (exact: a power of two
// times a float).
inline constexpr float kFp8ScaleSteps[16] = {
    1.0f,        1.04427378f, 1.09050773f, 1.13878863f, 1.18920712f, 1.24185781f, 1.29683955f, 1.35425555f,
    1.41421356f, 1.47682615f, 1.54221083f, 1.61049033f, 1.68179283f, 1.75625216f, 1.83400809f, 1.91520656f};
inline constexpr float kFp8ScaleOctaves[16] = {0x1p-10f, 0x1p-9f, 0x1p-8f, 0x1p-7f, 0x1p-6f, 0x1p-5f, 0x1p-4f, 0x1p-3f,
                                               0x1p-2f,  0x1p-1f, 0x1p0f,  0x1p1f,  0x1p2f,  0x1p3f,  0x1p4f,  0x1p5f};

inline float Fp8RowScale(unsigned char code) { return kFp8ScaleOctaves[code >> 4] * kFp8ScaleSteps[code & 15]; }

}  // namespace kvstack
