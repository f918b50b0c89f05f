// The per-instruction-set kernel tables behind DequantizeRow, DotRow, MatVec
// and MatMul.
//
// Each instruction-set variant (portable, AVX2, AVX-512) lives in its own
// translation unit, compiled with that set's flags, and exports one constant
// table of function pointers. Only cpu_level.cpp decides which table may run:
// a table for an instruction set the CPU lacks is never called (dispatch.h).
// This header is included by the SIMD translation units, so it declares
// plain types only: no library headers, no inline code.
#pragma once

#include <cstdint>

namespace kvstack::kernels::internal {

// The most activation rows one DotTile call multiplies a weight row with.
inline constexpr int kMaxTile = 8;

// dst[0..n) = the n elements of a row, dequantized exactly as the reference.
// REQUIRES: n a multiple of the type's block elements.
using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);

// out[j] = sum over k < n of row[k] * x[j * x_stride + k], for j < nx: one
// weight row against up to kMaxTile activation rows, so the row is decoded
// once per tile. REQUIRES: 1 <= nx <= kMaxTile; n a multiple of the block.
using DotTileFn = void (*)(const void* row, const float* x, int64_t x_stride, int nx, int64_t n,
                           float* out);

struct TypeKernels {
  DequantizeFn dequantize;
  DotTileFn dot_tile;
};

// The float micro-kernel of MatMul's batched path (simd_gemm.h): acc[(r *
// cols + j) * lanes + lane] += lane-wise partial sums of w[r] . x[j] over
// len columns, for r < nw <= rows weight rows (at w_stride floats) and
// j < nx <= cols activation rows (at x_stride floats).
using GemmAccumulateFn = void (*)(const float* w, int64_t w_stride, int nw, const float* x, int64_t x_stride,
                                  int nx, int64_t len, float* acc);

struct GemmKernel {
  int lanes;  // floats per accumulator vector
  int rows;   // weight rows per call, at most
  int cols;   // activation rows per call, at most (<= kMaxTile)
  GemmAccumulateFn accumulate;
};

// Attention over one head of one quantized KV block (simd_kv.h): head points
// at the head's bytes (kv_arena.h), B tokens per block, D elements per token,
// G elements per scale group, len <= B tokens used.
// scores: out[j] = dot(q, key j). accumulate: out[d] += sum_j w[j] * value j[d].
using KvScoresFn = void (*)(const uint8_t* head, int B, int D, int G, int len, const float* q, float* out);
using KvAccumulateFn = void (*)(const uint8_t* head, int B, int D, int G, int len, const float* w, float* out);

struct KvKernels {
  KvScoresFn scores;            // of the type's K layout
  KvAccumulateFn accumulate;    // of the type's V layout
};

struct KvKernelTable {
  KvKernels int8, fp8_e4m3, fp8_e5m2, int4;
};

struct KernelTable {
  TypeKernels f32, f16, bf16, q8_0, q4_0, q4_k, q6_k;
  GemmKernel gemm;
  KvKernelTable kv;
};

// The integer products (simd_int_dot.h): a weight row against activations
// quantized to 8 bits (activation_blocks.h), up to kMaxTile activation rows
// at once. out[j] = the product with the activation row at xq + j * xq_stride
// bytes, for j < nx. xd holds, for Q8_0 activations, each block's f16 scale
// widened to float (WidenActivationScales), block b of row j at
// xd[b * xd_stride + j]: converted once per product instead of once per
// weight row, and block-major so that the tile reads them through one
// pointer (eight more row pointers spilled registers). Q8_K activations keep
// a float scale, and their kernels ignore xd (which may then be null).
// REQUIRES: 1 <= nx <= kMaxTile; n a multiple of the weight type's block.
using IntDotTileFn = void (*)(const void* row, const uint8_t* xq, int64_t xq_stride, const float* xd,
                              int64_t xd_stride, int nx, int64_t n, float* out);

