// MatVec and MatMul against per-row reference dot products, for every type,
// level and thread count, on shapes that leave partial tiles, partial row
// blocks and partial column chunks; then on the real tinyq-a matrices.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "kernels/kernels_test_util.h"
#include "kvstack/gguf.h"
#include "kvstack/kernels.h"
#include "common/requirement.h"

namespace kvstack::kernels {
namespace {

using ::testing::HasSubstr;
using test_util::RandomFloats;
using test_util::RandomRow;
using test_util::RowBytes;
using test_util::RunnableLevels;
using test_util::ScopedCpuLevel;
using test_util::SharedPath;
using test_util::SupportedTypes;
using test_util::TypeName;

struct Matrix {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
};

// rows x cols of random weights; `padding` extra bytes after each row.
Matrix RandomMatrix(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng, size_t padding = 0) {
  Matrix m;
  const size_t row_bytes = RowBytes(type, cols) + padding;
  m.bytes.resize(row_bytes * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> row = RandomRow(type, cols, rng);
    std::copy(row.begin(), row.end(), m.bytes.begin() + static_cast<std::ptrdiff_t>(r * row_bytes));
  }
  m.w = WeightMatrix{.type = type, .data = m.bytes.data(), .rows = rows, .cols = cols, .row_bytes = row_bytes};
  return m;
}

// Checks Y (n x rows) against reference dot products of every row with
// every activation row.
void ExpectMatchesReference(const WeightMatrix& w, const std::vector<float>& x, int64_t n, const std::vector<float>& y,
                            const std::string& what) {
  const auto* data = static_cast<const uint8_t*>(w.data);
  std::vector<float> deq(static_cast<size_t>(w.cols));
  int failures = 0;
  for (int64_t r = 0; r < w.rows && failures < 5; ++r) {
    const uint8_t* row = data + r * static_cast<int64_t>(w.row_bytes);
    DequantizeRowReference(w.type, row, deq.data(), w.cols);
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x.data() + i * w.cols;
      double abs_sum = 0;
      for (int64_t k = 0; k < w.cols; ++k) abs_sum += std::fabs(static_cast<double>(deq[k]) * xi[k]);
      const float ref = DotRowReference(w.type, row, xi, w.cols);
      const float got = y[static_cast<size_t>(i * w.rows + r)];
      if (std::fabs(static_cast<double>(got) - ref) > 1e-5 * abs_sum + 1e-30) {
        ADD_FAILURE() << what << ": Y[" << i << "][" << r << "] = " << got << ", reference " << ref;
        ++failures;
      }
    }
  }
}

std::vector<std::unique_ptr<ThreadPool>> Pools() {
  std::vector<std::unique_ptr<ThreadPool>> pools;
  pools.push_back(nullptr);
  for (int threads : {1, 2, 3}) pools.push_back(std::make_unique<ThreadPool>(threads));
  return pools;
}

TEST(MatMulTest, EveryTypeLevelAndPoolMatchesReference) {
  std::mt19937 rng(3);
  const auto pools = Pools();
  for (GgmlType type : SupportedTypes()) {
    const bool k_quant = GetGgmlTypeTraits(type).block_elements == 256;
    // Over 512 columns: MatMul sums several column chunks (the last partial
    // for the float types); 37 rows: partial row blocks and thread chunks.
    const int64_t cols = k_quant ? 768 : (GetGgmlTypeTraits(type).block_elements == 32 ? 544 : 601);
    const Matrix m = RandomMatrix(type, 37, cols, rng);
    // n < 4 takes the fused path for quantized types, the rest the GEMM path.
    for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{17}}) {
      const std::vector<float> x = RandomFloats(n * cols, rng);
      for (CpuLevel level : RunnableLevels()) {
        ScopedCpuLevel scoped(level);
        for (const auto& pool : pools) {
          std::vector<float> y(static_cast<size_t>(n * m.w.rows), -1.0f);
          MatMul(m.w, x.data(), n, y.data(), pool.get());
          ExpectMatchesReference(m.w, x, n, y,
                                 TypeName(type) + " n=" + std::to_string(n) + " " + std::string(CpuLevelName(level)) +
                                     " threads=" + std::to_string(pool ? pool->size() : 0));
        }
      }
    }
  }
}

