// Kernels benchmarks (scripts/bench-kernels prints the BENCHMARKS.md table).
//
//   BM_MatVec/<type>/<threads>:  y = W x on a 4096 x 4096 matrix; bytes/s
//                                counts the weight bytes read.
//   BM_Memcpy/<type>:            memcpy of as many bytes as that matrix holds,
//                                the baseline MatVec is compared with (a
//                                MatVec streams the weights once).
//   BM_ReadBytes/<type>/<threads>: summing those bytes as 64-bit words, split
//                                over the threads as MatVec splits its rows:
//                                reading alone, the roofline of a memory-bound
//                                MatVec on that many threads.
//   BM_MatMul/<type>/<n>/<threads>/<precision>: Y = X W^T for n activation
//                                rows, precision 0 exact float, 1
//                                kInt8Activations (quantized types, F16 and
//                                BF16); the "GFLOP/s" counter is
//                                2 * rows * cols * n / s.
//   BM_MatVecLevel/<type>/<level>: single-threaded MatVec per instruction set.
//   BM_MatMulLevel/<type>/<n>/<level>: single-threaded MatMul of n rows with
//                                kInt8Activations per instruction set (levels
//                                as kernels::CpuLevel, 4 = avx512-amx; BF16
//                                is exact float where HasBf16Dot is false,
//                                F16 below avx512-amx).
//
// Matrices are allocated and touched once and kept for the whole run (memory
// given back to a VM and touched again is slow: REFERENCE.md section 3).
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

constexpr int64_t kRows = 4096;
constexpr int64_t kCols = 4096;

const GgmlType kTypes[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,
                           GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K};

struct Matrix {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
};

// A kRows x kCols matrix of `type` holding quantized normal weights.
const Matrix& GetMatrix(GgmlType type) {
  static std::map<GgmlType, std::unique_ptr<Matrix>> cache;
  auto& slot = cache[type];
  if (slot) return *slot;
  slot = std::make_unique<Matrix>();
  const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
  const size_t row_bytes = static_cast<size_t>(kCols / t.block_elements) * t.block_bytes;
  slot->bytes.resize(row_bytes * kRows);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> row(kCols);
  for (int64_t r = 0; r < kRows; ++r) {
    for (float& v : row) v = normal(rng);
    if (!QuantizeRow(type, row.data(), slot->bytes.data() + r * row_bytes, kCols).ok()) std::abort();
  }
  slot->w = WeightMatrix{.type = type, .data = slot->bytes.data(), .rows = kRows, .cols = kCols, .row_bytes = row_bytes};
  return *slot;
}

ThreadPool* GetPool(int threads) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return p.get();
}

std::vector<float> Activations(int64_t n) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * kCols));
  for (float& v : x) v = dist(rng);
  return x;
}

void BM_MatVec(benchmark::State& state) {
  const GgmlType type = kTypes[state.range(0)];
  const Matrix& m = GetMatrix(type);
  ThreadPool* pool = GetPool(static_cast<int>(state.range(1)));
  const std::vector<float> x = Activations(1);
  std::vector<float> y(kRows);
  for (auto _ : state) {
    MatVec(m.w, x.data(), y.data(), pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.bytes.size()));
  state.SetLabel(std::string(GetGgmlTypeTraits(type).name));
  state.counters["weight_bytes"] = static_cast<double>(m.bytes.size());
}

void BM_Memcpy(benchmark::State& state) {
  const GgmlType type = kTypes[state.range(0)];
  const size_t bytes = GetMatrix(type).bytes.size();
  static std::vector<uint8_t> src, dst;
  if (src.size() < bytes) {
    src.assign(bytes, 1);
    dst.assign(bytes, 2);
  }
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.SetLabel(std::string(GetGgmlTypeTraits(type).name));
}

void BM_ReadBytes(benchmark::State& state) {
  const Matrix& m = GetMatrix(kTypes[state.range(0)]);
  const int threads = static_cast<int>(state.range(1));
  ThreadPool* pool = GetPool(threads);
  const int64_t words = static_cast<int64_t>(m.bytes.size() / sizeof(uint64_t));
  std::vector<uint64_t> sums(static_cast<size_t>(threads) * 8);  // a cache line per chunk
  for (auto _ : state) {
    // One chunk per thread, as MatVec splits its rows.
    pool->ParallelFor(words, (words + threads - 1) / threads, [&](int64_t begin, int64_t end) {
      uint64_t sum[4] = {0, 0, 0, 0};
      int64_t i = begin;
      for (; i + 4 <= end; i += 4) {
        for (int64_t k = 0; k < 4; ++k) {
          uint64_t v;
          std::memcpy(&v, m.bytes.data() + 8 * (i + k), sizeof v);
          sum[k] += v;
        }
      }
      for (; i < end; ++i) {
        uint64_t v;
        std::memcpy(&v, m.bytes.data() + 8 * i, sizeof v);
        sum[0] += v;
      }
      sums[static_cast<size_t>(begin / ((words + threads - 1) / threads)) * 8] += sum[0] + sum[1] + sum[2] + sum[3];
    });
    benchmark::DoNotOptimize(sums.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.bytes.size()));
  state.SetLabel(std::string(GetGgmlTypeTraits(kTypes[state.range(0)]).name));
}

