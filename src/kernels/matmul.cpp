// MatVec and MatMul: rows of W split across the pool.
//
// MatVec (and MatMul of 2-3 rows of quantized weights) decodes each weight
// straight into registers and multiplies it into every activation row
// (DotTile): the weights are read once, which is what a memory-bound decode
// step needs.
//
// MatMul of more rows (prefill) is compute-bound, so it takes the GEMM path:
// a block of weight rows is dequantized once into a float buffer that stays
// in L2 (F32 weights are used in place), then the register-tiled micro-kernel
// (simd_gemm.h) multiplies it with every tile of activation rows, a column
// chunk at a time so that the tile's activations stay in L1. Each weight is
// thus read from memory and decoded once per MatMul, not once per tile.
//
// Both paths read activations from a copy whose row stride is 64 bytes longer
// than a row: with a stride that is a multiple of 4 KiB (4096 columns, say)
// the rows of a tile would fall into the same L1 sets and evict each other.
//
// With MatMulPrecision::kInt8Activations (types with an integer product) the
// activation rows are quantized to 8-bit blocks, a quarter of their float
// size, and multiplied in tiles of up to kMaxTile rows: blocks of weight rows
// that stay in L2, each row unpacked once per tile and multiplied into every
// activation row of the tile with integer dot products (simd_int_dot.h).
// A level may repack the activations for its own Q8_0 / Q4_0 tiles (AVX-512
// VNNI: int_dot_avx512_vnni.cpp), which then take two weight rows at a time;
// with AMX (dot_amx.cpp) Q8_0 goes in tiles of 16 weight rows by 16
// activation rows, the activations packed in groups of 16.
// Every row takes this path, however many rows the call has, so a token's
// result is bit for bit the same whether it was computed alone, in a decode
// batch or in a prefill chunk: prefix-cache hits, tier onboarding and
// preemption never change an output. (Rounding wide batches to their blocks'
// values and using the float GEMM, as issue 11 first did above 8 rows, was
// up to 1.4x faster there on AVX2 but summed in another order, and greedy
// outputs then depended on how a prompt had been chunked.)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/dispatch.h"
#include "kernels/half.h"
#include "kernels/kernel_table.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using internal::kMaxTile;

// From this many activation rows on, MatMul takes the GEMM path; below it
// decoding a quantized row into registers beats writing and re-reading its
// float copy (F32 rows need no copy and take the GEMM path from 2 rows on).
// F16 and BF16 rows decode in one conversion per vector, so the fused path
// holds out longer: at 4 rows 1.6x the GEMM's speed, at 16 rows even
// (kernels_bench --benchmark_filter='BM_MatMul/(1|2)/(4|16)/.*/0', one and
// two threads, builds with kGemmMinRowsHalf 16 and 4 A/B in one run,
// Sapphire Rapids, 2026-12-06).
constexpr int64_t kGemmMinRows = 4;
constexpr int64_t kGemmMinRowsHalf = 16;
// Bytes of weights (or of their float copy) per row block: kept in L2 while
// every tile passes over them.
constexpr int64_t kBlockBytes = 256 * 1024;
constexpr int64_t kMaxBlockRows = 64;
// Columns per chunk: a full tile of activations is then 8 x 512 x 4 = 16 KiB.
// A multiple of every block size (32, 256).
constexpr int64_t kColumnChunk = 512;
// The fused path's chunks: a multiple of kColumnChunkUnit columns (every
// block size) whose tile of activations fits in kFusedTileBytes (L1 is
// 32-48 KiB).
constexpr int64_t kColumnChunkUnit = 256;
constexpr int64_t kFusedTileBytes = 32 * 1024;
// The least work worth handing to another thread, in weight bytes read
// (several microseconds): on a shared VM a worker can be preempted holding a
// chunk, and the caller then waits for it, so tiny chunks cost more than
// they save.
constexpr int64_t kMinParallelBytes = 64 * 1024;
// From this many activation rows on, F16 weights under kInt8Activations
// take AMX where there is one (F16AmxMatMul). Below it splitting every
// weight costs more than the products save, and the fused float path reads
// the weights at the memory's speed. Built with this at 1, one row took
// 2.2x the float path's time (kernels_bench BM_MatMul/1/1/.*/1 against
// /0), and at 4, `kvstack bench engine --sequences 4` of the 1B-shaped F16
// file ran at 26 tok/s against the float path's 39 (Sapphire Rapids,
// 2026-12-06).
constexpr int64_t kF16AmxMinRows = kGemmMinRowsHalf;
// Activation rows per chunk when they are quantized (or packed) across the
// pool: a row of a few thousand elements takes about a microsecond.
constexpr int64_t kRowsPerQuantizeChunk = 8;
// Padding of a copied activation row, in floats (one cache line).
constexpr int64_t kRowPad = 16;

