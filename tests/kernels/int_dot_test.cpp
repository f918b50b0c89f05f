// The integer products (MatMulPrecision::kInt8Activations): activation
// quantization by hand, then every integer kernel at every level this CPU
// runs against DotRowInt8Reference on random and adversarial blocks, exactly
// where the answer is an integer float represents, and MatVec / MatMul of
// odd shapes against DotRowInt8 bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels_test_util.h"
#include "kvstack/gguf.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using test_util::HalfBits;
using test_util::RandomFloats;
using test_util::RandomRow;
using test_util::RowBytes;
using test_util::RunnableLevels;
using test_util::ScopedCpuLevel;
using test_util::TypeName;

const std::vector<GgmlType> kIntTypes = {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K};

bool IsK(GgmlType type) { return GetGgmlTypeTraits(type).block_elements == 256; }

float ReadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = HalfBits(v);
  std::memcpy(p, &h, 2);
}

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  float f;
  DequantizeRowReference(GgmlType::kF16, &h, &f, 1);
  return f;
}

std::vector<uint8_t> Quantized(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> xq(ActivationRowBytes(type, static_cast<int64_t>(x.size())));
  QuantizeActivationRow(type, x.data(), xq.data(), static_cast<int64_t>(x.size()));
  return xq;
}

// The activation values the blocks stand for (d * q).
std::vector<float> DequantizedActivations(GgmlType type, const std::vector<uint8_t>& xq, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  const int block = IsK(type) ? 256 : 32;
  const int bytes = IsK(type) ? 292 : 34;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* b = xq.data() + i / block * bytes;
    const float d = IsK(type) ? ReadF32(b) : HalfAt(b);
    x[static_cast<size_t>(i)] = d * static_cast<int8_t>(b[(IsK(type) ? 4 : 2) + i % block]);
  }
  return x;
}

// Bytes of a weight block that hold quants (zeroing them leaves each
// element at minus its offset: -8 d for Q4_0, -dmin m for Q4_K, -32 d sc for
// Q6_K, 0 for Q8_0).
bool IsQuantByte(GgmlType type, size_t offset_in_block) {
  switch (type) {
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0: return offset_in_block >= 2;
    case GgmlType::kQ4_K: return offset_in_block >= 16;
    default: return offset_in_block < 192;  // Q6_K: ql and qh
  }
}

// sum over i of (|w_i| + |offset_i|) * |x_i|: the kernels add terms of up to
// this size (the offsets are multiplied separately), so it bounds their
// float rounding.
double Magnitude(GgmlType type, const std::vector<uint8_t>& row, const std::vector<uint8_t>& xq, int64_t n) {
  std::vector<uint8_t> offsets_row = row;
  const size_t block_bytes = GetGgmlTypeTraits(type).block_bytes;
  for (size_t i = 0; i < offsets_row.size(); ++i) {
    if (IsQuantByte(type, i % block_bytes)) offsets_row[i] = 0;
  }
  std::vector<float> w(static_cast<size_t>(n)), o(static_cast<size_t>(n));
  DequantizeRowReference(type, row.data(), w.data(), n);
  DequantizeRowReference(type, offsets_row.data(), o.data(), n);
  const std::vector<float> x = DequantizedActivations(type, xq, n);
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m += (std::fabs(double{w[i]}) + std::fabs(double{o[i]})) * std::fabs(double{x[i]});
  return m;
}

// Float summation of b block terms, then of 8 lanes, rounds each term at
// most (b + 8) times by 2^-24 of the running sum.
double Tolerance(GgmlType type, const std::vector<uint8_t>& row, const std::vector<uint8_t>& xq, int64_t n) {
  const int64_t blocks = n / GetGgmlTypeTraits(type).block_elements;
  return static_cast<double>(blocks + 8) * std::ldexp(1.0, -24) * Magnitude(type, row, xq, n) + 1e-30;
}

