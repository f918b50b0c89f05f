// Byte layouts of ggml's quantized blocks, as stored in GGUF files.
//
// Fields are read through byte offsets rather than structs: a block inside a
// mapped file is not aligned for its 16-bit fields, and the same bytes are
// read by scalar and vector code. Layouts (ggml's ggml-common.h):
//
//   Q8_0  (32 elements, 34 bytes):  d:f16 | qs:int8[32]          x = q * d
//   Q4_0  (32 elements, 18 bytes):  d:f16 | qs:u8[16]            x = (q - 8) * d
//         element j < 16 is the low nibble of qs[j], element j + 16 the high one.
//   Q4_K  (256 elements, 144 bytes): d:f16 | dmin:f16 | scales:u8[12] | qs:u8[128]
//         8 sub-blocks of 32 with 6-bit scale sc and min m packed in `scales`
//         (GetScaleMinK4); x = (d * sc) * q - dmin * m. Each 32 bytes of qs hold
//         two sub-blocks: low nibbles the first, high nibbles the second.
//   Q6_K  (256 elements, 210 bytes): ql:u8[128] | qh:u8[64] | scales:int8[16] | d:f16
//         q = (4 low bits from ql | 2 high bits from qh << 4) - 32; each group
//         of 16 elements has a signed 8-bit scale; x = (d * scale) * q.
//
// Activations for the integer products (activation_quant.cpp) use two more
// of ggml's blocks:
//   Q8_0  as above, paired with Q8_0 and Q4_0 weights; quants in -127..127.
//   Q8_K  (256 elements, 292 bytes): d:f32 | qs:int8[256] | bsums:int16[16]
//         x = q * d; bsums[g] = the sum of the 16 quants of group g. Paired
//         with Q4_K and Q6_K weights; quants in -128..127.
//
// The evaluation orders above are ggml's, and they decide the sign of a zero:
// Q6_K's d * scale is often negative, so a zero quant gives -0.0 there
// (../shared/golden/tinyq-a_dequant.json hashes those exact bytes).
//
// Internal to the kernels component; included by every instruction-set
// variant, so it holds only constants and internal-linkage code that uses no
// library functions.
#pragma once

#include <cstdint>
#include <cstring>

namespace kvstack::kernels::internal {

inline constexpr int kQk = 32;    // elements per Q8_0 / Q4_0 block
inline constexpr int kQkK = 256;  // elements per K-quant super-block

namespace q8_0 {
inline constexpr int kD = 0, kQs = 2, kBytes = 34;
}
namespace q4_0 {
inline constexpr int kD = 0, kQs = 2, kBytes = 18;
}
namespace q4_k {
inline constexpr int kD = 0, kDmin = 2, kScales = 4, kQs = 16, kBytes = 144;
}
namespace q6_k {
inline constexpr int kQl = 0, kQh = 128, kScales = 192, kD = 208, kBytes = 210;
}
namespace q8_k {
inline constexpr int kD = 0, kQs = 4, kBsums = 260, kBytes = 292;
}

namespace {

// Q4_K's 12 scale bytes hold eight 6-bit scales and eight 6-bit mins:
// bytes 0-3 keep scales 0-3 in their low 6 bits, bytes 4-7 mins 0-3; scales
// and mins 4-7 keep their low 4 bits in bytes 8-11 (scale low, min high) and
// their top 2 bits in the spare top bits of bytes 0-3 (scales) and 4-7 (mins).
inline void GetScaleMinK4(int j, const uint8_t* scales, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// GetScaleMinK4 for all eight sub-blocks at once, in general registers:
// byte j of *sc and *m is sub-block j's. The integer tiles unpack a
// super-block per weight row with it (a byte array read back as a vector
// stalls store forwarding there).
inline void ScalesMinsK4(const uint8_t* scales, uint64_t* sc, uint64_t* m) {
  uint32_t u[3];
  std::memcpy(u, scales, sizeof u);
  *sc = (u[0] & 0x3f3f3f3fu) |
        static_cast<uint64_t>((u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4)) << 32;
  *m = (u[1] & 0x3f3f3f3fu) |
       static_cast<uint64_t>(((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4)) << 32;
}

}  // namespace
}  // namespace kvstack::kernels::internal