void CheckOrDie(const char* what, const WeightMatrix& w) {
  const Status status = CheckWeightMatrix(w);
  if (!status.ok()) {
    std::fprintf(stderr, "kernels::%s: %s\n", what, status.ToString().c_str());
    std::abort();
  }
}

void Run(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
  if (pool != nullptr) {
    pool->ParallelFor(n, grain, f);
  } else if (n > 0) {
    f(0, n);
  }
}

// Grow-only scratch, one per thread: memory handed back to the VM and touched
// again is slow (REFERENCE.md section 3).
float* Scratch(std::vector<float>& buffer, int64_t floats) {
  if (buffer.size() < static_cast<size_t>(floats)) buffer.resize(static_cast<size_t>(floats));
  return buffer.data();
}

// What both MatMul paths share: the matrix, the padded activations and Y.
struct MatMulJob {
  const internal::TypeKernels* kernels;
  const internal::GemmKernel* gemm;
  const GgmlTypeTraits* traits;
  const uint8_t* data;
  int64_t rows, cols, row_bytes, n;
  const float* x;  // n rows at `stride` floats
  int64_t stride;
  float* y;
};

// Rows [begin, end) through DotTile: for each block of rows and each tile,
// the tile's columns go in chunks over every row of the block, chunks as
// long as keep the tile's activations within kFusedTileBytes. Each row is
// left at a chunk's end for the block's next row, so short chunks cut the
// weight stream into pieces that the prefetch hints (kPrefetchAhead past the
// current load, so into the row's next chunk) miss: at 512 columns a 4-row
// F16 product of a 1B-shaped model read 13 GB/s where one row's MatVec read
// 25 (engine decode of 4 sequences, 23 -> 38 tok/s).
void FusedRange(const MatMulJob& job, int64_t begin, int64_t end) {
  const int64_t block_rows = std::clamp<int64_t>(kBlockBytes / job.row_bytes, 1, kMaxBlockRows);
  const int64_t tile = std::min<int64_t>(job.n, kMaxTile);
  const int64_t chunk =
      std::min(job.cols, std::max(kColumnChunk, kFusedTileBytes / (tile * 4) / kColumnChunkUnit * kColumnChunkUnit));
  float partial[kMaxBlockRows][kMaxTile];
  float out[kMaxTile];
  for (int64_t r0 = begin; r0 < end; r0 += block_rows) {
    const int64_t r1 = std::min(end, r0 + block_rows);
    for (int64_t t0 = 0; t0 < job.n; t0 += kMaxTile) {
      const int nx = static_cast<int>(std::min<int64_t>(kMaxTile, job.n - t0));
      const float* xt = job.x + t0 * job.stride;
      for (int64_t c0 = 0; c0 < job.cols; c0 += chunk) {
        const int64_t len = std::min(chunk, job.cols - c0);
        const int64_t offset = c0 / job.traits->block_elements * job.traits->block_bytes;
        for (int64_t r = r0; r < r1; ++r) {
          job.kernels->dot_tile(job.data + r * job.row_bytes + offset, xt + c0, job.stride, nx, len, out);
          float* p = partial[r - r0];
          for (int j = 0; j < nx; ++j) p[j] = c0 == 0 ? out[j] : p[j] + out[j];
        }
      }
      for (int64_t r = r0; r < r1; ++r) {
        for (int j = 0; j < nx; ++j) job.y[(t0 + j) * job.rows + r] = partial[r - r0][j];
      }
    }
  }
}

