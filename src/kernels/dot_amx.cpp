// Products on AMX: Q8_0 weights by Q8_0 activations (tdpbssd), and BF16
// weights by bf16-rounded activations (tdpbf16ps; at the end of the file).
//
// Q8_0: one instruction multiplies a tile of up to
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
// into AMX's B layout, 16 rows to a group (kernel_table.h, AmxPackFn).
//
// The tiles compute each element of C on its own, so mr and nx never change
// an element's bits; only the float steps after them could, and they are
// the same for every shape.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/half.h"
#include "kernels/kernel_table.h"
#include "kernels/unaligned.h"

namespace kvstack::kernels::internal {
namespace {

// Tile registers: 0 = C (block sums), 1 = A (weights), 2 = B (activations),
// and 3, 4, 5 the same again. GCC's tile intrinsics paste their operand
// into the instruction text, so the numbers appear as literals below.
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

// The shape this thread's tiles were last configured for (Configure), so
// that back-to-back calls of one shape do not reload it. Tile state is per
// thread and only these kernels touch it.
thread_local int t_shape = -1;

// Both products multiply mr weight rows (A: mr rows of 32 quants or bf16,
// a_colsb bytes) by the activation rows of a B tile (b_rows rows of 4 bytes
// per activation row) into C (mr x nx 32-bit sums). Q8_0: A 32 bytes, B 8
// rows of 4 quants, C int32, and tiles 3-5 the same (BlockSums1). BF16: A
// 64 bytes, B 16 rows of one bf16 pair, C float, one set.
enum class Product { kQ8_0, kBf16 };

void Configure(Product product, int mr, int nx) {
  const int shape = (static_cast<int>(product) * 32 + mr) * 32 + nx;
  if (shape == t_shape) return;
  const bool q8_0 = product == Product::kQ8_0;
  TileConfig config;
  config.rows[kC] = static_cast<uint8_t>(mr);
  config.colsb[kC] = static_cast<uint16_t>(4 * nx);
  config.rows[kA] = static_cast<uint8_t>(mr);
  config.colsb[kA] = q8_0 ? kQk : 2 * kAmxBf16Chunk;
  config.rows[kB] = q8_0 ? kQk / 4 : kAmxBf16Chunk / 2;
  config.colsb[kB] = static_cast<uint16_t>(4 * nx);
  for (int t = 0; q8_0 && t < 3; ++t) {
    config.rows[3 + t] = config.rows[t];
    config.colsb[3 + t] = config.colsb[t];
  }
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

// One block's sums for up to 16 weight rows (wb: their block, row_bytes
// apart) by the group's activation rows (bq: the block's B tile), stored to
// c at c_stride bytes per weight row. Two tile sets, so that the tile unit
// can load and multiply one block while the previous one's sums are stored
// (tiles are not renamed: reusing one set serialized every block's load,
// product and store).
inline void BlockSums0(const uint8_t* wb, int64_t row_bytes, const uint8_t* bq, int32_t* c, int c_stride) {
  _tile_zero(0);
  _tile_loadd(1, wb + q8_0::kQs, row_bytes);
  _tile_loadd(2, bq, 4 * kAmxCols);
  _tile_dpbssd(0, 1, 2);
  _tile_stored(0, c, c_stride);
}
inline void BlockSums1(const uint8_t* wb, int64_t row_bytes, const uint8_t* bq, int32_t* c, int c_stride) {
  _tile_zero(3);
  _tile_loadd(4, wb + q8_0::kQs, row_bytes);
  _tile_loadd(5, bq, 4 * kAmxCols);
  _tile_dpbssd(3, 4, 5);
  _tile_stored(3, c, c_stride);
}

// The scales of a block of 16 weight rows: row m's is the low half of the
// dword at m * row_bytes (its other half, the block's first two quants, lies
// within the row).
struct RowScales {
  __m512i offsets;
  __mmask16 mask;
  RowScales(int64_t row_bytes, int mr)
      : offsets(_mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                   _mm512_set1_epi32(static_cast<int>(row_bytes)))),
        mask(static_cast<__mmask16>((1u << mr) - 1)) {}
  __m512 Of(const uint8_t* wb) const {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, offsets, wb, 1)));
  }
};

// Adding a block's sums, scaled, into the accumulators. kOne: one
// activation row, whose sums of the 16 weight rows are one column, stored
// contiguous (c_stride 4): lanes are weight rows, acc[0] the only
// accumulator. Otherwise lanes are activation rows and acc[m] is weight row
// m's. Either way each lane does fma(float(sum), dw * dx, acc).
template <bool kOne>
struct Accumulate {
  static constexpr int kStride = kOne ? 4 : 4 * kAmxCols;
  static void Add(const int32_t* c, __m512 dw, const float* dx, __mmask16 col_mask, __m512* acc) {
    if constexpr (kOne) {
      const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(dx[0]));
      acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c)), s, acc[0]);
    } else {
      const __m512 dxv = _mm512_maskz_loadu_ps(col_mask, dx);
      alignas(64) float dw_rows[kAmxRows];
      _mm512_store_ps(dw_rows, dw);
#pragma GCC unroll 16
      for (int m = 0; m < kAmxRows; ++m) {
        const __m512 s = _mm512_mul_ps(dxv, _mm512_set1_ps(dw_rows[m]));
        acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + m * kAmxCols)), s, acc[m]);
      }
    }
  }
};

// Blocks per round: a round's tile work is issued, then its sums are added,
// so that vector loads do not trail each tile store. (Unlike the VNNI
// tiles, these run best without software prefetch: hints for 16 rows cost
// more than the strided tile loads gain, 16.3 -> 20.5 GB/s on one thread.)
constexpr int kRound = 8;

