// Dequantization: hand-built blocks with hand-computed values, every
// instruction-set level against the scalar reference bit for bit, the 16-bit
// float formats over all their bit patterns, and the run-time level switch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/blocks.h"
#include "kernels/kernels_test_util.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using test_util::FirstBitDifference;
using test_util::HalfBits;
using test_util::RandomRow;
using test_util::RunnableLevels;
using test_util::ScopedCpuLevel;
using test_util::SupportedTypes;
using test_util::TypeName;

uint32_t Bits(float f) { return std::bit_cast<uint32_t>(f); }

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = HalfBits(v);
  std::memcpy(p, &h, 2);
}

// Dequantizes with the reference and with every runnable level, checks they
// agree bit for bit, and returns the reference's values.
std::vector<float> DequantizeEverywhere(GgmlType type, const std::vector<uint8_t>& row, int64_t n) {
  std::vector<float> ref(static_cast<size_t>(n));
  DequantizeRowReference(type, row.data(), ref.data(), n);
  for (CpuLevel level : RunnableLevels()) {
    ScopedCpuLevel scoped(level);
    std::vector<float> got(static_cast<size_t>(n), 12345.0f);
    DequantizeRow(type, row.data(), got.data(), n);
    const int64_t diff = FirstBitDifference(ref.data(), got.data(), n);
    EXPECT_EQ(diff, -1) << TypeName(type) << " at level " << CpuLevelName(level) << ": element " << diff << " is "
                        << got[static_cast<size_t>(diff < 0 ? 0 : diff)] << ", reference "
                        << ref[static_cast<size_t>(diff < 0 ? 0 : diff)];
  }
  return ref;
}

// ---------------------------------------------------------------------------
// Hand-built blocks.

TEST(DequantizeTest, Q8_0BlockIsQuantTimesScale) {
  std::vector<uint8_t> block(34);
  PutHalf(block.data(), 0.5f);
  for (int j = 0; j < 32; ++j) block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(4 * j - 64));
  const std::vector<float> y = DequantizeEverywhere(GgmlType::kQ8_0, block, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * static_cast<float>(4 * j - 64)) << j;
  EXPECT_EQ(y[0], -32.0f);
  EXPECT_EQ(y[31], 30.0f);
}

TEST(DequantizeTest, Q4_0BlockIsNibbleMinusEightTimesScale) {
  std::vector<uint8_t> block(18);
  PutHalf(block.data(), -0.25f);
  // Element j is the low nibble of byte j, element j + 16 its high nibble.
  for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = DequantizeEverywhere(GgmlType::kQ4_0, block, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], static_cast<float>(j - 8) * -0.25f) << j;
    EXPECT_EQ(y[j + 16], static_cast<float>(7 - j) * -0.25f) << j + 16;
  }
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(y[16], -1.75f);
  // ggml's float(q - 8) * d: a zero quant times a negative scale is -0.0.
  EXPECT_EQ(Bits(y[8]), Bits(-0.0f));
}

TEST(DequantizeTest, Q4_KBlockUnpacksSixBitScalesAndMins) {
  std::vector<uint8_t> block(144);
  PutHalf(block.data(), 0.5f);
  PutHalf(block.data() + 2, 0.25f);
  // Scales and mins 4..7 exceed 15 so that their top two bits are used.
  const int sc[8] = {1, 2, 3, 63, 17, 33, 49, 60};
  const int m[8] = {5, 0, 62, 7, 20, 36, 52, 63};
  uint8_t* s = block.data() + 4;
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
  // Byte l of each 32-byte group: low nibble for sub-block 2g, high for 2g+1.
  uint8_t* qs = block.data() + 16;
  for (int i = 0; i < 128; ++i) qs[i] = static_cast<uint8_t>((i % 16) | ((15 - i % 16) << 4));
  const std::vector<float> y = DequantizeEverywhere(GgmlType::kQ4_K, block, 256);
  for (int i = 0; i < 256; ++i) {
    const int sub = i / 32, l = i % 32;
    const int q = sub % 2 == 0 ? l % 16 : 15 - l % 16;
    EXPECT_EQ(y[i], 0.5f * static_cast<float>(sc[sub]) * static_cast<float>(q) - 0.25f * static_cast<float>(m[sub]))
        << i;
  }
  EXPECT_EQ(y[0], -1.25f);  // sub-block 0: 0.5 * 1 * 0 - 0.25 * 5
  EXPECT_EQ(y[255], -15.75f);  // sub-block 7, q = 15 - 15: 0 - 0.25 * 63
  EXPECT_EQ(y[4 * 32 + 3], 20.5f);  // 0.5 * 17 * 3 - 0.25 * 20
}