// Rows [begin, end) through the GEMM micro-kernel (see the file comment).
void GemmRange(const MatMulJob& job, int64_t begin, int64_t end) {
  const internal::GemmKernel& g = *job.gemm;
  const int64_t cols = job.cols;
  const int64_t block_rows = std::clamp<int64_t>(kBlockBytes / (cols * 4), 1, kMaxBlockRows);
  const int64_t chunk = std::min(cols, kColumnChunk);
  // F32 rows are used in place when they are whole floats apart.
  const bool in_place = job.traits->type == GgmlType::kF32 && job.row_bytes % sizeof(float) == 0 &&
                        reinterpret_cast<uintptr_t>(job.data) % alignof(float) == 0;
  thread_local std::vector<float> weights_scratch, acc_scratch;
  float* dequantized = in_place ? nullptr : Scratch(weights_scratch, block_rows * cols);
  float* acc = Scratch(acc_scratch, block_rows * g.cols * g.lanes);

  for (int64_t r0 = begin; r0 < end; r0 += block_rows) {
    const int64_t nb = std::min(end - r0, block_rows);
    const float* w = dequantized;
    int64_t w_stride = cols;
    if (in_place) {
      w = reinterpret_cast<const float*>(job.data + r0 * job.row_bytes);
      w_stride = job.row_bytes / static_cast<int64_t>(sizeof(float));
    } else {
      for (int64_t r = 0; r < nb; ++r) {
        job.kernels->dequantize(job.data + (r0 + r) * job.row_bytes, dequantized + r * cols, cols);
      }
    }
    for (int64_t t0 = 0; t0 < job.n; t0 += g.cols) {
      const int nx = static_cast<int>(std::min<int64_t>(g.cols, job.n - t0));
      std::fill(acc, acc + nb * g.cols * g.lanes, 0.0f);
      for (int64_t c0 = 0; c0 < cols; c0 += chunk) {
        const int64_t len = std::min(chunk, cols - c0);
        for (int64_t r = 0; r < nb; r += g.rows) {
          const int nw = static_cast<int>(std::min<int64_t>(g.rows, nb - r));
          g.accumulate(w + r * w_stride + c0, w_stride, nw, job.x + t0 * job.stride + c0, job.stride, nx, len,
                       acc + r * g.cols * g.lanes);
        }
      }
      for (int64_t r = 0; r < nb; ++r) {
        for (int j = 0; j < nx; ++j) {
          const float* lanes = acc + (r * g.cols + j) * g.lanes;
          float sum = 0.0f;
          for (int l = 0; l < g.lanes; ++l) sum += lanes[l];
          job.y[(t0 + j) * job.rows + r0 + r] = sum;
        }
      }
    }
  }
}

// The integer path (see the file comment): the quantized activations, and
// rows [begin, end) of Y from them.
struct IntMatMulJob {
  internal::IntDotTileFn dot;
  internal::IntPackedTileFn packed;  // instead of dot when the level packs (xq is then packed)
  const uint8_t* data;
  int64_t rows, cols, row_bytes, n;
  const uint8_t* xq;  // n activation rows at xq_stride bytes
  int64_t xq_stride;
  // Their widened scales, per tile of kMaxTile rows: block b of the tile's
  // row j at xd[t * xd_tile + b * kMaxTile + j] (IntDotTileFn's layout).
  const float* xd;  // null for K-quants and packed rows
  int64_t xd_tile;
  float* y;
};