void BM_MatMul(benchmark::State& state) {
  const GgmlType type = kTypes[state.range(0)];
  const int64_t n = state.range(1);
  const Matrix& m = GetMatrix(type);
  ThreadPool* pool = GetPool(static_cast<int>(state.range(2)));
  const auto precision = state.range(3) == 0 ? MatMulPrecision::kExactFloat : MatMulPrecision::kInt8Activations;
  const std::vector<float> x = Activations(n);
  std::vector<float> y(static_cast<size_t>(n * kRows));
  for (auto _ : state) {
    MatMul(m.w, x.data(), n, y.data(), pool, precision);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kRows * kCols * static_cast<double>(n),
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
  state.SetLabel(std::string(GetGgmlTypeTraits(type).name));
}

void BM_MatVecLevel(benchmark::State& state) {
  const GgmlType type = kTypes[state.range(0)];
  const auto level = static_cast<CpuLevel>(state.range(1));
  if (level > DetectedCpuLevel()) {
    state.SkipWithError("this CPU lacks the instruction set");
    return;
  }
  const Matrix& m = GetMatrix(type);
  const std::vector<float> x = Activations(1);
  std::vector<float> y(kRows);
  SetCpuLevel(level);
  for (auto _ : state) {
    MatVec(m.w, x.data(), y.data(), nullptr);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  SetCpuLevel(DetectedCpuLevel());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.bytes.size()));
  state.SetLabel(std::string(GetGgmlTypeTraits(type).name) + "/" + std::string(CpuLevelName(level)));
}

void BM_MatMulLevel(benchmark::State& state) {
  const GgmlType type = kTypes[state.range(0)];
  const int64_t n = state.range(1);
  const auto level = static_cast<CpuLevel>(state.range(2));
  if (level > DetectedCpuLevel()) {
    state.SkipWithError("this CPU lacks the instruction set");
    return;
  }
  const Matrix& m = GetMatrix(type);
  const std::vector<float> x = Activations(n);
  std::vector<float> y(static_cast<size_t>(n * kRows));
  SetCpuLevel(level);
  for (auto _ : state) {
    MatMul(m.w, x.data(), n, y.data(), nullptr, MatMulPrecision::kInt8Activations);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  SetCpuLevel(DetectedCpuLevel());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kRows * kCols * static_cast<double>(n),
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.bytes.size()));
  state.SetLabel(std::string(GetGgmlTypeTraits(type).name) + "/" + std::string(CpuLevelName(level)));
}

void TypeArgs(benchmark::internal::Benchmark* b) {
  for (int t = 0; t < 7; ++t) b->Arg(t);
}

void TypeThreadArgs(benchmark::internal::Benchmark* b) {
  for (int t = 0; t < 7; ++t) {
    for (int threads : {1, 2}) b->Args({t, threads});
  }
}

void MatMulArgs(benchmark::internal::Benchmark* b) {
  for (int t = 0; t < 7; ++t) {
    for (int n : {1, 4, 16, 64}) {
      for (int threads : {1, 2}) {
        const bool rounded = HasIntegerDot(kTypes[t]) || kTypes[t] == GgmlType::kF16 || kTypes[t] == GgmlType::kBF16;
        for (int precision = 0; precision < (rounded ? 2 : 1); ++precision) {
          b->Args({t, n, threads, precision});
        }
      }
    }
  }
}

constexpr int kLevels = static_cast<int>(CpuLevel::kAvx512Amx) + 1;

void LevelArgs(benchmark::internal::Benchmark* b) {
  for (int t : {0, 3, 4, 5, 6}) {
    for (int level = 0; level < kLevels; ++level) b->Args({t, level});
  }
}

void MatMulLevelArgs(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2, 3, 4, 5, 6}) {
    for (int n : {1, 16, 64}) {
      for (int level = 0; level < kLevels; ++level) b->Args({t, n, level});
    }
  }
}

BENCHMARK(BM_MatVec)->Apply(TypeThreadArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Memcpy)->Apply(TypeArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReadBytes)->Apply(TypeThreadArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatMulLevel)->Apply(MatMulLevelArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatVecLevel)->Apply(LevelArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvstack::kernels

BENCHMARK_MAIN();