// A level may repack Q8_0 activation rows into its own layout for its Q8_0
// and Q4_0 tiles (AVX-512 VNNI: two blocks per 512-bit vector). The packer
// writes PackedQ32RowBytes(n) bytes for a row of n elements from the row's
// Q8_0 blocks at xq; the offset is the weights' zero point that the packed
// activations carry in their correction sums (128 for Q8_0, 8 for Q4_0).
// The packed tiles multiply mr (1 or 2) weight rows, row_bytes apart, each
// loaded once, into nx packed activation rows (xp, ps bytes apart), so that
// every activation load serves two weight rows: out[m * kMaxTile + j] for
// weight row m and activation row j. A (weight row, activation row) pair
// gets the same bits whatever mr and nx.
using IntPackFn = void (*)(const uint8_t* xq, int64_t n, int offset, uint8_t* packed);
inline constexpr int kMaxPackedRows = 2;
using IntPackedTileFn = void (*)(const uint8_t* rows, int64_t row_bytes, int mr, const uint8_t* xp, int64_t ps, int nx,
                                 int64_t n, float* out);

// A pair of blocks per record (64 bytes of interleaved quants, then 16 int32
// correction sums), then every pair's two scales (8 bytes each); rounded up
// to a cache line.
inline constexpr int64_t kPackedQ32RecordBytes = 128, kPackedQ32ScaleBytes = 8;
inline int64_t PackedQ32RowBytes(int64_t n) {
  const int64_t pairs = (n / 32 + 1) / 2;
  return (pairs * (kPackedQ32RecordBytes + kPackedQ32ScaleBytes) + 63) / 64 * 64;
}

struct IntKernelTable {
  IntDotTileFn q8_0, q4_0;  // against Q8_0 activations
  IntDotTileFn q4_k, q6_k;  // against Q8_K activations
  // Optional (null: the level has none): the packer and the tiles over its
  // packed rows. A level that has them uses them for every Q8_0 and Q4_0
  // product, one row or many, so its results stay batch invariant.
  IntPackFn pack_q32 = nullptr;
  IntPackedTileFn q8_0_packed = nullptr, q4_0_packed = nullptr;
};

// AMX (dot_amx.cpp): Q8_0 weights times Q8_0 activations, a tile of up
// to kAmxRows weight rows by kAmxCols activation rows per block and
// instruction. The activations are repacked once per product into groups of
// kAmxCols rows, AmxGroupBytes(n) bytes each: for block b, 8 rows of 64
// bytes at b * kAmxBlockQuantBytes (row k holds quants 4k..4k+3 of each
// activation row, 4 bytes per row: the B-tile layout of tdpbssd), and after
// all blocks, per block kAmxCols float scales. The packer writes row j of
// its group from the row's Q8_0 blocks at xq. The tile multiplies mr weight
// rows (row_bytes apart, read in place) by the group's first nx rows:
// out[m * kAmxCols + j]. A (weight row, activation row) pair gets the same
// bits whatever mr and nx.
inline constexpr int kAmxRows = 16, kAmxCols = 16;
inline constexpr int64_t kAmxBlockQuantBytes = 8 * 4 * kAmxCols;
inline int64_t AmxGroupBytes(int64_t n) { return n / 32 * (kAmxBlockQuantBytes + kAmxCols * 4); }
using AmxPackFn = void (*)(const uint8_t* xq, int64_t n, uint8_t* group, int j);
using AmxTileFn = void (*)(const uint8_t* rows, int64_t row_bytes, int mr, const uint8_t* group, int nx,
                              int64_t n, float* out);