// The AMX path (dot_amx.cpp): the activations packed in groups of
// kAmxCols rows, group_bytes apart, and rows [begin, end) of Y from them, in
// tiles of kAmxRows weight rows. As IntRange, a block of weight rows stays in
// L2 while every group passes over it.
struct AmxMatMulJob {
  internal::AmxTileFn tile;
  // If set, each block of weight rows is first split into a per-thread
  // buffer of split tiles (AmxSplitTileBytes each), which the tiles read.
  internal::AmxSplitFn split = nullptr;
  const uint8_t* data;
  int64_t rows, cols, row_bytes, n;
  const uint8_t* groups;
  int64_t group_bytes;
  float* y;
};

void AmxRange(const AmxMatMulJob& job, int64_t begin, int64_t end) {
  using internal::kAmxCols;
  using internal::kAmxRows;
  // Tile k of a block at block + k * tile_bytes, read with row_bytes.
  const int64_t tile_bytes = job.split != nullptr ? internal::AmxSplitTileBytes(job.cols) : kAmxRows * job.row_bytes;
  const int64_t block_rows = std::max<int64_t>(1, kBlockBytes / tile_bytes) * kAmxRows;
  thread_local std::vector<uint8_t> split_scratch;
  if (job.split != nullptr && split_scratch.size() < static_cast<size_t>(block_rows / kAmxRows * tile_bytes)) {
    split_scratch.resize(static_cast<size_t>(block_rows / kAmxRows * tile_bytes));
  }
  float out[kAmxRows * kAmxCols];
  for (int64_t r0 = begin; r0 < end; r0 += block_rows) {
    const int64_t r1 = std::min(end, r0 + block_rows);
    const uint8_t* block = job.data + r0 * job.row_bytes;
    if (job.split != nullptr) {
      for (int64_t r = r0; r < r1; r += kAmxRows) {
        job.split(job.data + r * job.row_bytes, job.row_bytes, static_cast<int>(std::min<int64_t>(kAmxRows, r1 - r)),
                  job.cols, split_scratch.data() + (r - r0) / kAmxRows * tile_bytes);
      }
      block = split_scratch.data();
    }
    for (int64_t t0 = 0; t0 < job.n; t0 += kAmxCols) {
      const int nx = static_cast<int>(std::min<int64_t>(kAmxCols, job.n - t0));
      const uint8_t* group = job.groups + t0 / kAmxCols * job.group_bytes;
      for (int64_t r = r0; r < r1; r += kAmxRows) {
        const int mr = static_cast<int>(std::min<int64_t>(kAmxRows, r1 - r));
        job.tile(block + (r - r0) / kAmxRows * tile_bytes, job.row_bytes, mr, group, nx, job.cols, out);
        for (int m = 0; m < mr; ++m) {
          for (int j = 0; j < nx; ++j) job.y[(t0 + j) * job.rows + r + m] = out[m * kAmxCols + j];
        }
      }
    }
  }
}

// The job across the pool in whole tiles of weight rows, so that only the
// matrix's last tile is short.
void RunAmx(const AmxMatMulJob& job, ThreadPool* pool) {
  using internal::kAmxCols;
  using internal::kAmxRows;
  const int64_t tiles = (job.rows + kAmxRows - 1) / kAmxRows;
  const int64_t grain =
      std::max<int64_t>(1, kMinParallelBytes / (job.row_bytes * kAmxRows * std::min<int64_t>(job.n, kAmxCols)));
  Run(pool, tiles, grain, [j = &job](int64_t begin, int64_t end) {
    AmxRange(*j, begin * kAmxRows, std::min(j->rows, end * kAmxRows));
  });
}

