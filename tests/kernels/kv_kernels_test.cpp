// Quantized KV heads: the store / load round trip of each type against its
// error bound, FP8 codes exhaustively, int4 K's requantization, and the
// attention kernels (scores, weighted sums) at every instruction-set level
// against the scalar reference (DequantizeKvRow, summed in double).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels_test_util.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using test_util::RandomFloats;
using test_util::RunnableLevels;
using test_util::ScopedCpuLevel;

constexpr KvDType kQuantized[] = {KvDType::kInt8, KvDType::kFp8E4M3, KvDType::kFp8E5M2, KvDType::kInt4};

struct Head {
  KvDType type;
  KvPart part;
  int B, D;
  std::vector<std::byte> bytes;
  Head(KvDType t, KvPart p, int b, int d) : type(t), part(p), B(b), D(d), bytes(KvHeadBytes(t, p, b, d)) {}
  void Store(int slot, const float* x) { QuantizeKvRow(type, part, bytes.data(), B, D, slot, x); }
  std::vector<float> Load(int slot) const {
    std::vector<float> out(static_cast<size_t>(D));
    DequantizeKvRow(type, part, bytes.data(), B, D, slot, out.data());
    return out;
  }
};

// Keys with an outlier channel, as real keys have (KIVI's observation).
std::vector<float> Row(std::mt19937& rng, int D, float outlier = 8.0f) {
  std::vector<float> x = RandomFloats(D, rng, -1.0f, 1.0f);
  x[static_cast<size_t>(D) / 3] *= outlier;
  return x;
}

TEST(KvLayoutTest, HeadBytesCountScales) {
  EXPECT_EQ(KvHeadBytes(KvDType::kF16, KvPart::kKey, 16, 128), 16u * 128 * 2);
  EXPECT_EQ(KvHeadBytes(KvDType::kFp8E4M3, KvPart::kValue, 16, 128), 16u * 128);
  EXPECT_EQ(KvHeadBytes(KvDType::kInt8, KvPart::kValue, 16, 128), 16u * 128 + 16 * 2 * 2);  // 2 groups of 64
  EXPECT_EQ(KvHeadBytes(KvDType::kInt8, KvPart::kValue, 16, 8), 16u * 8 + 16 * 2);          // one group per row
  EXPECT_EQ(KvHeadBytes(KvDType::kInt8, KvPart::kKey, 16, 128), 16u * 128 + 4 + 128);       // channel codes
  EXPECT_EQ(KvHeadBytes(KvDType::kInt4, KvPart::kKey, 16, 128), 16u * 64 + 4 + 128);
  EXPECT_EQ(KvHeadBytes(KvDType::kInt4, KvPart::kValue, 16, 128), 16u * 64 + 16 * 2 * 2);
  // The capacity the issue asks for at a real head size: int8 >= 1.9x and
  // int4 (K and V) >= 3.5x the tokens of f16 in the same bytes.
  for (int D : {64, 128}) {
    const double f16 = 2.0 * KvHeadBytes(KvDType::kF16, KvPart::kKey, 16, D);
    EXPECT_GE(f16 / double(KvHeadBytes(KvDType::kInt8, KvPart::kKey, 16, D) +
                           KvHeadBytes(KvDType::kInt8, KvPart::kValue, 16, D)),
              1.9)
        << D;
    EXPECT_GE(f16 / double(KvHeadBytes(KvDType::kInt4, KvPart::kKey, 16, D) +
                           KvHeadBytes(KvDType::kInt4, KvPart::kValue, 16, D)),
              3.5)
        << D;
  }
}

TEST(KvQuantTest, Fp8EveryCodeRoundTrips) {
  for (KvDType t : {KvDType::kFp8E4M3, KvDType::kFp8E5M2}) {
    const int max_code = t == KvDType::kFp8E4M3 ? 0x7e : 0x7b;
    for (int c = 0; c < 256; ++c) {
      if ((c & 0x7f) > max_code) continue;  // NaN / infinity codes are never stored
      Head h(t, KvPart::kKey, 1, 1);
      std::memcpy(h.bytes.data(), &c, 1);
      const float v = h.Load(0)[0];
      Head back(t, KvPart::kKey, 1, 1);
      back.Store(0, &v);
      EXPECT_EQ(std::to_integer<int>(back.bytes[0]), c) << KvDTypeName(t) << " code " << c << " value " << v;
    }
  }
  // Known values and saturation.
  Head h(KvDType::kFp8E4M3, KvPart::kKey, 1, 4);
  const float x[4] = {448.0f, 1e6f, -0.0625f, 0.001953125f};  // max, saturates, exact, smallest subnormal
  h.Store(0, x);
  EXPECT_THAT(h.Load(0), ::testing::ElementsAre(448.0f, 448.0f, -0.0625f, 0.001953125f));
  Head e5(KvDType::kFp8E5M2, KvPart::kKey, 1, 2);
  const float y[2] = {57344.0f, -1e9f};
  e5.Store(0, y);
  EXPECT_THAT(e5.Load(0), ::testing::ElementsAre(57344.0f, -57344.0f));
}