TEST(MatMulTest, MatVecEqualsMatMulOfOneRowAndRowsOfABatch) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  for (GgmlType type : SupportedTypes()) {
    const int64_t cols = GetGgmlTypeTraits(type).block_elements == 256 ? 512 : 96;
    const Matrix m = RandomMatrix(type, 70, cols, rng);
    const std::vector<float> x = RandomFloats(3 * cols, rng);
    std::vector<float> batch(3 * 70), single(70), again(70);
    MatMul(m.w, x.data(), 3, batch.data(), &pool);
    for (int64_t i = 0; i < 3; ++i) {
      MatVec(m.w, x.data() + i * cols, single.data(), &pool);
      MatMul(m.w, x.data() + i * cols, 1, again.data(), nullptr);
      EXPECT_EQ(single, again) << TypeName(type);
      for (int64_t r = 0; r < 70; ++r) {
        EXPECT_NEAR(batch[static_cast<size_t>(i * 70 + r)], single[static_cast<size_t>(r)],
                    1e-5 * (std::fabs(single[static_cast<size_t>(r)]) + 1))
            << TypeName(type) << " " << i << " " << r;
      }
    }
  }
}

TEST(MatMulTest, PaddedRowsAndLargeBatch) {
  std::mt19937 rng(9);
  ThreadPool pool(2);
  // F32 rows padded by whole floats are read in place; padded by 2 bytes
  // they are not float-aligned and go through the dequantized copy.
  for (const auto& [type, padding] : {std::pair{GgmlType::kQ4_K, size_t{16}}, std::pair{GgmlType::kF32, size_t{8}},
                                      std::pair{GgmlType::kF32, size_t{2}}}) {
    const Matrix m = RandomMatrix(type, 21, 256, rng, padding);
    const std::vector<float> x = RandomFloats(64 * 256, rng);
    for (int64_t n : {int64_t{2}, int64_t{5}, int64_t{64}}) {
      std::vector<float> y(static_cast<size_t>(n * 21));
      MatMul(m.w, x.data(), n, y.data(), &pool);
      ExpectMatchesReference(m.w, x, n, y,
                             TypeName(type) + " padded by " + std::to_string(padding) + ", n=" + std::to_string(n));
    }
  }
}

// The matrix's rows by the scalar reference, row-major.
std::vector<float> DequantizedRows(const Matrix& m) {
  std::vector<float> deq(static_cast<size_t>(m.w.rows * m.w.cols));
  for (int64_t r = 0; r < m.w.rows; ++r) {
    DequantizeRowReference(m.w.type, m.bytes.data() + r * m.w.row_bytes, deq.data() + r * m.w.cols, m.w.cols);
  }
  return deq;
}

// BF16 weights under kInt8Activations, where the level multiplies bf16
// (HasBf16Dot), round the activations to bf16 (ties to even, as llama.cpp
// does), after which every product is exact: each output is within float
// summation error of the double sum of w * bf16(x), and a kernel that
// skipped the rounding would be off by about 2^-9 of the terms. As for the
// integer products, a row's result is the same bits whatever its batch:
// MatVec of one activation row equals its row of any MatMul, at every
// thread count and shape (partial 16 x 16 tiles, a tail of cols % 32).
// Levels without bf16 products take the exact float path, bit for bit.
float RoundToBf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&v, &bits, 4);
  return v;
}