void IntRange(const IntMatMulJob& job, int64_t begin, int64_t end) {
  const int64_t block_rows = std::max<int64_t>(1, kBlockBytes / job.row_bytes);
  float out[internal::kMaxPackedRows * kMaxTile];
  for (int64_t r0 = begin; r0 < end; r0 += block_rows) {
    const int64_t r1 = std::min(end, r0 + block_rows);
    for (int64_t t0 = 0; t0 < job.n; t0 += kMaxTile) {
      const int nx = static_cast<int>(std::min<int64_t>(kMaxTile, job.n - t0));
      if (job.packed != nullptr) {
        for (int64_t r = r0; r < r1; r += internal::kMaxPackedRows) {
          const int mr = static_cast<int>(std::min<int64_t>(internal::kMaxPackedRows, r1 - r));
          job.packed(job.data + r * job.row_bytes, job.row_bytes, mr, job.xq + t0 * job.xq_stride, job.xq_stride, nx,
                     job.cols, out);
          for (int m = 0; m < mr; ++m) {
            for (int j = 0; j < nx; ++j) job.y[(t0 + j) * job.rows + r + m] = out[m * kMaxTile + j];
          }
        }
        continue;
      }
      for (int64_t r = r0; r < r1; ++r) {
        job.dot(job.data + r * job.row_bytes, job.xq + t0 * job.xq_stride, job.xq_stride,
                job.xd + t0 / kMaxTile * job.xd_tile, kMaxTile, nx, job.cols, out);
        for (int j = 0; j < nx; ++j) job.y[(t0 + j) * job.rows + r] = out[j];
      }
    }
  }
}

void IntMatMul(const WeightMatrix& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
  const auto xq_stride = static_cast<int64_t>(ActivationRowBytes(w.type, w.cols));
  thread_local std::vector<uint8_t> xq_scratch;
  if (xq_scratch.size() < static_cast<size_t>(n * xq_stride)) xq_scratch.resize(static_cast<size_t>(n * xq_stride));
  // Quantizing is O(n * cols) against the product's O(n * cols * rows), but
  // on one thread it left the others idle for several percent of a prefill.
  uint8_t* xq = xq_scratch.data();
  Run(pool, n, kRowsPerQuantizeChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) QuantizeActivationRow(w.type, x + i * w.cols, xq + i * xq_stride, w.cols);
  });
  internal::IntMatMulQuantized(w, xq, xq_stride, n, y, pool);
}

// Every AMX product: the activation rows (n rows of Src, x_stride apart)
// packed into groups of kAmxCols rows, group_bytes each, across the pool,
// then the tiles, over split rows if split is set.
template <class Src>
void PackAndRunAmx(const WeightMatrix& w, const Src* x, int64_t x_stride, int64_t n, float* y, ThreadPool* pool,
                   void (*pack)(const Src*, int64_t, uint8_t*, int), int64_t group_bytes, internal::AmxTileFn tile,
                   internal::AmxSplitFn split) {
  using internal::kAmxCols;
  thread_local std::vector<uint8_t> packed_scratch;
  const int64_t groups = (n + kAmxCols - 1) / kAmxCols;
  if (packed_scratch.size() < static_cast<size_t>(groups * group_bytes)) {
    packed_scratch.resize(static_cast<size_t>(groups * group_bytes));
  }
  uint8_t* packed = packed_scratch.data();
  Run(pool, n, kRowsPerQuantizeChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pack(x + i * x_stride, w.cols, packed + i / kAmxCols * group_bytes, static_cast<int>(i % kAmxCols));
    }
  });
  RunAmx({.tile = tile, .split = split, .data = static_cast<const uint8_t*>(w.data), .rows = w.rows,
          .cols = w.cols, .row_bytes = static_cast<int64_t>(w.row_bytes), .n = n, .groups = packed,
          .group_bytes = group_bytes, .y = y},
         pool);
}

// F16 weights under kInt8Activations with AMX, from kF16AmxMinRows rows on:
// split into two bf16 halves and multiplied by activations taken to 16
// bits, four exact products per element pair (kernel_table.h). Finer than
// llama.cpp's rounding of activations to f16 for F16 weights (11 bits). A
// row's result is the same in every batch of at least kF16AmxMinRows rows;
// fewer take the exact float path, whose sums are in another order.
void F16AmxMatMul(const WeightMatrix& w, const float* x, int64_t n, float* y, ThreadPool* pool,
                  const internal::AmxKernels& amx) {
  // One group reads each weight once either way: split as it goes. More
  // groups pass over each block: split it once (the same bits).
  const bool once = n <= internal::kAmxCols;
  PackAndRunAmx(w, x, w.cols, n, y, pool, amx.pack_f16, internal::AmxF16GroupBytes(w.cols),
                once ? amx.f16_direct : amx.f16, once ? nullptr : amx.split_f16);
}