// BF16 weights (MatMulPrecision::kInt8Activations: activations rounded to
// bf16 as llama.cpp does) with tdpbf16ps: the packer rounds row j of a group
// of float activations; per chunk of kAmxBf16Chunk elements the group holds
// a B tile (16 rows of 64 bytes: row p has elements 2p, 2p+1 of each
// activation row), then per row the last n % kAmxBf16Chunk elements (64
// bytes a row). The tile function has the Q8_0 tile's contract.
inline constexpr int kAmxBf16Chunk = 32;
inline constexpr int64_t kAmxBf16ChunkBytes = 2 * kAmxBf16Chunk * kAmxCols;
inline int64_t AmxBf16GroupBytes(int64_t n) {
  return n / kAmxBf16Chunk * kAmxBf16ChunkBytes + kAmxCols * 2 * kAmxBf16Chunk;
}
using AmxBf16PackFn = void (*)(const float* x, int64_t n, uint8_t* group, int j);
// F16 weights (kInt8Activations) with tdpbf16ps, exactly: an f16 weight w
// (11 significant bits) is hi + lo with hi its float truncated to bf16 (8
// significant bits) and lo = w - hi (the other 3), both bf16 exactly; an
// activation x is taken to 16 significant bits, x16 = hi + lo with
// hi = bf16(x) and lo = bf16(x - hi), rounded to nearest. Four tile
// products (hi.hi, hi.lo, lo.hi, lo.lo) then add w * x16 exactly per
// element pair.
// The splitter writes up to kAmxRows weight rows (row_bytes apart) as one
// tile of AmxSplitTileBytes(n) bytes: per chunk of kAmxBf16Chunk elements
// the rows' his (kAmxRows rows of 64 bytes) then their los, so that the
// tile function reads one contiguous stream; then per row the last
// n % kAmxBf16Chunk elements' his (64 bytes) and los (64 bytes). The tile
// function takes such a tile as its rows (row_bytes ignored). The packer
// writes row j of a group: per chunk a B tile of the his then one of the los
// (the BF16 layout), then per row the tail's x16 as floats (128 bytes).
inline int64_t AmxSplitTileBytes(int64_t n) {
  return n / kAmxBf16Chunk * 2 * kAmxBf16ChunkBytes + kAmxRows * 4 * kAmxBf16Chunk;
}
inline int64_t AmxF16GroupBytes(int64_t n) {
  return n / kAmxBf16Chunk * 2 * kAmxBf16ChunkBytes + kAmxCols * 4 * kAmxBf16Chunk;
}
using AmxSplitFn = void (*)(const uint8_t* rows, int64_t row_bytes, int mr, int64_t n, uint8_t* tile);
struct AmxKernels {
  AmxPackFn pack;
  AmxTileFn q8_0;
  AmxBf16PackFn pack_bf16;
  AmxTileFn bf16;
  AmxSplitFn split_f16;
  AmxBf16PackFn pack_f16;
  AmxTileFn f16;         // over split tiles
  AmxTileFn f16_direct;  // over F16 rows, split as it goes; the same bits
};

// BF16 weights without AMX, on AVX-512 BF16 (dot_avx512_bf16.cpp): one
// weight row of n bf16 against nx <= kMaxTile rows of n bf16 (xb_stride
// elements apart): out[j], the same bits for a pair whatever nx.
using Bf16DotTileFn = void (*)(const uint8_t* row, const uint16_t* xb, int64_t xb_stride, int nx, int64_t n,
                               float* out);

extern const KernelTable kPortableKernels;
extern const IntKernelTable kPortableIntKernels;
#if defined(KVSTACK_KERNELS_X86)
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
extern const IntKernelTable kAvx2IntKernels;
extern const IntKernelTable kAvx512IntKernels;      // AVX-512 BW, no VNNI
extern const IntKernelTable kAvx512VnniIntKernels;  // vpdpbusd
extern const AmxKernels kAmxKernels;                // tdpbssd and tdpbf16ps, beside the VNNI table
extern const Bf16DotTileFn kAvx512Bf16DotTile;      // vdpbf16ps
#endif

}  // namespace kvstack::kernels::internal