TEST(ActivationQuantTest, Q8_0ByHand) {
  std::vector<float> x(64, 0.0f);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16) / 4.0f;  // amax 4 at j = 0
  const std::vector<uint8_t> xq = Quantized(GgmlType::kQ8_0, x);
  ASSERT_EQ(xq.size(), 68u);
  uint8_t d[2];
  PutHalf(d, 4.0f / 127.0f);
  EXPECT_EQ(HalfAt(xq.data()), HalfAt(d));
  EXPECT_EQ(static_cast<int8_t>(xq[2 + 0]), -127);  // -4
  EXPECT_EQ(static_cast<int8_t>(xq[2 + 16]), 0);
  EXPECT_EQ(static_cast<int8_t>(xq[2 + 17]), 8);    // 0.25 * 127 / 4 = 7.9375
  EXPECT_EQ(static_cast<int8_t>(xq[2 + 24]), 64);   // 2 * 127 / 4 = 63.5: ties to even
  EXPECT_EQ(static_cast<int8_t>(xq[2 + 31]), 119);  // 3.75 * 127 / 4 = 119.06
  // The all-zero block: scale 0, quants 0.
  for (int i = 34; i < 68; ++i) EXPECT_EQ(xq[i], 0) << i;
}

TEST(ActivationQuantTest, Q8_KByHand) {
  std::vector<float> x(512, 0.0f);
  for (int j = 0; j < 256; ++j) x[j] = static_cast<float>(j % 16) - 3.0f;  // max magnitude 12
  x[100] = -12.5f;                                                       // the signed max
  const std::vector<uint8_t> xq = Quantized(GgmlType::kQ4_K, x);
  ASSERT_EQ(xq.size(), 584u);
  EXPECT_EQ(ReadF32(xq.data()), 1.0f / (-127.0f / -12.5f));
  EXPECT_EQ(static_cast<int8_t>(xq[4 + 100]), -127);
  EXPECT_EQ(static_cast<int8_t>(xq[4 + 15]), 122);  // 12 * 10.16 = 121.92
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int j = 0; j < 16; ++j) sum += static_cast<int8_t>(xq[4 + 16 * g + j]);
    int16_t stored;
    std::memcpy(&stored, xq.data() + 260 + 2 * g, 2);
    EXPECT_EQ(stored, sum) << g;
  }
  for (int i = 292; i < 584; ++i) EXPECT_EQ(xq[i], 0) << i;  // all-zero block: d, quants, sums 0
}

// The integer product approximates the exact float one: the activations'
// rounding error is at most half a step per element.
TEST(IntDotTest, ApproximatesTheFloatProduct) {
  std::mt19937 rng(17);
  for (GgmlType type : kIntTypes) {
    const int64_t n = 1024;
    const std::vector<uint8_t> row = RandomRow(type, n, rng);
    const std::vector<float> x = RandomFloats(n, rng);
    const std::vector<uint8_t> xq = Quantized(type, x);
    std::vector<float> w(n);
    DequantizeRowReference(type, row.data(), w.data(), n);
    double bound = 0;
    const int block = IsK(type) ? 256 : 32;
    for (int64_t b = 0; b < n / block; ++b) {
      float amax = 0;
      for (int j = 0; j < block; ++j) amax = std::fmax(amax, std::fabs(x[b * block + j]));
      for (int j = 0; j < block; ++j) bound += std::fabs(double{w[b * block + j]}) * (amax / 127.0 * 0.5 + 1e-3 * amax);
    }
    EXPECT_NEAR(DotRowInt8Reference(type, row.data(), xq.data(), n), DotRowReference(type, row.data(), x.data(), n),
                bound)
        << TypeName(type);
  }
}

TEST(IntDotTest, EveryLevelMatchesReferenceOnRandomBlocks) {
  std::mt19937 rng(19);
  for (GgmlType type : kIntTypes) {
    const int64_t block = GetGgmlTypeTraits(type).block_elements;
    for (int64_t blocks : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, int64_t{16}, int64_t{33}}) {
      const int64_t n = blocks * block;
      const std::vector<uint8_t> row = RandomRow(type, n, rng);
      const std::vector<uint8_t> xq = Quantized(type, RandomFloats(n, rng, -3.0f, 3.0f));
      const float ref = DotRowInt8Reference(type, row.data(), xq.data(), n);
      const double tolerance = Tolerance(type, row, xq, n);
      for (CpuLevel level : RunnableLevels()) {
        ScopedCpuLevel scoped(level);
        const float got = DotRowInt8(type, row.data(), xq.data(), n);
        EXPECT_NEAR(got, ref, tolerance) << TypeName(type) << " n=" << n << " at " << CpuLevelName(level);
      }
    }
  }
}