// BF16 weights under kInt8Activations where HasBf16Dot(): the activations
// rounded to bf16, as llama.cpp rounds them for BF16 weights (its
// vec_dot_type), so that every product is exact in float. With AMX,
// tdpbf16ps tiles (dot_amx.cpp); else vdpbf16ps (dot_avx512_bf16.cpp).
// Every n takes the same tiles, so a row's result does not depend on its
// batch.
void Bf16MatMul(const WeightMatrix& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
  const auto* data = static_cast<const uint8_t*>(w.data);
  const auto row_bytes = static_cast<int64_t>(w.row_bytes);
  if (const internal::AmxKernels* amx = internal::ActiveAmxKernels(); amx != nullptr) {
    return PackAndRunAmx(w, x, w.cols, n, y, pool, amx->pack_bf16, internal::AmxBf16GroupBytes(w.cols), amx->bf16,
                         nullptr);
  }
  // vdpbf16ps: the rounded rows, padded (see the file comment), in tiles of
  // up to kMaxTile rows against each weight row of an L2-sized block.
  const internal::Bf16DotTileFn dot = internal::ActiveBf16DotTile();
  const int64_t stride = w.cols + 2 * kRowPad;
  thread_local std::vector<uint16_t> xb_scratch;
  if (xb_scratch.size() < static_cast<size_t>(n * stride)) xb_scratch.resize(static_cast<size_t>(n * stride));
  uint16_t* xb = xb_scratch.data();
  Run(pool, n, kRowsPerQuantizeChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t k = 0; k < w.cols; ++k) xb[i * stride + k] = internal::Fp32ToBf16(x[i * w.cols + k]);
    }
  });
  // One pointer captured, so the std::function holds it without allocating
  // (MatVec runs dozens of times per decoded token).
  const struct {
    internal::Bf16DotTileFn dot;
    const uint8_t* data;
    int64_t rows, cols, row_bytes, n;
    const uint16_t* xb;
    int64_t stride;
    float* y;
  } job{dot, data, w.rows, w.cols, row_bytes, n, xb, stride, y};
  const int64_t grain = std::max<int64_t>(1, kMinParallelBytes / (row_bytes * std::min<int64_t>(n, kMaxTile)));
  Run(pool, w.rows, grain, [j = &job](int64_t begin, int64_t end) {
    const int64_t block_rows = std::max<int64_t>(1, kBlockBytes / j->row_bytes);
    float out[kMaxTile];
    for (int64_t r0 = begin; r0 < end; r0 += block_rows) {
      const int64_t r1 = std::min(end, r0 + block_rows);
      for (int64_t t0 = 0; t0 < j->n; t0 += kMaxTile) {
        const int nx = static_cast<int>(std::min<int64_t>(kMaxTile, j->n - t0));
        for (int64_t r = r0; r < r1; ++r) {
          j->dot(j->data + r * j->row_bytes, j->xb + t0 * j->stride, j->stride, nx, j->cols, out);
          for (int jx = 0; jx < nx; ++jx) j->y[(t0 + jx) * j->rows + r] = out[jx];
        }
      }
    }
  });
}

}  // namespace

