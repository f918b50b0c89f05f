#include "kernels/kernels_test_util.h"

#include <openssl/evp.h>

#include <bit>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace kvstack::kernels::test_util {

std::vector<CpuLevel> RunnableLevels() {
  std::vector<CpuLevel> levels;
  for (CpuLevel l : {CpuLevel::kPortable, CpuLevel::kAvx2, CpuLevel::kAvx512, CpuLevel::kAvx512Vnni,
                     CpuLevel::kAvx512Amx}) {
    if (l <= DetectedCpuLevel()) levels.push_back(l);
  }
  return levels;
}

std::vector<GgmlType> SupportedTypes() {
  return {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0,
          GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K};
}

std::string TypeName(GgmlType type) { return std::string(GetGgmlTypeTraits(type).name); }

size_t RowBytes(GgmlType type, int64_t n) {
  const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
  return static_cast<size_t>(n / t.block_elements) * t.block_bytes;
}

uint16_t HalfBits(float v) {
  uint16_t h;
  if (!QuantizeRow(GgmlType::kF16, &v, &h, 1).ok()) throw std::logic_error("F16 quantization failed");
  return h;
}

namespace {

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = HalfBits(v);
  std::memcpy(p, &h, 2);
}

}  // namespace

std::vector<uint8_t> RandomRow(GgmlType type, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(RowBytes(type, n));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  switch (type) {
    case GgmlType::kF32: {
      for (int64_t i = 0; i < n; ++i) {
        const float v = value(rng);
        std::memcpy(row.data() + 4 * i, &v, 4);
      }
      return row;
    }
    case GgmlType::kF16:
    case GgmlType::kBF16: {
      std::vector<float> v(static_cast<size_t>(n));
      for (float& f : v) f = value(rng);
      if (!QuantizeRow(type, v.data(), row.data(), n).ok()) throw std::logic_error("quantization failed");
      return row;
    }
    default: break;
  }
  for (uint8_t& b : row) b = static_cast<uint8_t>(byte(rng));
  const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
  for (size_t b = 0; b < row.size(); b += t.block_bytes) {
    uint8_t* block = row.data() + b;
    switch (type) {
      case GgmlType::kQ8_0:
      case GgmlType::kQ4_0: PutHalf(block, scale(rng)); break;
      case GgmlType::kQ4_K:
        PutHalf(block, scale(rng));
        PutHalf(block + 2, scale(rng));
        break;
      case GgmlType::kQ6_K: PutHalf(block + 208, scale(rng)); break;
      default: break;
    }
  }
  return row;
}

std::vector<float> RandomFloats(int64_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

int64_t FirstBitDifference(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return i;
  }
  return -1;
}

std::string Sha256Hex(const float* values, int64_t n) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(values, static_cast<size_t>(n) * sizeof(float), digest, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

std::string SharedPath(const std::string& relative) { return std::string(KVSTACK_SHARED_DIR) + "/" + relative; }

}  // namespace kvstack::kernels::test_util
