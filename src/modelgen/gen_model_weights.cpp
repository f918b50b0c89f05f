// FillWeights: the seeded value stream and its conversion to a tensor type.
#include "modelgen/gen_model_weights.h"

#include <bit>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "kvstack/kernels.h"

namespace kvstack::modelgen {
namespace {

// splitmix64 (Steele, Lea, Flood): one multiply-xorshift per value, and a good
// enough scrambler that consecutive seeds give unrelated streams.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

uint64_t StreamSeed(uint64_t seed, std::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a over the name
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  SplitMix64 mix(seed ^ h);
  return mix.Next();
}

// Irwin-Hall: the sum of four 16-bit uniforms is close to normal. Integer
// sums and one double multiply keep every platform bit-identical (no libm).
float NextNormal(SplitMix64& rng) {
  const uint64_t r = rng.Next();
  const int64_t sum = static_cast<int64_t>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
  // Mean 4 * 65535 / 2; standard deviation sqrt(4 * (65536^2 - 1) / 12).
  constexpr int64_t kMean = 2 * 65535;
  constexpr double kInvStddev = 1.0 / 37837.22668;
  return static_cast<float>(static_cast<double>(sum - kMean) * kInvStddev);
}

}  // namespace

uint16_t FloatToHalf(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504: infinity
  if (abs < 0x38800000u) {
    // A half subnormal (or zero): value / 2^-24, rounded to nearest even.
    const float scaled = std::bit_cast<float>(abs) * 0x1.0p24f;
    uint32_t q = static_cast<uint32_t>(scaled);
    const float rest = scaled - static_cast<float>(q);
    if (rest > 0.5f || (rest == 0.5f && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits.
  const uint32_t rebased = abs - ((127u - 15u) << 23);
  const uint32_t round = 0xFFFu + ((rebased >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rebased + round) >> 13));
}

uint16_t FloatToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  const uint32_t round = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + round) >> 16);
}

Status FillWeights(uint64_t seed, std::string_view name, const WeightInit& init, GgmlType type, int64_t row_elements,
                   int64_t rows, std::span<std::byte> out) {
  const GgmlTypeTraits& traits = GetGgmlTypeTraits(type);
  const size_t row_bytes = static_cast<size_t>(row_elements / traits.block_elements) * traits.block_bytes;
  SplitMix64 rng(StreamSeed(seed, name));
  std::vector<float> row(static_cast<size_t>(row_elements));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = init.mean + init.stddev * NextNormal(rng);
    std::byte* dst = out.data() + static_cast<size_t>(r) * row_bytes;
    switch (type) {
      case GgmlType::kF32:
        std::memcpy(dst, row.data(), row_bytes);
        break;
      case GgmlType::kF16:
      case GgmlType::kBF16:
        for (size_t i = 0; i < row.size(); ++i) {
          const uint16_t h = type == GgmlType::kF16 ? FloatToHalf(row[i]) : FloatToBf16(row[i]);
          std::memcpy(dst + 2 * i, &h, 2);
        }
        break;
      default:
        KVSTACK_RETURN_IF_ERROR(kernels::QuantizeRow(type, row.data(), dst, row_elements));
        break;
    }
  }
  return Status::Ok();
}

}  // namespace kvstack::modelgen