// Weights with every scale 1 (and small K-quant sub-scales) against
// activations with scale 1: every partial sum is an integer below 2^24, so
// every level must give the exact answer; a dropped, doubled or mis-signed
// element shows as an exact mismatch. Quants are the extremes of their
// ranges: -128 / 127 for Q8_0, 0 / 15 for the 4-bit ones, 0 / 63 for Q6_K;
// activations -127 / 127.
TEST(IntDotTest, ExactOnUnitScalesAndExtremeQuants) {
  std::mt19937 rng(23);
  std::bernoulli_distribution coin(0.5);
  std::uniform_int_distribution<int> small_scale(0, 15), q6_scale(-4, 4);
  for (GgmlType type : kIntTypes) {
    const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
    const int64_t n = IsK(type) ? 256 : 128;  // sums stay below 2^24
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<uint8_t> row(RowBytes(type, n));
      for (size_t b = 0; b < row.size(); b += t.block_bytes) {
        uint8_t* block = row.data() + b;
        switch (type) {
          case GgmlType::kQ8_0:
            PutHalf(block, 1.0f);
            for (int j = 0; j < 32; ++j) block[2 + j] = coin(rng) ? 0x80 : 0x7F;
            break;
          case GgmlType::kQ4_0:
            PutHalf(block, 1.0f);
            for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>((coin(rng) ? 0x0F : 0) | (coin(rng) ? 0xF0 : 0));
            break;
          case GgmlType::kQ4_K:
            PutHalf(block, 1.0f);
            PutHalf(block + 2, 1.0f);
            // Scales and mins 0..15: the low 4 bits only, in every field.
            for (int j = 0; j < 12; ++j) block[4 + j] = static_cast<uint8_t>(small_scale(rng) | (small_scale(rng) << 4) * (j >= 8));
            for (int j = 0; j < 128; ++j) block[16 + j] = static_cast<uint8_t>((coin(rng) ? 0x0F : 0) | (coin(rng) ? 0xF0 : 0));
            break;
          default:  // Q6_K
            for (int j = 0; j < 192; ++j) block[j] = coin(rng) ? 0xFF : 0x00;
            for (int j = 0; j < 16; ++j) block[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(q6_scale(rng)));
            PutHalf(block + 208, 1.0f);
            break;
        }
      }
      std::vector<uint8_t> xq(ActivationRowBytes(type, n), 0);
      const int block_elems = IsK(type) ? 256 : 32, block_bytes = IsK(type) ? 292 : 34;
      for (int64_t b = 0; b < n / block_elems; ++b) {
        uint8_t* y = xq.data() + b * block_bytes;
        if (IsK(type)) {
          const float one = 1.0f;
          std::memcpy(y, &one, 4);
        } else {
          PutHalf(y, 1.0f);
        }
        uint8_t* qs = y + (IsK(type) ? 4 : 2);
        for (int j = 0; j < block_elems; ++j) qs[j] = static_cast<uint8_t>(static_cast<int8_t>(coin(rng) ? 127 : -127));
        if (IsK(type)) {
          for (int g = 0; g < 16; ++g) {
            int16_t s = 0;
            for (int j = 0; j < 16; ++j) s = static_cast<int16_t>(s + static_cast<int8_t>(qs[16 * g + j]));
            std::memcpy(y + 260 + 2 * g, &s, 2);
          }
        }
      }
      const float ref = DotRowInt8Reference(type, row.data(), xq.data(), n);
      ASSERT_EQ(ref, std::round(ref)) << TypeName(type);
      for (CpuLevel level : RunnableLevels()) {
        ScopedCpuLevel scoped(level);
        EXPECT_EQ(DotRowInt8(type, row.data(), xq.data(), n), ref)
            << TypeName(type) << " trial " << trial << " at " << CpuLevelName(level);
      }
    }
  }
}

