// DotRow: every type at every instruction-set level against the scalar
// reference (which accumulates in double).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels_test_util.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using test_util::RandomFloats;
using test_util::RandomRow;
using test_util::RunnableLevels;
using test_util::ScopedCpuLevel;
using test_util::SupportedTypes;
using test_util::TypeName;

// sum |w_i x_i|: float accumulation in any order stays within a few ulps of
// this per term, so tolerances scale with it.
double SumAbsTerms(GgmlType type, const std::vector<uint8_t>& row, const std::vector<float>& x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  DequantizeRowReference(type, row.data(), w.data(), n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(w[i]) * x[i]);
  return s;
}

TEST(DotTest, EveryLevelMatchesReference) {
  std::mt19937 rng(11);
  for (GgmlType type : SupportedTypes()) {
    const int64_t block = GetGgmlTypeTraits(type).block_elements;
    for (int64_t blocks : {int64_t{1}, int64_t{2}, int64_t{5}, int64_t{16}, int64_t{33}}) {
      for (int extra : {0, 1, 7, 15, 17, 31}) {
        // Float types take any length: exercise every tail.
        const int64_t n = block == 1 ? 64 * blocks + extra : blocks * block;
        if (block != 1 && extra != 0) continue;
        const std::vector<uint8_t> row = RandomRow(type, n, rng);
        const std::vector<float> x = RandomFloats(n, rng);
        const float ref = DotRowReference(type, row.data(), x.data(), n);
        const double tolerance = 1e-5 * SumAbsTerms(type, row, x, n) + 1e-30;
        for (CpuLevel level : RunnableLevels()) {
          ScopedCpuLevel scoped(level);
          const float got = DotRow(type, row.data(), x.data(), n);
          EXPECT_NEAR(got, ref, tolerance) << TypeName(type) << " n=" << n << " at " << CpuLevelName(level);
          // The same call twice gives the same bits: no hidden state.
          EXPECT_EQ(got, DotRow(type, row.data(), x.data(), n));
        }
      }
    }
  }
}

// Small integers multiply and add exactly in float, so every level must give
// the exact answer whatever its summation order: a wrong tail or a dropped
// block shows up as an exact mismatch.
TEST(DotTest, ExactOnSmallIntegers) {
  for (int64_t n = 1; n <= 130; ++n) {
    std::vector<float> w(static_cast<size_t>(n)), x(static_cast<size_t>(n));
    int64_t exact = 0;
    for (int64_t i = 0; i < n; ++i) {
      w[i] = static_cast<float>(i % 7 - 3);
      x[i] = static_cast<float>((i * 5) % 11 - 5);
      exact += static_cast<int64_t>(w[i]) * static_cast<int64_t>(x[i]);
    }
    for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16}) {
      std::vector<uint8_t> row(test_util::RowBytes(type, n));
      ASSERT_TRUE(QuantizeRow(type, w.data(), row.data(), n).ok());
      EXPECT_EQ(DotRowReference(type, row.data(), x.data(), n), static_cast<float>(exact));
      for (CpuLevel level : RunnableLevels()) {
        ScopedCpuLevel scoped(level);
        EXPECT_EQ(DotRow(type, row.data(), x.data(), n), static_cast<float>(exact))
            << TypeName(type) << " n=" << n << " at " << CpuLevelName(level);
      }
    }
  }
}

// One quant set to 1 and the rest 0 in a Q8_0 row picks out exactly one x.
TEST(DotTest, Q8_0SelectsOneElement) {
  const int64_t n = 96;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(i) + 0.5f;
  for (int64_t k = 0; k < n; k += 13) {
    std::vector<uint8_t> row(3 * 34, 0);
    for (int b = 0; b < 3; ++b) {
      const uint16_t one = test_util::HalfBits(1.0f);
      std::memcpy(row.data() + 34 * b, &one, 2);
    }
    row[34 * (k / 32) + 2 + k % 32] = 1;
    for (CpuLevel level : RunnableLevels()) {
      ScopedCpuLevel scoped(level);
      EXPECT_EQ(DotRow(GgmlType::kQ8_0, row.data(), x.data(), n), x[k]) << k << " at " << CpuLevelName(level);
    }
  }
}

TEST(DotTest, EmptyRowIsZero) {
  EXPECT_EQ(DotRow(GgmlType::kF32, nullptr, nullptr, 0), 0.0f);
  EXPECT_EQ(DotRowReference(GgmlType::kQ4_0, nullptr, nullptr, 0), 0.0f);
}

TEST(DotDeathTest, UnsupportedTypeAborts) {
  std::vector<uint8_t> row(64);
  std::vector<float> x(32);
  EXPECT_DEATH(DotRow(GgmlType::kQ4_1, row.data(), x.data(), 32), "weight type Q4_1 .* not supported");
}

}  // namespace
}  // namespace kvstack::kernels