namespace internal {

void IntMatMulQuantized(const WeightMatrix& w, const uint8_t* xq, int64_t xq_stride, int64_t n, float* y,
                        ThreadPool* pool) {
  const IntKernelTable& table = ActiveIntKernels();
  const bool q32 = w.type == GgmlType::kQ8_0 || w.type == GgmlType::kQ4_0;
  thread_local std::vector<uint8_t> packed_scratch;
  if (const AmxKernels* amx = ActiveAmxKernels(); amx != nullptr && w.type == GgmlType::kQ8_0) {
    return PackAndRunAmx(w, xq, xq_stride, n, y, pool, amx->pack, AmxGroupBytes(w.cols), amx->q8_0, nullptr);
  }
  IntMatMulJob job{.dot = FindIntKernel(table, w.type),
                   .packed = nullptr,
                   .data = static_cast<const uint8_t*>(w.data),
                   .rows = w.rows,
                   .cols = w.cols,
                   .row_bytes = static_cast<int64_t>(w.row_bytes),
                   .n = n,
                   .xq = xq,
                   .xq_stride = xq_stride,
                   .xd = nullptr,
                   .xd_tile = 0,
                   .y = y};
  thread_local std::vector<float> xd_scratch;
  if (q32 && table.pack_q32 != nullptr) {
    const int64_t ps = PackedQ32RowBytes(w.cols);
    if (packed_scratch.size() < static_cast<size_t>(n * ps)) packed_scratch.resize(static_cast<size_t>(n * ps));
    const int offset = w.type == GgmlType::kQ8_0 ? 128 : 8;
    uint8_t* packed = packed_scratch.data();
    Run(pool, n, kRowsPerQuantizeChunk, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) table.pack_q32(xq + i * xq_stride, w.cols, offset, packed + i * ps);
    });
    job.packed = w.type == GgmlType::kQ8_0 ? table.q8_0_packed : table.q4_0_packed;
    job.xq = packed_scratch.data();
    job.xq_stride = ps;
  } else if (q32) {
    job.xd_tile = ActivationScaleCount(w.type, w.cols) * kMaxTile;
    const int64_t tiles = (n + kMaxTile - 1) / kMaxTile;
    if (xd_scratch.size() < static_cast<size_t>(tiles * job.xd_tile)) {
      xd_scratch.resize(static_cast<size_t>(tiles * job.xd_tile));
    }
    for (int64_t i = 0; i < n; ++i) {
      WidenActivationScales(w.type, xq + i * xq_stride, w.cols,
                            xd_scratch.data() + i / kMaxTile * job.xd_tile + i % kMaxTile, kMaxTile);
    }
    job.xd = xd_scratch.data();
  }
  const int64_t grain = std::max<int64_t>(1, kMinParallelBytes / (job.row_bytes * std::min<int64_t>(n, kMaxTile)));
  Run(pool, w.rows, grain, [j = &job](int64_t begin, int64_t end) { IntRange(*j, begin, end); });
}

}  // namespace internal

Status CheckWeightMatrix(const WeightMatrix& w) {
  const auto traits = LookupGgmlType(static_cast<uint32_t>(w.type));
  if (!traits.ok() || !IsSupportedWeightType(w.type)) {
    return InvalidArgument(fmt::format(
        "weight type {} is not supported by the CPU kernels (supported: F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K)",
        traits.ok() ? std::string((*traits)->name) : fmt::format("id {}", static_cast<uint32_t>(w.type))));
  }
  const GgmlTypeTraits& t = **traits;
  if (w.rows < 0 || w.cols < 0) {
    return InvalidArgument(fmt::format("weight matrix of {} x {}: dimensions must not be negative", w.rows, w.cols));
  }
  if (w.cols % t.block_elements != 0) {
    return InvalidArgument(fmt::format("weight matrix of type {} with {} columns: must be a multiple of its block of {}",
                                       t.name, w.cols, t.block_elements));
  }
  const uint64_t needed = static_cast<uint64_t>(w.cols / t.block_elements) * t.block_bytes;
  if (w.row_bytes < needed) {
    return InvalidArgument(fmt::format("weight matrix of type {} with {} columns: row_bytes {} is less than the {} a row takes",
                                       t.name, w.cols, w.row_bytes, needed));
  }
  if (w.data == nullptr && w.rows > 0 && w.cols > 0) return InvalidArgument("weight matrix has no data");
  return Status::Ok();
}

