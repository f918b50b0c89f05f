// QuantizeRow: hand-computed blocks, round-trip error bounds on random rows,
// rounding of the 16-bit float formats, argument errors, and byte equality
// with the blocks llama-quantize wrote into the tinyq-a files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <vector>

#include "kernels/kernels_test_util.h"
#include "kvstack/gguf.h"
#include "kvstack/kernels.h"
#include "common/requirement.h"

namespace kvstack::kernels {
namespace {

using ::testing::HasSubstr;
using test_util::HalfBits;
using test_util::RowBytes;
using test_util::SharedPath;
using test_util::TypeName;

std::vector<uint8_t> Quantize(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> out(RowBytes(type, static_cast<int64_t>(x.size())));
  const Status s = QuantizeRow(type, x.data(), out.data(), static_cast<int64_t>(x.size()));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::vector<float> Dequantize(GgmlType type, const std::vector<uint8_t>& row, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  DequantizeRow(type, row.data(), y.data(), n);
  return y;
}

uint16_t Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

TEST(QuantizeTest, Q8_0HandComputed) {
  // amax 2 -> d = 2/127; q = round(x * 127/2), halves away from zero.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16) * 0.125f;
  const std::vector<uint8_t> q = Quantize(GgmlType::kQ8_0, x);
  EXPECT_EQ(Half(q.data()), HalfBits(2.0f / 127.0f));
  EXPECT_EQ(static_cast<int8_t>(q[2 + 0]), -127);
  EXPECT_EQ(static_cast<int8_t>(q[2 + 16]), 0);
  EXPECT_EQ(static_cast<int8_t>(q[2 + 17]), 8);    // 0.125 * 63.5 = 7.94
  EXPECT_EQ(static_cast<int8_t>(q[2 + 31]), 119);  // 1.875 * 63.5 = 119.06
}

TEST(QuantizeTest, Q4_0HandComputed) {
  // The largest magnitude, -1, maps to code 0 (q - 8 = -8): d = -1 / -8.
  std::vector<float> x(32, 0.0f);
  x[0] = -1.0f;
  x[1] = 0.5f;
  x[16] = 1.0f;  // +8 does not fit: clamped to code 15 (+7)
  x[17] = -0.3f;
  const std::vector<uint8_t> q = Quantize(GgmlType::kQ4_0, x);
  EXPECT_EQ(Half(q.data()), HalfBits(0.125f));
  EXPECT_EQ(q[2 + 0], 0x0f << 4 | 0);      // x[0] -> 0, x[16] -> 15
  EXPECT_EQ(q[2 + 1], (6 << 4) | 12);       // x[1] -> 12, x[17]: -2.4 + 8.5 = 6.1 -> 6
  EXPECT_EQ(q[2 + 2], (8 << 4) | 8);        // zeros -> 8
  const std::vector<float> y = Dequantize(GgmlType::kQ4_0, q, 32);
  EXPECT_EQ(y[0], -1.0f);
  EXPECT_EQ(y[1], 0.5f);
  EXPECT_EQ(y[16], 0.875f);
  EXPECT_EQ(y[17], -0.25f);
}

TEST(QuantizeTest, ZeroAndConstantRows) {
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    const std::vector<float> zeros(512, 0.0f);
    EXPECT_EQ(Dequantize(type, Quantize(type, zeros), 512), zeros) << TypeName(type);
    const std::vector<float> ones(512, 0.75f);
    const std::vector<float> y = Dequantize(type, Quantize(type, ones), 512);
    for (float v : y) ASSERT_NEAR(v, 0.75f, 0.75f * 0.02f) << TypeName(type);
  }
}

// Relative RMS error of a random normal row after the round trip, against a
// bound a little above what each format's bits allow.
TEST(QuantizeTest, RoundTripErrorIsSmall) {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Case {
    GgmlType type;
    double max_relative_rms;
  };
  for (const Case c : {Case{GgmlType::kF32, 0.0}, Case{GgmlType::kF16, 5e-4}, Case{GgmlType::kBF16, 4e-3},
                       Case{GgmlType::kQ8_0, 0.01}, Case{GgmlType::kQ6_K, 0.03}, Case{GgmlType::kQ4_K, 0.1},
                       Case{GgmlType::kQ4_0, 0.12}}) {
    for (int rep = 0; rep < 5; ++rep) {
      std::vector<float> x(1024);
      // Rows of different scales, some with all-positive groups (no min).
      const float scale = std::pow(10.0f, static_cast<float>(rep - 2));
      for (float& v : x) v = normal(rng) * scale + (rep == 4 ? 3.0f * scale : 0.0f);
      const std::vector<float> y = Dequantize(c.type, Quantize(c.type, x), 1024);
      double err = 0, energy = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        err += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
        energy += static_cast<double>(x[i]) * x[i];
      }
      EXPECT_LE(std::sqrt(err / energy), c.max_relative_rms) << TypeName(c.type) << " rep " << rep;
    }
  }
}

// Per-element bounds that follow from the formats: Q8_0 is within half a
// step (plus the scale's fp16 rounding), Q4_0 within one step (the extreme
// opposite the one mapped to -8 is clamped at +7).
TEST(QuantizeTest, PerElementBoundsForQ8_0AndQ4_0) {
  std::mt19937 rng(19);
  const std::vector<float> x = test_util::RandomFloats(32 * 200, rng, -3.0f, 3.0f);
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const std::vector<float> y = Dequantize(type, Quantize(type, x), static_cast<int64_t>(x.size()));
    for (size_t b = 0; b < x.size(); b += 32) {
      float amax = 0;
      for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
      const float step = type == GgmlType::kQ8_0 ? amax / 127 : amax / 8;
      const float bound = type == GgmlType::kQ8_0 ? 0.57f * step : 1.01f * step;
      for (size_t j = 0; j < 32; ++j) ASSERT_LE(std::fabs(y[b + j] - x[b + j]), bound) << TypeName(type) << b + j;
    }
  }
}