TEST(MatMulTest, Bf16WithRoundedActivationsIsExactProductsAndBatchInvariant) {
  std::mt19937 rng(41);
  const auto pools = Pools();
  for (int64_t cols : {int64_t{544}, int64_t{77}, int64_t{31}}) {
    const Matrix m = RandomMatrix(GgmlType::kBF16, 37, cols, rng);
    const std::vector<float> deq = DequantizedRows(m);
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{17}, int64_t{40}}) {
      const std::vector<float> x = RandomFloats(n * cols, rng, -2.0f, 2.0f);
      for (CpuLevel level : RunnableLevels()) {
        ScopedCpuLevel scoped(level);
        if (!HasBf16Dot()) {
          std::vector<float> exact(static_cast<size_t>(n * m.w.rows)), rounded(exact.size());
          MatMul(m.w, x.data(), n, exact.data(), nullptr, MatMulPrecision::kExactFloat);
          MatMul(m.w, x.data(), n, rounded.data(), nullptr, MatMulPrecision::kInt8Activations);
          EXPECT_EQ(rounded, exact) << "cols=" << cols << " n=" << n << " at " << CpuLevelName(level);
          continue;
        }
        std::vector<float> alone(static_cast<size_t>(n * m.w.rows));
        for (int64_t i = 0; i < n; ++i) {
          MatVec(m.w, x.data() + i * cols, alone.data() + i * m.w.rows, nullptr, MatMulPrecision::kInt8Activations);
        }
        for (const auto& pool : pools) {
          const std::string what = "cols=" + std::to_string(cols) + " n=" + std::to_string(n) + " at " +
                                   std::string(CpuLevelName(level)) +
                                   " threads=" + std::to_string(pool ? pool->size() : 0);
          std::vector<float> y(static_cast<size_t>(n * m.w.rows), -1.0f);
          MatMul(m.w, x.data(), n, y.data(), pool.get(), MatMulPrecision::kInt8Activations);
          EXPECT_EQ(y, alone) << what;
        }
        int failures = 0;
        for (int64_t i = 0; i < n && failures < 5; ++i) {
          for (int64_t r = 0; r < m.w.rows && failures < 5; ++r) {
            double sum = 0, abs_sum = 0;
            for (int64_t k = 0; k < cols; ++k) {
              const double term = static_cast<double>(deq[r * cols + k]) * RoundToBf16(x[i * cols + k]);
              sum += term;
              abs_sum += std::fabs(term);
            }
            const float got = alone[static_cast<size_t>(i * m.w.rows + r)];
            if (std::fabs(got - sum) > 2e-6 * abs_sum) {
              ADD_FAILURE() << "cols=" << cols << " at " << CpuLevelName(level) << ": Y[" << i << "][" << r
                            << "] = " << got << ", sum of exact products " << sum << " (of |terms| " << abs_sum << ")";
              ++failures;
            }
          }
        }
      }
    }
  }
}

