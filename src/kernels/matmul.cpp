// MatVec and MatMul: rows of W split across the pool, each row dotted by the
// active kernel table's DotTile.
//
// MatMul streams each weight once per tile of kMaxTile activation rows, not
// once per activation row: a block of weight rows (small enough to stay in
// L2) is multiplied by every tile before the next block is read, and within
// a tile the columns go in chunks so that the tile's activations stay in L1
// while the block's rows pass over them. The activations are first copied
// with a row stride 64 bytes longer than a row: with a stride that is a
// multiple of 4 KiB (4096 columns, say) the eight rows of a tile would fall
// into the same L1 sets and evict each other on every load.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/dispatch.h"
#include "kernels/kernel_table.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using internal::kMaxTile;

// Weight bytes of one block of rows: re-read from L2 once per tile.
constexpr int64_t kBlockBytes = 512 * 1024;
constexpr int64_t kMaxBlockRows = 64;
// Columns per chunk: a full tile of activations is then 8 x 512 x 4 = 16 KiB.
// A multiple of every block size (32, 256).
constexpr int64_t kColumnChunk = 512;
// The least work worth handing to another thread, in weight bytes read.
constexpr int64_t kMinParallelBytes = 16 * 1024;
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

}  // namespace

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

void MatVec(const WeightMatrix& w, const float* x, float* y, ThreadPool* pool) {
  CheckOrDie("MatVec", w);
  if (w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + w.rows, 0.0f);
    return;
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

void MatMul(const WeightMatrix& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
  if (n == 1) return MatVec(w, x, y, pool);
  CheckOrDie("MatMul", w);
  if (n <= 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + n * w.rows, 0.0f);
    return;
  }
  const internal::DotTileFn dot = internal::FindKernels(internal::ActiveKernels(), w.type)->dot_tile;
  const GgmlTypeTraits& traits = GetGgmlTypeTraits(w.type);
  const auto* data = static_cast<const uint8_t*>(w.data);
  const int64_t rows = w.rows;
  const int64_t cols = w.cols;
  const int64_t row_bytes = static_cast<int64_t>(w.row_bytes);
  const int64_t block_rows = std::clamp<int64_t>(kBlockBytes / row_bytes, 1, kMaxBlockRows);
  const int64_t chunk = std::min(cols, kColumnChunk);
  // Grow-only, per driving thread: memory handed back to the VM and touched
  // again is slow (REFERENCE.md section 3).
  thread_local std::vector<float> padded;
  const int64_t stride = cols + kRowPad;
  if (padded.size() < static_cast<size_t>(n * stride)) padded.resize(static_cast<size_t>(n * stride));
  for (int64_t i = 0; i < n; ++i) std::copy(x + i * cols, x + (i + 1) * cols, padded.data() + i * stride);
  const float* xp = padded.data();

  auto range = [&](int64_t begin, int64_t end) {
    float partial[kMaxBlockRows][kMaxTile];
    float out[kMaxTile];
    for (int64_t r0 = begin; r0 < end; r0 += block_rows) {
      const int64_t r1 = std::min(end, r0 + block_rows);
      for (int64_t t0 = 0; t0 < n; t0 += kMaxTile) {
        const int nx = static_cast<int>(std::min<int64_t>(kMaxTile, n - t0));
        const float* xt = xp + t0 * stride;
        for (int64_t c0 = 0; c0 < cols; c0 += chunk) {
          const int64_t len = std::min(chunk, cols - c0);
          const int64_t offset = c0 / traits.block_elements * traits.block_bytes;
          for (int64_t r = r0; r < r1; ++r) {
            dot(data + r * row_bytes + offset, xt + c0, stride, nx, len, out);
            float* p = partial[r - r0];
            for (int j = 0; j < nx; ++j) p[j] = c0 == 0 ? out[j] : p[j] + out[j];
          }
        }
        for (int64_t r = r0; r < r1; ++r) {
          for (int j = 0; j < nx; ++j) y[(t0 + j) * rows + r] = partial[r - r0][j];
        }
      }
    }
  };
  Run(pool, rows, std::max<int64_t>(1, kMinParallelBytes / (row_bytes * n)), range);
}

}  // namespace kvstack::kernels