TEST(QuantizeTest, HalfRoundsToNearestEven) {
  EXPECT_EQ(HalfBits(1.0f), 0x3c00);
  EXPECT_EQ(HalfBits(1.0f + 0x1p-11f), 0x3c00);          // tie: to even (down)
  EXPECT_EQ(HalfBits(1.0f + 3 * 0x1p-11f), 0x3c02);      // tie: to even (up)
  EXPECT_EQ(HalfBits(65504.0f), 0x7bff);
  EXPECT_EQ(HalfBits(65519.0f), 0x7bff);
  EXPECT_EQ(HalfBits(65520.0f), 0x7c00);                 // tie with 2^16: infinity
  EXPECT_EQ(HalfBits(-1e10f), 0xfc00);
  EXPECT_EQ(HalfBits(0x1p-24f), 0x0001);
  EXPECT_EQ(HalfBits(0x1p-25f), 0x0000);                 // tie: to even (zero)
  EXPECT_EQ(HalfBits(0x1.8p-25f), 0x0001);
  EXPECT_EQ(HalfBits(0x1.ffcp-15f), 0x0400);             // tie: up to even, the smallest normal
  EXPECT_EQ(HalfBits(-0.0f), 0x8000);
  EXPECT_EQ(HalfBits(std::numeric_limits<float>::quiet_NaN()) & 0x7e00, 0x7e00);

  // Random floats: the result is a nearest half (checked in double).
  std::mt19937 rng(23);
  std::uniform_int_distribution<uint32_t> bits(0, 0x477fefff);  // below 65520 (rounds to infinity)
  for (int i = 0; i < 100000; ++i) {
    const float f = std::bit_cast<float>(bits(rng));
    const uint16_t h = HalfBits(f);
    std::vector<uint8_t> neighbours(6);
    const uint16_t around[3] = {static_cast<uint16_t>(h - (h > 0 ? 1 : 0)), h, static_cast<uint16_t>(h + 1)};
    std::memcpy(neighbours.data(), around, 6);
    float v[3];
    DequantizeRowReference(GgmlType::kF16, neighbours.data(), v, 3);
    const double e = std::fabs(static_cast<double>(v[1]) - f);
    ASSERT_LE(e, std::fabs(static_cast<double>(v[0]) - f)) << f;
    if (!std::isinf(v[2])) {
      ASSERT_LE(e, std::fabs(static_cast<double>(v[2]) - f)) << f;
    }
  }
}