// All weight scales zero: exactly zero at every level, whatever the quants.
// All activations zero: scale 0 and exactly zero too (no 0 * inf).
// Extreme scales: K-quant sub-scales at their limits (63, -128) within the
// random-block tolerance.
TEST(IntDotTest, AdversarialScales) {
  std::mt19937 rng(29);
  for (GgmlType type : kIntTypes) {
    const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
    const int64_t n = 3 * t.block_elements;
    std::vector<uint8_t> zero_scales = RandomRow(type, n, rng);
    std::vector<uint8_t> extreme = RandomRow(type, n, rng);
    for (size_t b = 0; b < zero_scales.size(); b += t.block_bytes) {
      switch (type) {
        case GgmlType::kQ8_0:
        case GgmlType::kQ4_0: std::memset(&zero_scales[b], 0, 2); break;
        case GgmlType::kQ4_K:
          std::memset(&zero_scales[b], 0, 4);
          std::memset(&extreme[b + 4], 0xFF, 12);  // every scale and min 63
          break;
        default:
          std::memset(&zero_scales[b + 208], 0, 2);
          std::memset(&extreme[b + 192], 0x80, 16);  // every scale -128
          break;
      }
    }
    const std::vector<uint8_t> xq = Quantized(type, RandomFloats(n, rng));
    const std::vector<uint8_t> xq_zero = Quantized(type, std::vector<float>(static_cast<size_t>(n), 0.0f));
    const float extreme_ref = DotRowInt8Reference(type, extreme.data(), xq.data(), n);
    const double extreme_tolerance = Tolerance(type, extreme, xq, n);
    EXPECT_EQ(DotRowInt8Reference(type, zero_scales.data(), xq.data(), n), 0.0f) << TypeName(type);
    for (CpuLevel level : RunnableLevels()) {
      ScopedCpuLevel scoped(level);
      const std::string what = TypeName(type) + " at " + std::string(CpuLevelName(level));
      EXPECT_EQ(DotRowInt8(type, zero_scales.data(), xq.data(), n), 0.0f) << what;
      EXPECT_EQ(DotRowInt8(type, extreme.data(), xq_zero.data(), n), 0.0f) << what;
      EXPECT_NEAR(DotRowInt8(type, extreme.data(), xq.data(), n), extreme_ref, extreme_tolerance) << what;
    }
  }
}

struct Matrix {
  std::vector<uint8_t> bytes;
  WeightMatrix w;
};

Matrix RandomMatrix(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  Matrix m;
  const size_t row_bytes = RowBytes(type, cols);
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> row = RandomRow(type, cols, rng);
    m.bytes.insert(m.bytes.end(), row.begin(), row.end());
  }
  m.w = WeightMatrix{.type = type, .data = m.bytes.data(), .rows = rows, .cols = cols, .row_bytes = row_bytes};
  return m;
}