void MatVec(const WeightMatrix& w, const float* x, float* y, ThreadPool* pool, MatMulPrecision precision) {
  CheckOrDie("MatVec", w);
  if (w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + w.rows, 0.0f);
    return;
  }
  if (precision == MatMulPrecision::kInt8Activations && HasIntegerDot(w.type)) return IntMatMul(w, x, 1, y, pool);
  if (precision == MatMulPrecision::kInt8Activations && w.type == GgmlType::kBF16 && HasBf16Dot()) {
    return Bf16MatMul(w, x, 1, y, pool);
  }
  // One pointer captured, so the std::function holds it without allocating
  // (MatVec runs dozens of times per decoded token).
  const struct {
    internal::DotTileFn dot;
    const uint8_t* data;
    int64_t row_bytes;
    int64_t cols;
    const float* x;
    float* y;
  } job{internal::FindKernels(internal::ActiveKernels(), w.type)->dot_tile, static_cast<const uint8_t*>(w.data),
        static_cast<int64_t>(w.row_bytes), w.cols, x, y};
  Run(pool, w.rows, std::max<int64_t>(1, kMinParallelBytes / job.row_bytes), [j = &job](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) j->dot(j->data + r * j->row_bytes, j->x, 0, 1, j->cols, &j->y[r]);
  });
}

void MatMul(const WeightMatrix& w, const float* x, int64_t n, float* y, ThreadPool* pool,
            MatMulPrecision precision) {
  if (n == 1) return MatVec(w, x, y, pool, precision);
  CheckOrDie("MatMul", w);
  if (n <= 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + n * w.rows, 0.0f);
    return;
  }
  // Every row through the integer tiles, however many: a row's result must
  // not depend on the batch it was computed in (see the file comment).
  if (precision == MatMulPrecision::kInt8Activations && HasIntegerDot(w.type)) return IntMatMul(w, x, n, y, pool);
  if (precision == MatMulPrecision::kInt8Activations && w.type == GgmlType::kBF16 && HasBf16Dot()) {
    return Bf16MatMul(w, x, n, y, pool);
  }
  if (precision == MatMulPrecision::kInt8Activations && w.type == GgmlType::kF16 && n >= kF16AmxMinRows) {
    if (const internal::AmxKernels* amx = internal::ActiveAmxKernels(); amx != nullptr) {
      return F16AmxMatMul(w, x, n, y, pool, *amx);
    }
  }
  const internal::KernelTable& table = internal::ActiveKernels();
  const int64_t stride = w.cols + kRowPad;
  thread_local std::vector<float> x_scratch;
  float* padded = Scratch(x_scratch, n * stride);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(x + i * w.cols, x + (i + 1) * w.cols, padded + i * stride);
  }

  const MatMulJob job{.kernels = internal::FindKernels(table, w.type),
                      .gemm = &table.gemm,
                      .traits = &GetGgmlTypeTraits(w.type),
                      .data = static_cast<const uint8_t*>(w.data),
                      .rows = w.rows,
                      .cols = w.cols,
                      .row_bytes = static_cast<int64_t>(w.row_bytes),
                      .n = n,
                      .x = padded,
                      .stride = stride,
                      .y = y};
  const int64_t grain = std::max<int64_t>(1, kMinParallelBytes / (job.row_bytes * n));
  const bool half = w.type == GgmlType::kF16 || w.type == GgmlType::kBF16;
  if (n >= (half ? kGemmMinRowsHalf : kGemmMinRows) || w.type == GgmlType::kF32) {
    Run(pool, w.rows, grain, [j = &job](int64_t begin, int64_t end) { GemmRange(*j, begin, end); });
  } else {
    Run(pool, w.rows, grain, [j = &job](int64_t begin, int64_t end) { FusedRange(*j, begin, end); });
  }
}

}  // namespace kvstack::kernels