// F16 weights under kInt8Activations at the AMX level, from 16 activation
// rows on: each weight split exactly into two bf16s and each activation
// taken to 16 bits, x16 = bf16(x) + bf16(x - bf16(x)), so that every product
// is exact: each output is within float summation error of the double sum of
// w * x16 (rounding x to bf16 alone would be off by about 2^-9 of the terms).
// A row gets the same bits in every batch of at least 16 rows (one group of
// 16, split as it goes, or several, split per block; every thread count;
// tails of cols % 32). Fewer rows, and other levels, take the exact float
// path bit for bit.
TEST(MatMulTest, F16OnAmxIsExactProductsOfSixteenBitActivationsAndBatchInvariant) {
  std::mt19937 rng(43);
  const auto pools = Pools();
  for (int64_t cols : {int64_t{544}, int64_t{77}, int64_t{31}}) {
    const Matrix m = RandomMatrix(GgmlType::kF16, 37, cols, rng);
    const std::vector<float> deq = DequantizedRows(m);
    const int64_t most = 40, least = 16;
    const std::vector<float> x = RandomFloats(most * cols, rng, -2.0f, 2.0f);
    for (CpuLevel level : RunnableLevels()) {
      ScopedCpuLevel scoped(level);
      for (int64_t n : {int64_t{1}, int64_t{3}, least - 1}) {
        std::vector<float> exact(static_cast<size_t>(n * m.w.rows)), rounded(exact.size());
        MatMul(m.w, x.data(), n, exact.data(), nullptr, MatMulPrecision::kExactFloat);
        MatMul(m.w, x.data(), n, rounded.data(), nullptr, MatMulPrecision::kInt8Activations);
        EXPECT_EQ(rounded, exact) << "cols=" << cols << " n=" << n << " at " << CpuLevelName(level);
      }
      if (level != CpuLevel::kAvx512Amx) {
        std::vector<float> exact(static_cast<size_t>(17 * m.w.rows)), rounded(exact.size());
        MatMul(m.w, x.data(), 17, exact.data(), nullptr, MatMulPrecision::kExactFloat);
        MatMul(m.w, x.data(), 17, rounded.data(), nullptr, MatMulPrecision::kInt8Activations);
        EXPECT_EQ(rounded, exact) << "cols=" << cols << " at " << CpuLevelName(level);
        continue;
      }
      // Each row first in a batch of the least rows (the others after it).
      std::vector<float> alone(static_cast<size_t>(most * m.w.rows));
      std::vector<float> small(static_cast<size_t>(least * m.w.rows));
      std::vector<float> batch(static_cast<size_t>(least * cols));
      for (int64_t i = 0; i < most; ++i) {
        for (int64_t b = 0; b < least; ++b) {
          const int64_t src = (i + b * 7) % most;
          std::copy_n(x.data() + src * cols, cols, batch.data() + b * cols);
        }
        MatMul(m.w, batch.data(), least, small.data(), nullptr, MatMulPrecision::kInt8Activations);
        std::copy_n(small.data(), m.w.rows, alone.data() + i * m.w.rows);
      }
      for (int64_t n : {least, least + 1, most}) {
        for (const auto& pool : pools) {
          std::vector<float> y(static_cast<size_t>(n * m.w.rows), -1.0f);
          MatMul(m.w, x.data(), n, y.data(), pool.get(), MatMulPrecision::kInt8Activations);
          EXPECT_TRUE(std::equal(y.begin(), y.end(), alone.begin()))
              << "cols=" << cols << " n=" << n << " threads=" << (pool ? pool->size() : 0);
        }
      }
      int failures = 0;
      for (int64_t i = 0; i < most && failures < 5; ++i) {
        for (int64_t r = 0; r < m.w.rows && failures < 5; ++r) {
          double sum = 0, abs_sum = 0;
          for (int64_t k = 0; k < cols; ++k) {
            const float v = x[i * cols + k];
            const float hi = RoundToBf16(v);
            const double term = static_cast<double>(deq[r * cols + k]) * (double{hi} + RoundToBf16(v - hi));
            sum += term;
            abs_sum += std::fabs(term);
          }
          const float got = alone[static_cast<size_t>(i * m.w.rows + r)];
          if (std::fabs(got - sum) > 2e-6 * abs_sum) {
            ADD_FAILURE() << "cols=" << cols << ": Y[" << i << "][" << r << "] = " << got
                          << ", sum of exact products " << sum << " (of |terms| " << abs_sum << ")";
            ++failures;
          }
        }
      }
    }
  }
}

TEST(MatMulTest, EmptyShapes) {
  std::vector<float> y(4, 7.0f);
  WeightMatrix none{.type = GgmlType::kF32, .data = nullptr, .rows = 0, .cols = 16, .row_bytes = 64};
  MatVec(none, nullptr, y.data(), nullptr);
  MatMul(none, nullptr, 4, y.data(), nullptr);
  EXPECT_EQ(y, std::vector<float>(4, 7.0f));
  WeightMatrix no_cols{.type = GgmlType::kF32, .data = nullptr, .rows = 2, .cols = 0, .row_bytes = 0};
  MatMul(no_cols, nullptr, 2, y.data(), nullptr);
  EXPECT_EQ(y, std::vector<float>({0, 0, 0, 0}));
  MatMul(no_cols, nullptr, 0, y.data(), nullptr);  // n = 0: nothing
}

