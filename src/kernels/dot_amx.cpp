// Products on AMX: Q8_0 weights by Q8_0 activations (tdpbssd), BF16
// weights by bf16-rounded activations and F16 weights, split exactly into
// two bf16 halves, by activations taken to 16 bits (tdpbf16ps; at the end of
// the file).
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
#include "kernels/avx512_intrinsics.h"  // first: its pragmas cover the rest

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/half.h"
#include "kernels/kernel_table.h"
#include "kernels/prefetch.h"
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
// F16 (split): BF16's shapes, tiles 3 and 4 a second A and B (the lo
// halves), and tile 5 a second C.
enum class Product { kQ8_0, kBf16, kF16Split };

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
  if (product == Product::kF16Split) {
    for (int t = kA; t <= kB; ++t) {
      config.rows[2 + t] = config.rows[t];
      config.colsb[2 + t] = config.colsb[t];
    }
    config.rows[5] = config.rows[kC];
    config.colsb[5] = config.colsb[kC];
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

// The bf16 nearest each float of v (ties to even, as Fp32ToBf16 for finite
// floats), in the high half of its lane; and such halves as 16-bit lanes.
inline __m512i RoundToBf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
  return _mm512_and_si512(rounded, _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
}
inline __m256i Bf16Bits(__m512i high) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(high, 16)); }

// hi + lo = w exactly: w has 11 significant bits, hi its float's top 16
// bits (8 significant), and w - hi, exact in float, the other 3, which its
// top 16 bits hold. SplitChunk writes chunk c of mr rows (row_bytes apart)
// as the tile's layout does: his at dst + m * 64, los 1 KiB further; 32
// weights at a time, the high halves of two vectors' lanes gathered in
// order by one vpermt2w.
inline void SplitChunk(const uint8_t* rows, int64_t row_bytes, int mr, int64_t c, uint8_t* dst) {
  const __m512i high_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const __m512i odd_words = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                             25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int m = 0; m < mr; ++m) {
    const uint8_t* w = rows + m * row_bytes + c * 64;
    // The rows stream from memory once per product; without hints the VM's
    // prefetchers leave this loop waiting on them.
    PrefetchAhead<64>(w);
    const __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
    const __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32)));
    const __m512i h0 = _mm512_and_si512(_mm512_castps_si512(w0), high_mask);
    const __m512i h1 = _mm512_and_si512(_mm512_castps_si512(w1), high_mask);
    const __m512i l0 = _mm512_castps_si512(_mm512_sub_ps(w0, _mm512_castsi512_ps(h0)));
    const __m512i l1 = _mm512_castps_si512(_mm512_sub_ps(w1, _mm512_castsi512_ps(h1)));
    _mm512_storeu_si512(dst + m * 64, _mm512_permutex2var_epi16(h0, odd_words, h1));
    _mm512_storeu_si512(dst + kAmxBf16ChunkBytes + m * 64, _mm512_permutex2var_epi16(l0, odd_words, l1));
  }
}

// The last n % kAmxBf16Chunk elements of mr rows: row m's his at
// dst + m * 128, its los 64 bytes further.
inline void SplitTail(const uint8_t* rows, int64_t row_bytes, int mr, int64_t n, uint8_t* dst) {
  const int64_t k0 = n / kAmxBf16Chunk * kAmxBf16Chunk;
  for (int m = 0; m < mr; ++m) {
    for (int64_t k = k0; k < n; ++k) {
      const float w = _cvtsh_ss(ReadU16(rows + m * row_bytes + 2 * k));
      const uint16_t hi = static_cast<uint16_t>(std::bit_cast<uint32_t>(w) >> 16);
      uint8_t* t = dst + m * 128 + 2 * (k - k0);
      StoreU16(t, hi);
      StoreU16(t + 64, static_cast<uint16_t>(std::bit_cast<uint32_t>(w - Bf16ToFp32(hi)) >> 16));
    }
  }
}

// Chunk by chunk, so that the stores are one sequential stream.
void SplitF16(const uint8_t* rows, int64_t row_bytes, int mr, int64_t n, uint8_t* tile) {
  const int64_t chunks = n / kAmxBf16Chunk;
  for (int64_t c = 0; c < chunks; ++c) SplitChunk(rows, row_bytes, mr, c, tile + c * 2 * kAmxBf16ChunkBytes);
  SplitTail(rows, row_bytes, mr, n, tile + chunks * 2 * kAmxBf16ChunkBytes);
}

// Row j of a group (kernel_table.h): per chunk the his' B tile, then the
// los'; then the tail's x16.
void PackF16(const float* x, int64_t n, uint8_t* group, int j) {
  const int64_t chunks = n / kAmxBf16Chunk;
  // Dword p of a chunk's B-tile row goes p * 64 bytes down.
  const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(4 * kAmxCols));
  for (int64_t c = 0; c < chunks; ++c) {
    const float* xc = x + c * kAmxBf16Chunk;
    uint8_t* hi_tile = group + c * 2 * kAmxBf16ChunkBytes + 4 * j;
    __m512i hi_pairs, lo_pairs;
    {
      const __m512 a = _mm512_loadu_ps(xc), b = _mm512_loadu_ps(xc + 16);
      const __m512i ha = RoundToBf16(a), hb = RoundToBf16(b);
      const __m512i la = RoundToBf16(_mm512_sub_ps(a, _mm512_castsi512_ps(ha)));
      const __m512i lb = RoundToBf16(_mm512_sub_ps(b, _mm512_castsi512_ps(hb)));
      hi_pairs = _mm512_inserti64x4(_mm512_castsi256_si512(Bf16Bits(ha)), Bf16Bits(hb), 1);
      lo_pairs = _mm512_inserti64x4(_mm512_castsi256_si512(Bf16Bits(la)), Bf16Bits(lb), 1);
    }
    _mm512_i32scatter_epi32(hi_tile, rows, hi_pairs, 1);
    _mm512_i32scatter_epi32(hi_tile + kAmxBf16ChunkBytes, rows, lo_pairs, 1);
  }
  auto* tail = reinterpret_cast<float*>(group + chunks * 2 * kAmxBf16ChunkBytes) + j * kAmxBf16Chunk;
  for (int64_t k = chunks * kAmxBf16Chunk; k < n; ++k) {
    const uint16_t hi = Fp32ToBf16(x[k]);
    const float x16 = Bf16ToFp32(hi) + Bf16ToFp32(Fp32ToBf16(x[k] - Bf16ToFp32(hi)));
    std::memcpy(tail + (k - chunks * kAmxBf16Chunk), &x16, sizeof x16);
  }
}