TEST(QuantizeTest, Bf16RoundsToNearestEven) {
  uint16_t h;
  const auto bf = [&](float f) {
    EXPECT_TRUE(QuantizeRow(GgmlType::kBF16, &f, &h, 1).ok());
    return h;
  };
  EXPECT_EQ(bf(1.0f), 0x3f80);
  EXPECT_EQ(bf(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie: to even
  EXPECT_EQ(bf(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie: to even
  EXPECT_EQ(bf(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(bf(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(bf(std::numeric_limits<float>::quiet_NaN()) & 0x7fc0, 0x7fc0);
}

TEST(QuantizeTest, ArgumentErrors) {
  std::vector<float> x(64, 1.0f);
  std::vector<uint8_t> out(1024);
  Status s = QuantizeRow(GgmlType::kQ5_K, x.data(), out.data(), 256);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("type Q5_K is not supported"));
  s = QuantizeRow(GgmlType::kQ8_0, x.data(), out.data(), 33);
  EXPECT_THAT(s.message(), HasSubstr("33 elements of Q8_0: must be a non-negative multiple of 32"));
  s = QuantizeRow(GgmlType::kQ4_K, x.data(), out.data(), 64);
  EXPECT_THAT(s.message(), HasSubstr("multiple of 256"));
  x[5] = std::numeric_limits<float>::quiet_NaN();
  s = QuantizeRow(GgmlType::kQ4_0, x.data(), out.data(), 64);
  EXPECT_THAT(s.message(), HasSubstr("element 5 is nan; Q4_0 can only store finite values"));
  EXPECT_TRUE(QuantizeRow(GgmlType::kF16, x.data(), out.data(), 64).ok());  // F16 has NaN
}

// llama-quantize made the quantized tinyq-a files from tinyq-a-f32.gguf.
// Quantizing the F32 rows again must give the very same blocks.
class MatchesLlamaQuantizeTest : public ::testing::TestWithParam<const char*> {};

TEST_P(MatchesLlamaQuantizeTest, SameBytesAsTheFile) {
  const std::string f32_path = SharedPath("models/tinyq-a-f32.gguf");
  const std::string q_path = SharedPath(std::string("models/tinyq-a-") + GetParam() + ".gguf");
  if (!std::filesystem::exists(f32_path) || !std::filesystem::exists(q_path)) {
    KVSTACK_SKIP_MISSING() << "tinyq-a models are absent (shared test assets)";
  }
  auto f32 = GgufFile::Open(f32_path);
  auto quantized = GgufFile::Open(q_path);
  ASSERT_TRUE(f32.ok() && quantized.ok());
  int tensors = 0;
  for (const GgufTensorInfo& q : quantized->tensors()) {
    if (q.type == GgmlType::kF32) continue;
    auto source = f32->FindTensor(q.name);
    ASSERT_TRUE(source.ok()) << q.name;
    const int64_t n = static_cast<int64_t>(q.n_elements);
    std::vector<uint8_t> bytes(q.size_bytes);
    ASSERT_TRUE(QuantizeRow(q.type, reinterpret_cast<const float*>((*source)->data.data()), bytes.data(), n).ok());
    size_t differing = 0;
    for (size_t i = 0; i < bytes.size(); ++i) differing += bytes[i] != static_cast<uint8_t>(q.data[i]);
    EXPECT_EQ(differing, 0u) << GetParam() << " " << q.name << " (" << TypeName(q.type) << "): " << differing
                             << " of " << bytes.size() << " bytes differ";
    ++tensors;
  }
  EXPECT_EQ(tensors, 16);
}

INSTANTIATE_TEST_SUITE_P(TinyqA, MatchesLlamaQuantizeTest, ::testing::Values("q8_0", "q4_0", "q4_k_m", "q6_k"));

}  // namespace
}  // namespace kvstack::kernels