// Row counts that are not multiples of the tiles (8; AMX: 16 weight rows by
// 16 activation rows) nor of a thread's chunk, and 1 (MatVec): every output equals DotRowInt8 of its row with its
// quantized activation row, bit for bit, at every row count (batch
// invariance: a token's result does not depend on its batch).
TEST(IntMatMulTest, EveryShapeLevelAndPoolEqualsDotRowInt8) {
  std::mt19937 rng(31);
  std::vector<std::unique_ptr<ThreadPool>> pools;
  pools.push_back(nullptr);
  pools.push_back(std::make_unique<ThreadPool>(2));
  pools.push_back(std::make_unique<ThreadPool>(3));
  for (GgmlType type : kIntTypes) {
    const int64_t cols = IsK(type) ? 768 : 544;
    const Matrix m = RandomMatrix(type, 37, cols, rng);
    for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{17}, int64_t{70}}) {
      const std::vector<float> x = RandomFloats(n * cols, rng, -2.0f, 2.0f);
      for (CpuLevel level : RunnableLevels()) {
        ScopedCpuLevel scoped(level);
        std::vector<float> expected(static_cast<size_t>(n * m.w.rows));
        for (int64_t i = 0; i < n; ++i) {
          const std::vector<uint8_t> xq =
              Quantized(type, std::vector<float>(x.begin() + i * cols, x.begin() + (i + 1) * cols));
          for (int64_t r = 0; r < m.w.rows; ++r) {
            const size_t at = static_cast<size_t>(i * m.w.rows + r);
            const std::vector<uint8_t> row(m.bytes.begin() + r * m.w.row_bytes,
                                           m.bytes.begin() + (r + 1) * m.w.row_bytes);
            expected[at] = DotRowInt8(type, row.data(), xq.data(), cols);
          }
        }
        for (const auto& pool : pools) {
          std::vector<float> y(static_cast<size_t>(n * m.w.rows), -1.0f);
          MatMul(m.w, x.data(), n, y.data(), pool.get(), MatMulPrecision::kInt8Activations);
          const std::string what = TypeName(type) + " n=" + std::to_string(n) + " at " +
                                   std::string(CpuLevelName(level)) +
                                   " threads=" + std::to_string(pool ? pool->size() : 0);
          EXPECT_EQ(y, expected) << what;
          if (n == 1) {
            std::vector<float> v(static_cast<size_t>(m.w.rows));
            MatVec(m.w, x.data(), v.data(), pool.get(), MatMulPrecision::kInt8Activations);
            EXPECT_EQ(v, expected) << TypeName(type) << " MatVec at " << CpuLevelName(level);
          }
        }
      }
    }
  }
}

// F32 and F16 take the exact float path, bit for bit (BF16 rounds its
// activations to bf16 instead: matmul_test.cpp).
// F32, and F16 below 16 rows (from there F16 takes AMX where there is one:
// matmul_test.cpp, as BF16).
TEST(IntMatMulTest, FloatTypesIgnoreTheInt8Precision) {
  std::mt19937 rng(37);
  ThreadPool pool(2);
  EXPECT_FALSE(HasIntegerDot(GgmlType::kBF16));
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16}) {
    EXPECT_FALSE(HasIntegerDot(type));
    const Matrix m = RandomMatrix(type, 19, 96, rng);
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{5}}) {
      const std::vector<float> x = RandomFloats(n * 96, rng);
      std::vector<float> exact(static_cast<size_t>(n * 19)), int8(static_cast<size_t>(n * 19));
      MatMul(m.w, x.data(), n, exact.data(), &pool, MatMulPrecision::kExactFloat);
      MatMul(m.w, x.data(), n, int8.data(), &pool, MatMulPrecision::kInt8Activations);
      EXPECT_EQ(exact, int8) << TypeName(type);
    }
  }
  for (GgmlType type : kIntTypes) EXPECT_TRUE(HasIntegerDot(type)) << TypeName(type);
}

TEST(IntDotDeathTest, TypesWithoutAnIntegerProductAndPartialBlocksAbort) {
  std::vector<uint8_t> bytes(1024);
  std::vector<float> x(512, 1.0f);
  EXPECT_DEATH(ActivationRowBytes(GgmlType::kF32, 32), "ActivationRowBytes: weight type F32 .* no integer product");
  EXPECT_DEATH(QuantizeActivationRow(GgmlType::kBF16, x.data(), bytes.data(), 32), "weight type BF16 .* no integer product");
  EXPECT_DEATH(QuantizeActivationRow(GgmlType::kQ4_K, x.data(), bytes.data(), 32), "32 elements of Q4_K.*multiple of 256");
  EXPECT_DEATH(DotRowInt8(GgmlType::kQ8_0, bytes.data(), bytes.data(), 48), "48 elements of Q8_0.*multiple of 32");
  EXPECT_DEATH(DotRowInt8Reference(GgmlType::kF16, bytes.data(), bytes.data(), 32), "F16 .* no integer product");
}

}  // namespace
}  // namespace kvstack::kernels