// Each stored value is within the type's step of the original.
TEST(KvQuantTest, RoundTripWithinOneStep) {
  std::mt19937 rng(5);
  for (int D : {8, 64, 128, 256}) {
    const int G = KvGroupSize(D);
    for (KvDType t : kQuantized) {
      for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
        const int B = 16;
        Head h(t, part, B, D);
        std::vector<std::vector<float>> rows;
        for (int s = 0; s < B; ++s) {
          rows.push_back(Row(rng, D));
          h.Store(s, rows.back().data());
        }
        for (int s = 0; s < B; ++s) {
          const std::vector<float> got = h.Load(s);
          for (int d = 0; d < D; ++d) {
            const float x = rows[s][d];
            float bound = 0;
            if (t == KvDType::kFp8E4M3) bound = std::max(std::fabs(x) / 16, 0x1p-10f);
            if (t == KvDType::kFp8E5M2) bound = std::max(std::fabs(x) / 8, 0x1p-17f);
            if (part == KvPart::kValue && (t == KvDType::kInt8 || t == KvDType::kInt4)) {
              float amax = 0;
              for (int e = d / G * G; e < (d / G + 1) * G; ++e) amax = std::max(amax, std::fabs(rows[s][e]));
              bound = amax / (t == KvDType::kInt8 ? 127 : 7) * 0.5f * 1.01f;
            }
            if (part == KvPart::kKey && (t == KvDType::kInt8 || t == KvDType::kInt4)) {
              // Channel scale over the block's tokens, grown geometrically
              // (at most 1.5x past the channel's need, requantizations
              // summing to 1.5 steps) and rounded up by the 8-bit code (up to
              // one unit of S, itself at most 1.5 * 1.5 the top channel's).
              float amax = 0, top = 0;
              for (int r = 0; r < B; ++r) amax = std::max(amax, std::fabs(rows[r][d]));
              for (int r = 0; r < B; ++r)
                for (int e = 0; e < D; ++e) top = std::max(top, std::fabs(rows[r][e]));
              const float L = t == KvDType::kInt8 ? 127 : 7;
              bound = 1.5f * (1.5f * amax / L + 2.25f * top / L / 255) * 1.01f;
            }
            ASSERT_LE(std::fabs(got[d] - x), bound + 1e-7f)
                << KvDTypeName(t) << (part == KvPart::kKey ? " K" : " V") << " D " << D << " slot " << s << " d " << d;
          }
        }
      }
    }
  }
}

// A whole head at once (what tiers converting full blocks use): channel
// keys take their scales from the whole block, so every value is within half
// a step of its channel's scale (no growth), the scale rounded up by its
// 8-bit code (at most one unit of S = top / L / 255); every other type stores
// the same bytes as row by row.
TEST(KvQuantTest, WholeHeadKeysWithinHalfAStepOfTheirChannel) {
  std::mt19937 rng(9);
  for (int D : {8, 64, 128}) {
    for (KvDType t : kQuantized) {
      for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
        const int B = 16;
        std::vector<float> rows;
        for (int s = 0; s < B; ++s) {
          const std::vector<float> r = Row(rng, D);
          rows.insert(rows.end(), r.begin(), r.end());
        }
        Head whole(t, part, B, D), by_row(t, part, B, D);
        QuantizeKvHead(t, part, whole.bytes.data(), B, D, rows.data());
        for (int s = 0; s < B; ++s) by_row.Store(s, rows.data() + static_cast<size_t>(s) * D);
        const bool channel = part == KvPart::kKey && (t == KvDType::kInt8 || t == KvDType::kInt4);
        if (!channel) {
          EXPECT_EQ(whole.bytes, by_row.bytes) << KvDTypeName(t) << " D " << D;
          continue;
        }
        const float L = t == KvDType::kInt8 ? 127 : 7;
        float top = 0;
        for (float x : rows) top = std::max(top, std::fabs(x));
        for (int d = 0; d < D; ++d) {
          float amax = 0;
          for (int r = 0; r < B; ++r) amax = std::max(amax, std::fabs(rows[static_cast<size_t>(r) * D + d]));
          const float bound = 0.5f * (amax / L + top / L / 255) * 1.01f + 1e-7f;
          for (int r = 0; r < B; ++r) {
            ASSERT_LE(std::fabs(whole.Load(r)[d] - rows[static_cast<size_t>(r) * D + d]), bound)
                << KvDTypeName(t) << " K D " << D << " slot " << r << " d " << d;
          }
        }
      }
    }
  }
  // All zeros: zero scales, zero values, nothing undefined.
  for (KvDType t : {KvDType::kInt8, KvDType::kInt4}) {
    Head h(t, KvPart::kKey, 16, 64);
    const std::vector<float> zeros(16 * 64, 0.0f);
    QuantizeKvHead(t, KvPart::kKey, h.bytes.data(), 16, 64, zeros.data());
    for (int s = 0; s < 16; ++s) EXPECT_THAT(h.Load(s), ::testing::Each(0.0f));
  }
}