// The real matrices of every tinyq-a file (Q8_0, Q4_0, Q4_K, Q6_K, F32).
TEST(MatMulTest, TinyqAMatricesMatchReference) {
  std::mt19937 rng(13);
  ThreadPool pool(2);
  int checked = 0;
  for (const char* name : {"f32", "q8_0", "q4_0", "q4_k_m", "q6_k"}) {
    const std::string path = SharedPath(std::string("models/tinyq-a-") + name + ".gguf");
    if (!std::filesystem::exists(path)) KVSTACK_SKIP_MISSING() << path << " is absent (shared test assets)";
    auto file = GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    for (const GgufTensorInfo& t : file->tensors()) {
      if (t.dims.size() != 2) continue;
      WeightMatrix w{.type = t.type,
                     .data = t.data.data(),
                     .rows = static_cast<int64_t>(t.dims[1]),
                     .cols = static_cast<int64_t>(t.dims[0]),
                     .row_bytes = t.size_bytes / t.dims[1]};
      ASSERT_TRUE(CheckWeightMatrix(w).ok()) << CheckWeightMatrix(w).ToString();
      const std::vector<float> x = RandomFloats(5 * w.cols, rng);
      std::vector<float> y(static_cast<size_t>(5 * w.rows));
      MatMul(w, x.data(), 5, y.data(), &pool);
      ExpectMatchesReference(w, x, 5, y, std::string(name) + " " + t.name);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 5 * 16);
}

TEST(CheckWeightMatrixTest, NamesWhatIsWrong) {
  std::vector<uint8_t> bytes(1024);
  WeightMatrix ok{.type = GgmlType::kQ8_0, .data = bytes.data(), .rows = 2, .cols = 64, .row_bytes = 68};
  EXPECT_TRUE(CheckWeightMatrix(ok).ok());

  WeightMatrix w = ok;
  w.type = GgmlType::kQ5_K;
  EXPECT_THAT(CheckWeightMatrix(w).message(), HasSubstr("weight type Q5_K is not supported"));
  w = ok;
  w.cols = 48;
  EXPECT_THAT(CheckWeightMatrix(w).message(), HasSubstr("48 columns: must be a multiple of its block of 32"));
  w = ok;
  w.row_bytes = 67;
  EXPECT_THAT(CheckWeightMatrix(w).message(), HasSubstr("row_bytes 67 is less than the 68 a row takes"));
  w = ok;
  w.rows = -1;
  EXPECT_THAT(CheckWeightMatrix(w).message(), HasSubstr("must not be negative"));
  w = ok;
  w.data = nullptr;
  EXPECT_THAT(CheckWeightMatrix(w).message(), HasSubstr("no data"));
  EXPECT_EQ(CheckWeightMatrix(w).code(), StatusCode::kInvalidArgument);
}

TEST(MatMulDeathTest, InvalidMatrixAborts) {
  std::vector<uint8_t> bytes(1024);
  std::vector<float> x(64), y(64);
  WeightMatrix w{.type = GgmlType::kQ8_0, .data = bytes.data(), .rows = 2, .cols = 64, .row_bytes = 60};
  EXPECT_DEATH(MatVec(w, x.data(), y.data(), nullptr), "MatVec: InvalidArgument: .*row_bytes 60");
  EXPECT_DEATH(MatMul(w, x.data(), 2, y.data(), nullptr), "MatMul: InvalidArgument: .*row_bytes 60");
}

}  // namespace
}  // namespace kvstack::kernels
