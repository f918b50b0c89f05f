// Q8_0 products on AMX (tdpbssd): one instruction multiplies a tile of up to
// 16 weight rows by up to 16 activation rows over one 32-element block, in
// exact int32, where the AVX-512 VNNI tile spends a vpdpbusd per (block pair,
// weight row, activation row). What is left to the vector units is the part
// no integer unit can do: each block sum scaled by its two f16 scales and
// added into a float accumulator.
//
// Numerics: every (weight row, activation row, block) contributes
// acc = fma(float(exact block sum), dw * dx, acc), blocks in order from zero,
// whichever of the two layouts below computes it, so a row's result does not
// depend on the tile it shared (batch invariance), only on this level.
//
// The weights are read in place: a block's 32 quants of 16 consecutive rows
// are one strided tile load (A: 16 rows of 32 bytes, row_bytes apart), and
// their scales one gather. The activations are repacked once per product
// into AMX's B layout, 16 rows to a group (kernel_table.h, IntAmxPackFn).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/kernel_table.h"
#include "kernels/prefetch.h"
#include "kernels/unaligned.h"

namespace kvstack::kernels::internal {
namespace {

// Tile registers: 0 = C (block sums), 1 = A (weights), 2 = B (activations).
// GCC's tile intrinsics paste their operand into the instruction text, so
// the numbers appear as literals below.
constexpr int kC = 0, kA = 1, kB = 2;

// The LDTILECFG operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

// The shape this thread's tiles were last configured for (mr * 32 + nx), so
// that back-to-back calls of one shape do not reload it. Tile state is per
// thread and only these kernels touch it.
thread_local int t_shape = -1;

void Configure(int mr, int nx) {
  const int shape = mr * 32 + nx;
  if (shape == t_shape) return;
  TileConfig config;
  config.rows[kC] = static_cast<uint8_t>(mr);
  config.colsb[kC] = static_cast<uint16_t>(4 * nx);
  config.rows[kA] = static_cast<uint8_t>(mr);
  config.colsb[kA] = kQk;
  config.rows[kB] = kQk / 4;
  config.colsb[kB] = static_cast<uint16_t>(4 * nx);
  // Not _tile_loadconfig: GCC 12's declares only the first 8 bytes of the
  // operand as read, and the shape stores above were dropped as dead.
  __asm__ volatile("ldtilecfg %0" : : "m"(config));
  t_shape = shape;
}

void PackAmx(const uint8_t* xq, int64_t n, uint8_t* group, int j) {
  const int64_t blocks = n / kQk;
  uint8_t* scales = group + blocks * kAmxBlockQuantBytes;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = xq + b * q8_0::kBytes;
    uint8_t* quants = group + b * kAmxBlockQuantBytes + 4 * j;
    for (int k = 0; k < kQk / 4; ++k) std::memcpy(quants + k * 4 * kAmxCols, block + q8_0::kQs + 4 * k, 4);
    const float d = _cvtsh_ss(ReadU16(block + q8_0::kD));
    std::memcpy(scales + (b * kAmxCols + j) * sizeof(float), &d, sizeof d);
  }
}

// out[m * kAmxCols + j] for m < mr weight rows and j < nx activation rows.
void TileQ8_0(const uint8_t* rows, int64_t row_bytes, int mr, const uint8_t* group, int nx, int64_t n, float* out) {
  Configure(mr, nx);
  const int64_t blocks = n / kQk;
  const auto* dx = reinterpret_cast<const float*>(group + blocks * kAmxBlockQuantBytes);
  const __mmask16 row_mask = static_cast<__mmask16>((1u << mr) - 1);
  const __mmask16 col_mask = static_cast<__mmask16>((1u << nx) - 1);
  // Row m's scale: the dword at m * row_bytes holds it in its low half (the
  // other half is the block's first two quants, within the row).
  const __m512i offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(static_cast<int>(row_bytes)));
  // Rows (and columns) past mr (nx) are never stored by the tile; zeroed so
  // that their lanes, scaled by zero, stay finite.
  alignas(64) int32_t c[kAmxRows * kAmxCols] = {};
  alignas(64) float dw_rows[kAmxRows];
  __m512 acc[kAmxRows];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* wb = rows + b * q8_0::kBytes;
    if (b % 2 == 0) {
      for (int m = 0; m < mr; ++m) PrefetchAhead<2 * q8_0::kBytes>(wb + m * row_bytes);
    }
    const __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), row_mask, offsets, wb, 1);
    const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
    _tile_zero(0);
    _tile_loadd(1, wb + q8_0::kQs, row_bytes);
    _tile_loadd(2, group + b * kAmxBlockQuantBytes, 4 * kAmxCols);
    _tile_dpbssd(0, 1, 2);
    if (nx == 1) {
      // One activation row: the block sums of the 16 weight rows are one
      // column, stored as one vector; lanes are weight rows.
      _tile_stored(0, c, 4);
      const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(dx[b * kAmxCols]));
      acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c)), s, acc[0]);
      continue;
    }
    // Lanes are activation rows, one accumulator per weight row.
    _tile_stored(0, c, 4 * kAmxCols);
    const __m512 dxv = _mm512_maskz_loadu_ps(col_mask, dx + b * kAmxCols);
    _mm512_store_ps(dw_rows, dw);
#pragma GCC unroll 16
    for (int m = 0; m < kAmxRows; ++m) {
      const __m512 s = _mm512_mul_ps(dxv, _mm512_set1_ps(dw_rows[m]));
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + m * kAmxCols)), s, acc[m]);
    }
  }
  if (nx == 1) {
    alignas(64) float column[kAmxRows];
    _mm512_store_ps(column, acc[0]);
    for (int m = 0; m < mr; ++m) out[m * kAmxCols] = column[m];
    return;
  }
  for (int m = 0; m < mr; ++m) _mm512_storeu_ps(out + m * kAmxCols, acc[m]);
}

}  // namespace

constinit const IntAmxKernels kAmxIntKernels = {.pack = &PackAmx, .q8_0 = &TileQ8_0};

}  // namespace kvstack::kernels::internal