TEST(DequantizeTest, Q6_KBlockCombinesLowAndHighBits) {
  std::vector<uint8_t> block(210, 0);
  const float d = -0.5f;
  PutHalf(block.data() + 208, d);
  int8_t scales[16];
  for (int g = 0; g < 16; ++g) scales[g] = static_cast<int8_t>(g == 3 || g == 6 || g == 12 ? -(5 * g) : 3 * g + 1);
  std::memcpy(block.data() + 192, scales, 16);
  // Element i of half h sits at position p = 32k + l (k = quarter): its low
  // nibble is in ql[64h + 32(k % 2) + l] (low half of the byte for k < 2),
  // its top two bits in qh[32h + l] at bits 2k..2k+1.
  int q[256];
  for (int i = 0; i < 256; ++i) {
    q[i] = (i * 7 + 3) % 64;
    const int h = i / 128, p = i % 128, k = p / 32, l = p % 32;
    uint8_t& low = block[static_cast<size_t>(64 * h + 32 * (k % 2) + l)];
    low = static_cast<uint8_t>(low | ((q[i] & 0xF) << (k < 2 ? 0 : 4)));
    block[static_cast<size_t>(128 + 32 * h + l)] |= static_cast<uint8_t>((q[i] >> 4) << (2 * k));
  }
  const std::vector<float> y = DequantizeEverywhere(GgmlType::kQ6_K, block, 256);
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(Bits(y[i]), Bits((d * scales[i / 16]) * static_cast<float>(q[i] - 32))) << i;
  }
  // q = 32 (zero) gives +0.0 where d * scale > 0 and -0.0 where it is < 0
  // (elements 59 and 123 are zeros of groups 3 and 7, with scales -15 and 22).
  ASSERT_EQ(q[59], 32);
  ASSERT_EQ(q[123], 32);
  EXPECT_EQ(Bits(y[59]), Bits(0.0f));
  EXPECT_EQ(Bits(y[123]), Bits(-0.0f));
}

TEST(DequantizeTest, F16AndBf16HandValues) {
  const uint16_t halves[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x3555};
  const float want_half[] = {1.0f, -2.0f, 0x1p-24f, 0x3ffp-24f, 0x1p-14f, 65504.0f,
                             std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                             -0.0f, 0x1.554p-2f};
  std::vector<uint8_t> row(sizeof halves);
  std::memcpy(row.data(), halves, sizeof halves);
  std::vector<float> y = DequantizeEverywhere(GgmlType::kF16, row, 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Bits(y[i]), Bits(want_half[i])) << i;

  const uint16_t bf[] = {0x3f80, 0xc0a0, 0x0001, 0x7f80, 0x8000};
  const float want_bf[] = {1.0f, -5.0f, std::bit_cast<float>(0x00010000u), std::numeric_limits<float>::infinity(),
                           -0.0f};
  row.assign(sizeof bf, 0);
  std::memcpy(row.data(), bf, sizeof bf);
  y = DequantizeEverywhere(GgmlType::kBF16, row, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Bits(y[i]), Bits(want_bf[i])) << i;
}

// ---------------------------------------------------------------------------
// Levels against the reference.

TEST(DequantizeTest, EveryLevelMatchesReferenceBitForBitOnRandomRows) {
  std::mt19937 rng(7);
  for (GgmlType type : SupportedTypes()) {
    const int64_t block = GetGgmlTypeTraits(type).block_elements;
    // Lengths that leave every tail of a 16-lane loop for the float types.
    for (int64_t blocks : {int64_t{1}, int64_t{3}, int64_t{8}, int64_t{37}}) {
      for (int rep = 0; rep < 4; ++rep) {
        const int64_t n = block == 1 ? blocks + 32 * rep : blocks * block;
        DequantizeEverywhere(type, RandomRow(type, n, rng), n);
      }
    }
  }
}

