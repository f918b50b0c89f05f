// The acceptance check: every tensor of ../shared/models/tinyq-a-*.gguf
// dequantizes to the sha256 recorded in ../shared/golden/tinyq-a_dequant.json
// (gguf-py's and ggml's own dequantizers, which agree bit for bit), with the
// scalar reference and with every instruction-set level. The hash covers the
// exact bytes, so the signs of zeros must match too.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/kernels_test_util.h"
#include "kvstack/gguf.h"
#include "kvstack/kernels.h"
#include "common/requirement.h"

namespace kvstack::kernels {
namespace {

using nlohmann::json;
using test_util::FirstBitDifference;
using test_util::RunnableLevels;
using test_util::ScopedCpuLevel;
using test_util::Sha256Hex;
using test_util::SharedPath;

#define SKIP_IF_ABSENT(path) \
  if (!std::filesystem::exists(path)) KVSTACK_SKIP_MISSING() << (path) << " is absent (shared test assets)"

json LoadGolden() {
  std::ifstream in(SharedPath("golden/tinyq-a_dequant.json"));
  return json::parse(in);
}

std::vector<uint8_t> FromHex(const std::string& hex) {
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return bytes;
}

// The whole tensor, row by row, with the given dequantizer.
template <typename Dequantize>
std::vector<float> DequantizeTensor(const GgufTensorInfo& t, Dequantize dequantize) {
  const int64_t cols = static_cast<int64_t>(t.dims[0]);
  const int64_t rows = static_cast<int64_t>(t.n_elements) / cols;
  const size_t row_bytes = t.size_bytes / static_cast<uint64_t>(rows);
  std::vector<float> out(t.n_elements);
  const auto* base = reinterpret_cast<const uint8_t*>(t.data.data());
  for (int64_t r = 0; r < rows; ++r) dequantize(t.type, base + r * row_bytes, out.data() + r * cols, cols);
  return out;
}

struct Counted {
  int64_t negative_zeros = 0;
  std::string canonical_hash;
};

Counted CountAndCanonicalize(std::vector<float> values) {
  Counted c;
  for (float& v : values) {
    if (v == 0.0f && std::signbit(v)) {
      ++c.negative_zeros;
      v = 0.0f;
    }
  }
  c.canonical_hash = Sha256Hex(values.data(), static_cast<int64_t>(values.size()));
  return c;
}

class GoldenDequantTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenDequantTest, EveryTensorHashesToTheGolden) {
  const std::string golden_path = SharedPath("golden/tinyq-a_dequant.json");
  SKIP_IF_ABSENT(golden_path);
  const json golden = LoadGolden();
  const json& entry = golden.at("files").at(GetParam());
  const std::string model_path = SharedPath("models/" + entry.at("file").get<std::string>());
  SKIP_IF_ABSENT(model_path);
  auto file = GgufFile::Open(model_path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();

  int checked = 0, with_negative_zeros = 0;
  for (const json& want : entry.at("all_tensors")) {
    const std::string name = want.at("name");
    SCOPED_TRACE(entry.at("file").get<std::string>() + " " + name);
    auto info = file->FindTensor(name);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    const GgufTensorInfo& t = **info;
    ASSERT_EQ(std::string(GetGgmlTypeTraits(t.type).name), want.at("type").get<std::string>());
    ASSERT_EQ(t.dims, want.at("ne").get<std::vector<uint64_t>>());
    ASSERT_TRUE(IsSupportedWeightType(t.type));

    const std::vector<float> ref = DequantizeTensor(t, DequantizeRowReference);
    const int64_t n = static_cast<int64_t>(ref.size());
    EXPECT_EQ(Sha256Hex(ref.data(), n), want.at("sha256_f32le").get<std::string>());
    const Counted counted = CountAndCanonicalize(ref);
    EXPECT_EQ(counted.negative_zeros, want.at("n_negative_zero").get<int64_t>());
    EXPECT_EQ(counted.canonical_hash, want.at("sha256_f32le_zero_canonical").get<std::string>());
    with_negative_zeros += counted.negative_zeros > 0;

    for (CpuLevel level : RunnableLevels()) {
      ScopedCpuLevel scoped(level);
      const std::vector<float> got = DequantizeTensor(t, DequantizeRow);
      EXPECT_EQ(FirstBitDifference(ref.data(), got.data(), n), -1) << "level " << CpuLevelName(level);
      EXPECT_EQ(Sha256Hex(got.data(), n), want.at("sha256_f32le").get<std::string>()) << CpuLevelName(level);
    }
    ++checked;
  }
  EXPECT_EQ(checked, 21);
  std::printf("%s: %d tensors match their sha256 (%d with -0.0 values)\n", GetParam().c_str(), checked,
              with_negative_zeros);
}

// The per-tensor details: the raw bytes of the first blocks are the file's,
// and they dequantize to the recorded values and bit patterns.
TEST_P(GoldenDequantTest, FirstBlocksDequantizeToTheRecordedValues) {
  const std::string golden_path = SharedPath("golden/tinyq-a_dequant.json");
  SKIP_IF_ABSENT(golden_path);
  const json golden = LoadGolden();
  const json& entry = golden.at("files").at(GetParam());
  const std::string model_path = SharedPath("models/" + entry.at("file").get<std::string>());
  SKIP_IF_ABSENT(model_path);
  auto file = GgufFile::Open(model_path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();

  for (const json& want : entry.at("tensors")) {
    const std::string name = want.at("name");
    SCOPED_TRACE(name);
    auto info = file->FindTensor(name);
    ASSERT_TRUE(info.ok());
    const std::vector<uint8_t> raw = FromHex(want.at("raw_blocks_hex"));
    ASSERT_LE(raw.size(), (*info)->data.size());
    EXPECT_EQ(std::memcmp(raw.data(), (*info)->data.data(), raw.size()), 0);

    std::vector<float> values(256);
    DequantizeRowReference((*info)->type, raw.data(), values.data(), 256);
    const auto& want_values = want.at("values_first_256");
    ASSERT_EQ(want_values.size(), 256u);
    for (size_t i = 0; i < 256; ++i) {
      const float expected = std::strtof(want_values[i].get<std::string>().c_str(), nullptr);
      EXPECT_EQ(std::bit_cast<uint32_t>(values[i]), std::bit_cast<uint32_t>(expected))
          << i << ": " << values[i] << " vs " << want_values[i];
    }
    const auto& bits = want.at("bits_first_64");
    for (size_t i = 0; i < bits.size(); ++i) {
      EXPECT_EQ(std::bit_cast<uint32_t>(values[i]), std::stoul(bits[i].get<std::string>(), nullptr, 16)) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TinyqA, GoldenDequantTest, ::testing::Values("q8_0", "q4_0", "q4_k_m", "q6_k"));

// tinyq-a-f32.gguf has no entry of its own in the golden file: its tensors
// are F32, so dequantizing must give back the stored bytes, and its norm
// vectors are the ones the quantized files store (and the golden hashes).
TEST(GoldenDequantF32Test, F32FileDequantizesToItsOwnBytes) {
  const std::string golden_path = SharedPath("golden/tinyq-a_dequant.json");
  const std::string model_path = SharedPath("models/tinyq-a-f32.gguf");
  SKIP_IF_ABSENT(golden_path);
  SKIP_IF_ABSENT(model_path);
  const json golden = LoadGolden();
  std::map<std::string, std::string> f32_hashes;
  for (const json& t : golden.at("files").at("q8_0").at("all_tensors")) {
    if (t.at("type") == "F32") f32_hashes[t.at("name")] = t.at("sha256_f32le");
  }
  auto file = GgufFile::Open(model_path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_EQ(file->tensors().size(), 21u);
  int norms = 0;
  for (const GgufTensorInfo& t : file->tensors()) {
    SCOPED_TRACE(t.name);
    ASSERT_EQ(t.type, GgmlType::kF32);
    for (CpuLevel level : RunnableLevels()) {
      ScopedCpuLevel scoped(level);
      const std::vector<float> got = DequantizeTensor(t, DequantizeRow);
      EXPECT_EQ(std::memcmp(got.data(), t.data.data(), t.size_bytes), 0) << CpuLevelName(level);
    }
    if (auto it = f32_hashes.find(t.name); it != f32_hashes.end()) {
      const std::vector<float> ref = DequantizeTensor(t, DequantizeRowReference);
      EXPECT_EQ(Sha256Hex(ref.data(), static_cast<int64_t>(ref.size())), it->second);
      ++norms;
    }
  }
  EXPECT_EQ(norms, 5);
}

}  // namespace
}  // namespace kvstack::kernels