// out[m * kAmxCols + j]: per chunk the four products, in a fixed order,
// then the tail one fma at a time, in order (w = hi + lo and x16 are exact
// floats). kDirect: src is mr F16 rows (row_bytes apart), split a chunk at a
// time into a buffer that stays in L1 just before its products, so that a
// group's pass reads the weights once and the vector and tile units overlap
// (splitting whole blocks first and reading them back took most of a
// 16-row product's time). Otherwise src is a tile split by SplitF16. Both
// give the same bits.
template <bool kDirect>
void TileF16(const uint8_t* src, int64_t row_bytes, int mr, const uint8_t* group, int nx, int64_t n, float* out) {
  Configure(Product::kF16Split, mr, nx);
  const int64_t chunks = n / kAmxBf16Chunk;
  alignas(64) thread_local uint8_t buffer[2][2 * kAmxBf16ChunkBytes];
  alignas(64) thread_local uint8_t tail_buffer[kAmxRows * 4 * kAmxBf16Chunk];
  // Two accumulators, so that consecutive products do not wait on each
  // other: C (tile 0) takes the products by the activations' his, tile 5 by
  // their los, added at the end.
  _tile_zero(0);
  _tile_zero(5);
  for (int64_t c = 0; c < chunks; ++c) {
    const uint8_t* a = src + c * 2 * kAmxBf16ChunkBytes;
    if constexpr (kDirect) {
      SplitChunk(src, row_bytes, mr, c, buffer[c % 2]);
      a = buffer[c % 2];
    } else {
      // Tile loads from L2 wait for each line in turn: hints for the chunk
      // after next, A's and B's, keep them in L1 (engine prefill of 128 /
      // 512 tokens of the 1B-shaped F16 file: 91 / 78 -> 106 / 89 tok/s;
      // past the end they are wasted hints). Split as it goes, hints for B
      // cost more than they gave (16-sequence decode 80 -> 75 tok/s).
      for (int l = 0; l < 2 * kAmxBf16ChunkBytes; l += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(group + (c + 2) * 2 * kAmxBf16ChunkBytes + l), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(a + 2 * 2 * kAmxBf16ChunkBytes + l), _MM_HINT_T0);
      }
    }
    const uint8_t* b = group + c * 2 * kAmxBf16ChunkBytes;
    _tile_loadd(1, a, 64);
    _tile_loadd(2, b, 4 * kAmxCols);
    _tile_loadd(4, b + kAmxBf16ChunkBytes, 4 * kAmxCols);
    _tile_dpbf16ps(0, 1, 2);
    _tile_dpbf16ps(5, 1, 4);
    _tile_loadd(3, a + kAmxBf16ChunkBytes, 64);
    _tile_dpbf16ps(0, 3, 2);
    _tile_dpbf16ps(5, 3, 4);
  }
  alignas(64) float sums[kAmxRows * kAmxCols], lo_sums[kAmxRows * kAmxCols];
  _tile_stored(0, sums, 4 * kAmxCols);
  _tile_stored(5, lo_sums, 4 * kAmxCols);
  for (int i = 0; i < kAmxRows * kAmxCols; ++i) sums[i] += lo_sums[i];
  const int64_t k0 = chunks * kAmxBf16Chunk;
  if (k0 == n) {
    for (int m = 0; m < mr; ++m) std::memcpy(out + m * kAmxCols, sums + m * kAmxCols, nx * sizeof(float));
    return;
  }
  const uint8_t* split_tail = src + chunks * 2 * kAmxBf16ChunkBytes;
  if constexpr (kDirect) {
    SplitTail(src, row_bytes, mr, n, tail_buffer);
    split_tail = tail_buffer;
  }
  const auto* tail = reinterpret_cast<const float*>(group + chunks * 2 * kAmxBf16ChunkBytes);
  for (int m = 0; m < mr; ++m) {
    const uint8_t* hi = split_tail + m * 128;
    for (int j = 0; j < nx; ++j) {
      float s = sums[m * kAmxCols + j];
      for (int64_t k = k0; k < n; ++k) {
        const float w = Bf16ToFp32(ReadU16(hi + 2 * (k - k0))) + Bf16ToFp32(ReadU16(hi + 64 + 2 * (k - k0)));
        s = std::fma(w, tail[j * kAmxBf16Chunk + (k - k0)], s);
      }
      out[m * kAmxCols + j] = s;
    }
  }
}

}  // namespace

constinit const AmxKernels kAmxKernels = {.pack = &PackAmx,
                                          .q8_0 = &TileQ8_0,
                                          .pack_bf16 = &PackBf16,
                                          .bf16 = &TileBf16,
                                          .split_f16 = &SplitF16,
                                          .pack_f16 = &PackF16,
                                          .f16 = &TileF16<false>,
                                          .f16_direct = &TileF16<true>};

}  // namespace kvstack::kernels::internal