TEST(DequantizeTest, EveryF16AndBf16BitPattern) {
  std::vector<uint8_t> row(2 * 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    std::memcpy(row.data() + 2 * i, &h, 2);
  }
  for (GgmlType type : {GgmlType::kF16, GgmlType::kBF16}) {
    std::vector<float> ref(65536);
    DequantizeRowReference(type, row.data(), ref.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      const float v = ref[i];
      if (type == GgmlType::kBF16) {
        ASSERT_EQ(Bits(v), i << 16) << i;
        continue;
      }
      // Binary16: 1 sign, 5 exponent, 10 mantissa bits.
      const int e = static_cast<int>((i >> 10) & 31), mant = static_cast<int>(i & 1023);
      const double mag = e == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, e - 25);
      if (e == 31) {
        ASSERT_TRUE(mant == 0 ? std::isinf(v) : std::isnan(v)) << i;
      } else {
        ASSERT_EQ(static_cast<double>(v), (i & 0x8000) ? -mag : mag) << i;
        ASSERT_EQ(std::signbit(v), (i & 0x8000) != 0) << i;
      }
    }
    for (CpuLevel level : RunnableLevels()) {
      ScopedCpuLevel scoped(level);
      std::vector<float> got(65536);
      DequantizeRow(type, row.data(), got.data(), 65536);
      for (uint32_t i = 0; i < 65536; ++i) {
        // Hardware conversion may quiet a signalling NaN; a NaN stays a NaN.
        if (std::isnan(ref[i])) {
          ASSERT_TRUE(std::isnan(got[i])) << i;
        } else {
          ASSERT_EQ(Bits(got[i]), Bits(ref[i])) << TypeName(type) << " " << i << " at " << CpuLevelName(level);
        }
      }
    }
  }
}

TEST(DequantizeTest, ZeroElementsIsANoOp) {
  float sentinel = 3.0f;
  DequantizeRow(GgmlType::kQ4_K, nullptr, &sentinel, 0);
  EXPECT_EQ(sentinel, 3.0f);
}

TEST(DequantizeDeathTest, UnsupportedTypeAborts) {
  std::vector<uint8_t> block(176);
  std::vector<float> out(256);
  EXPECT_DEATH(DequantizeRow(GgmlType::kQ5_K, block.data(), out.data(), 256), "weight type Q5_K .* not supported");
}

TEST(DequantizeDeathTest, PartialBlockAborts) {
  std::vector<uint8_t> block(68);
  std::vector<float> out(64);
  EXPECT_DEATH(DequantizeRow(GgmlType::kQ8_0, block.data(), out.data(), 33), "33 elements of Q8_0.*multiple of 32");
  EXPECT_DEATH(DotRowReference(GgmlType::kQ6_K, block.data(), out.data(), 64), "64 elements of Q6_K.*multiple of 256");
}

// ---------------------------------------------------------------------------
// The level switch.

TEST(CpuLevelTest, NamesAndClamping) {
  EXPECT_EQ(CpuLevelName(CpuLevel::kPortable), "portable");
  EXPECT_EQ(CpuLevelName(CpuLevel::kAvx2), "avx2");
  EXPECT_EQ(CpuLevelName(CpuLevel::kAvx512), "avx512");
  EXPECT_EQ(CpuLevelName(CpuLevel::kAvx512Vnni), "avx512-vnni");
  EXPECT_EQ(CpuLevelName(CpuLevel::kAvx512Amx), "avx512-amx");
  const CpuLevel detected = DetectedCpuLevel();
  {
    ScopedCpuLevel scoped(CpuLevel::kPortable);
    EXPECT_EQ(ActiveCpuLevel(), CpuLevel::kPortable);
  }
  EXPECT_EQ(ActiveCpuLevel(), detected);
  SetCpuLevel(CpuLevel::kAvx512Amx);  // never above what the CPU has
  EXPECT_EQ(ActiveCpuLevel(), detected);
  std::printf("detected CPU level: %s\n", std::string(CpuLevelName(detected)).c_str());
}

TEST(CpuLevelTest, SupportedTypes) {
  for (GgmlType type : SupportedTypes()) EXPECT_TRUE(IsSupportedWeightType(type)) << TypeName(type);
  for (GgmlType type : {GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_K, GgmlType::kQ8_K, GgmlType::kQ2_K}) {
    EXPECT_FALSE(IsSupportedWeightType(type)) << TypeName(type);
  }
}

// The eight-at-once unpack of Q4_K's scales and mins that the integer tiles
// use agrees with GetScaleMinK4, which the reference and the quantizer use.
TEST(BlocksTest, ScalesMinsK4MatchesGetScaleMinK4) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 10000; ++trial) {
    uint8_t packed[12];
    for (uint8_t& b : packed) b = static_cast<uint8_t>(rng());
    uint64_t scales = 0, mins = 0;
    internal::ScalesMinsK4(packed, &scales, &mins);
    for (int j = 0; j < 8; ++j) {
      uint8_t sc = 0, m = 0;
      internal::GetScaleMinK4(j, packed, &sc, &m);
      ASSERT_EQ((scales >> (8 * j)) & 0xFF, sc) << "trial " << trial << " sub-block " << j;
      ASSERT_EQ((mins >> (8 * j)) & 0xFF, m) << "trial " << trial << " sub-block " << j;
    }
  }
}

}  // namespace
}  // namespace kvstack::kernels