// A token that fits the block's channel scales leaves the earlier tokens'
// bytes alone; one that does not requantizes them to wider scales.
TEST(KvQuantTest, Int4KeyRequantizesOnlyWhenAChannelGrows) {
  const int B = 4, D = 8;
  Head h(KvDType::kInt4, KvPart::kKey, B, D);
  const float a[D] = {1, -1, 0.5f, 0.25f, 1, 1, -1, 0};
  const float small[D] = {0.5f, 0.5f, 0.5f, 0.25f, 0, 0, 0, 0};
  const float big[D] = {4, 0, 0, 0, 0, 0, 0, 0};
  h.Store(0, a);
  const std::vector<std::byte> before(h.bytes.begin(), h.bytes.begin() + D / 2);
  h.Store(1, small);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), h.bytes.begin()));
  // Within half a step of each channel (steps of about 1/7 here, the 8-bit
  // channel codes rounding them up a little).
  EXPECT_THAT(h.Load(0), ::testing::Pointwise(::testing::FloatNear(0.08f), a));
  h.Store(2, big);
  // Only channel 0 grew: token 0's other channels keep their nibbles.
  EXPECT_NE(std::to_integer<int>(h.bytes[0]) & 15, std::to_integer<int>(before[0]) & 15);
  for (int i = 1; i < D / 2; ++i) EXPECT_EQ(h.bytes[i], before[i]) << i;
  EXPECT_NEAR(h.Load(2)[0], 4.0f, 4.0f / 7 / 2);
  // Channel 0's step is now about 4/7: token 0's 1.0 is within a step.
  EXPECT_NEAR(h.Load(0)[0], 1.0f, 4.0f / 7);
  EXPECT_THAT(h.Load(0), ::testing::Pointwise(::testing::FloatNear(0.08f), std::vector<float>{h.Load(0)[0], -1, 0.5f, 0.25f, 1, 1, -1, 0}));
}

double SumAbs(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::fabs(double(a[i]) * b[i]);
  return s;
}

TEST(KvKernelsTest, EveryLevelMatchesReference) {
  std::mt19937 rng(17);
  for (int D : {8, 32, 64, 96, 128, 256}) {
    for (int B : {1, 4, 16}) {
      for (KvDType t : kQuantized) {
        Head k(t, KvPart::kKey, B, D), v(t, KvPart::kValue, B, D);
        for (int s = 0; s < B; ++s) {
          k.Store(s, Row(rng, D).data());
          v.Store(s, Row(rng, D).data());
        }
        const std::vector<float> q = RandomFloats(D, rng);
        const std::vector<float> w = RandomFloats(B, rng, 0.0f, 1.0f);
        for (int len : {1, (B + 1) / 2, B}) {
          // The reference: dequantized rows, double sums.
          std::vector<double> want_scores(static_cast<size_t>(len)), want_out(static_cast<size_t>(D), 0.0);
          std::vector<double> score_tol(static_cast<size_t>(len)), out_tol(static_cast<size_t>(D), 0.0);
          for (int j = 0; j < len; ++j) {
            const std::vector<float> kr = k.Load(j), vr = v.Load(j);
            for (int d = 0; d < D; ++d) {
              want_scores[j] += double(q[d]) * kr[d];
              want_out[d] += double(w[j]) * vr[d];
              out_tol[d] += std::fabs(double(w[j]) * vr[d]);
            }
            score_tol[j] = SumAbs(q, kr);
          }
          for (kernels::CpuLevel level : RunnableLevels()) {
            ScopedCpuLevel scoped(level);
            std::vector<float> scores(static_cast<size_t>(len), -1.0f);
            std::vector<float> out(static_cast<size_t>(D), 0.25f);
            KvScores(t, k.bytes.data(), B, D, len, q.data(), scores.data());
            KvAccumulate(t, v.bytes.data(), B, D, len, w.data(), out.data());
            for (int j = 0; j < len; ++j) {
              ASSERT_NEAR(scores[j], want_scores[j], 2e-5 * (score_tol[j] + 1e-3))
                  << KvDTypeName(t) << " " << CpuLevelName(level) << " D " << D << " B " << B << " len " << len
                  << " j " << j;
            }
            for (int d = 0; d < D; ++d) {
              ASSERT_NEAR(out[d], 0.25 + want_out[d], 2e-5 * (out_tol[d] + 1.0))
                  << KvDTypeName(t) << " " << CpuLevelName(level) << " D " << D << " B " << B << " len " << len
                  << " d " << d;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvstack::kernels