template <bool kOne>
void Tile(const uint8_t* rows, int64_t row_bytes, int mr, const uint8_t* group, int nx, int64_t n, float* out) {
  using Acc = Accumulate<kOne>;
  Configure(Product::kQ8_0, mr, nx);
  const int64_t blocks = n / kQk;
  const auto* dx = reinterpret_cast<const float*>(group + blocks * kAmxBlockQuantBytes);
  const __mmask16 col_mask = static_cast<__mmask16>((1u << nx) - 1);
  const RowScales scales(row_bytes, mr);
  // Rows (and columns) past mr (nx) are never stored by the tiles; their
  // lanes are scaled by zero and never output, so they need only hold some
  // integer: a per-thread buffer, zeroed once, instead of clearing 8 KiB on
  // every call of a short tile (every call of a 4-sequence decode step).
  alignas(64) thread_local int32_t c[kRound][kAmxRows * kAmxCols] = {};
  __m512 acc[kOne ? 1 : kAmxRows];
  for (auto& a : acc) a = _mm512_setzero_ps();
  __m512 dw[kRound];
  for (int64_t b0 = 0; b0 < blocks; b0 += kRound) {
    const int count = static_cast<int>(std::min<int64_t>(kRound, blocks - b0));
    for (int i = 0; i < count; ++i) {
      const int64_t b = b0 + i;
      const uint8_t* wb = rows + b * q8_0::kBytes;
      if (i % 2 == 0) {
        BlockSums0(wb, row_bytes, group + b * kAmxBlockQuantBytes, c[i], Acc::kStride);
      } else {
        BlockSums1(wb, row_bytes, group + b * kAmxBlockQuantBytes, c[i], Acc::kStride);
      }
      dw[i] = scales.Of(wb);
    }
    for (int i = 0; i < count; ++i) Acc::Add(c[i], dw[i], dx + (b0 + i) * kAmxCols, col_mask, acc);
  }
  if constexpr (kOne) {
    alignas(64) float column[kAmxRows];
    _mm512_store_ps(column, acc[0]);
    for (int m = 0; m < mr; ++m) out[m * kAmxCols] = column[m];
  } else {
    for (int m = 0; m < mr; ++m) _mm512_storeu_ps(out + m * kAmxCols, acc[m]);
  }
}

// out[m * kAmxCols + j] for m < mr weight rows and j < nx activation rows.
void TileQ8_0(const uint8_t* rows, int64_t row_bytes, int mr, const uint8_t* group, int nx, int64_t n, float* out) {
  if (nx == 1) return Tile<true>(rows, row_bytes, mr, group, nx, n, out);
  Tile<false>(rows, row_bytes, mr, group, nx, n, out);
}

void PackBf16(const float* x, int64_t n, uint8_t* group, int j) {
  const int64_t chunks = n / kAmxBf16Chunk;
  for (int64_t c = 0; c < chunks; ++c) {
    const float* xc = x + c * kAmxBf16Chunk;
    uint8_t* rows = group + c * kAmxBf16ChunkBytes + 4 * j;
    for (int p = 0; p < kAmxBf16Chunk / 2; ++p) {
      const uint32_t pair = Fp32ToBf16(xc[2 * p]) | static_cast<uint32_t>(Fp32ToBf16(xc[2 * p + 1])) << 16;
      std::memcpy(rows + p * 4 * kAmxCols, &pair, sizeof pair);
    }
  }
  uint8_t* tail = group + chunks * kAmxBf16ChunkBytes + j * 2 * kAmxBf16Chunk;
  for (int64_t k = chunks * kAmxBf16Chunk; k < n; ++k) {
    const uint16_t h = Fp32ToBf16(x[k]);
    std::memcpy(tail + 2 * (k - chunks * kAmxBf16Chunk), &h, sizeof h);
  }
}

// out[m * kAmxCols + j]: the whole chunks in the tile's float sums, then the
// tail (n % 32 elements) one fma at a time, in order.
void TileBf16(const uint8_t* rows, int64_t row_bytes, int mr, const uint8_t* group, int nx, int64_t n, float* out) {
  Configure(Product::kBf16, mr, nx);
  const int64_t chunks = n / kAmxBf16Chunk;
  _tile_zero(0);
  for (int64_t c = 0; c < chunks; ++c) {
    _tile_loadd(1, rows + c * 2 * kAmxBf16Chunk, row_bytes);
    _tile_loadd(2, group + c * kAmxBf16ChunkBytes, 4 * kAmxCols);
    _tile_dpbf16ps(0, 1, 2);
  }
  alignas(64) float sums[kAmxRows * kAmxCols];
  _tile_stored(0, sums, 4 * kAmxCols);
  const uint8_t* tail = group + chunks * kAmxBf16ChunkBytes;
  const int64_t k0 = chunks * kAmxBf16Chunk;
  for (int m = 0; m < mr; ++m) {
    const uint8_t* w = rows + m * row_bytes;
    for (int j = 0; j < nx; ++j) {
      float s = sums[m * kAmxCols + j];
      for (int64_t k = k0; k < n; ++k) {
        s = std::fma(Bf16ToFp32(ReadU16(w + 2 * k)), Bf16ToFp32(ReadU16(tail + j * 2 * kAmxBf16Chunk + 2 * (k - k0))), s);
      }
      out[m * kAmxCols + j] = s;
    }
  }
}

}  // namespace

constinit const AmxKernels kAmxKernels = {
    .pack = &PackAmx, .q8_0 = &TileQ8_0, .pack_bf16 = &PackBf16, .bf16 = &TileBf16};

}  // namespace kvstack::kernels::internal
