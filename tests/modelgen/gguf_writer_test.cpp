// GgufWriter tests: every value type and several tensor types round-trip
// through the reader; layout (alignment, padding, offsets); errors; and the
// atomic file write.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/gguf_writer.h"
#include "modelgen/temp_dir.h"

namespace kvstack {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::byte> Pattern(size_t n, int salt) {
  std::vector<std::byte> bytes(n);
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<std::byte>((i * 13 + static_cast<size_t>(salt)) & 0xFF);
  return bytes;
}

std::vector<std::byte> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

// One entry per GGUF value type, scalar and array.
std::vector<std::pair<std::string, GgufValue>> EveryValueType() {
  using S = GgufValue::Storage;
  return {
      {"t.u8", GgufValue(S(uint8_t{200}))},
      {"t.i8", GgufValue(S(int8_t{-100}))},
      {"t.u16", GgufValue(S(uint16_t{60000}))},
      {"t.i16", GgufValue(S(int16_t{-30000}))},
      {"t.u32", GgufValue(S(uint32_t{4000000000u}))},
      {"t.i32", GgufValue(S(int32_t{-2000000000}))},
      {"t.f32", GgufValue(S(1.5f))},
      {"t.bool", GgufValue(S(true))},
      {"t.string", GgufValue(S(std::string("h\xC3\xA9llo\0x", 8)))},
      {"t.u64", GgufValue(S(uint64_t{0xFEDCBA9876543210ull}))},
      {"t.i64", GgufValue(S(int64_t{-0x123456789ABCll}))},
      {"t.f64", GgufValue(S(-0.125))},
      {"a.u8", GgufValue(S(std::vector<uint8_t>{1, 2, 255}))},
      {"a.i8", GgufValue(S(std::vector<int8_t>{-1, 0, 127}))},
      {"a.u16", GgufValue(S(std::vector<uint16_t>{65535, 7}))},
      {"a.i16", GgufValue(S(std::vector<int16_t>{-32768, 5}))},
      {"a.u32", GgufValue(S(std::vector<uint32_t>{0, 0xFFFFFFFFu}))},
      {"a.i32", GgufValue(S(std::vector<int32_t>{-6, 6, 1 << 30}))},
      {"a.f32", GgufValue(S(std::vector<float>{0.25f, -3.0f, std::numeric_limits<float>::infinity()}))},
      {"a.bool", GgufValue(S(std::vector<bool>{true, false, true, true}))},
      {"a.string", GgufValue(S(std::vector<std::string>{"", "a", "\xE2\x96\x81the", std::string(300, 'z')}))},
      {"a.u64", GgufValue(S(std::vector<uint64_t>{1ull << 63}))},
      {"a.i64", GgufValue(S(std::vector<int64_t>{-1, 1}))},
      {"a.f64", GgufValue(S(std::vector<double>{1e300, -2.5}))},
      {"a.empty", GgufValue(S(std::vector<int32_t>{}))},
  };
}

TEST(GgufWriterTest, EveryValueTypeRoundTrips) {
  GgufWriter w;
  const auto values = EveryValueType();
  for (const auto& [key, value] : values) ASSERT_TRUE(w.Set(key, value).ok()) << key;
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(bytes->size(), w.FileSize());
  auto file = GgufFile::Parse(*bytes);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  ASSERT_EQ(file->metadata().size(), values.size() + 1);
  EXPECT_EQ(file->metadata()[0].key, "general.alignment");
  for (size_t i = 0; i < values.size(); ++i) {
    const GgufKeyValue& kv = file->metadata()[i + 1];
    EXPECT_EQ(kv.key, values[i].first);
    EXPECT_EQ(kv.value.TypeName(), values[i].second.TypeName()) << kv.key;
    EXPECT_TRUE(kv.value.storage() == values[i].second.storage()) << kv.key;
  }
  EXPECT_TRUE(file->tensors().empty());
}

TEST(GgufWriterTest, TypedSettersMatchTheReadersGetters) {
  GgufWriter w;
  ASSERT_TRUE(w.SetUint32("k.u32", 7).ok());
  ASSERT_TRUE(w.SetInt32("k.i32", -7).ok());
  ASSERT_TRUE(w.SetUint64("k.u64", 1ull << 40).ok());
  ASSERT_TRUE(w.SetFloat32("k.f32", 0.5f).ok());
  ASSERT_TRUE(w.SetBool("k.bool", false).ok());
  ASSERT_TRUE(w.SetString("k.str", "text").ok());
  ASSERT_TRUE(w.SetStringArray("k.strs", {"x", "yy"}).ok());
  ASSERT_TRUE(w.SetFloat32Array("k.f32s", {1.0f, 2.0f}).ok());
  ASSERT_TRUE(w.SetInt32Array("k.i32s", {3, -4}).ok());
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  auto f = GgufFile::Parse(*bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(*f->GetUint32("k.u32"), 7u);
  EXPECT_EQ(*f->GetUint64("k.u64"), 1ull << 40);
  EXPECT_EQ((*f->Find("k.i32"))->AsInt64().value(), -7);
  EXPECT_EQ(*f->GetFloat32("k.f32"), 0.5f);
  EXPECT_EQ(*f->GetBool("k.bool"), false);
  EXPECT_EQ(*f->GetString("k.str"), "text");
  EXPECT_THAT(*f->GetStringArray("k.strs"), ElementsAre("x", "yy"));
  EXPECT_THAT(*f->GetFloat32Array("k.f32s"), ElementsAre(1.0f, 2.0f));
  EXPECT_THAT(*f->GetInt32Array("k.i32s"), ElementsAre(3, -4));
}

TEST(GgufWriterTest, TensorsRoundTripAlignedAndPadded) {
  GgufWriter w;
  ASSERT_TRUE(w.SetString("general.architecture", "test").ok());
  // Sizes chosen so that every tensor needs padding after it.
  ASSERT_TRUE(w.AddTensor("a", {3}, GgmlType::kF32, Pattern(12, 1)).ok());           // 12 bytes
  ASSERT_TRUE(w.AddTensor("b", {32, 3}, GgmlType::kQ8_0, Pattern(3 * 34, 2)).ok());  // 102 bytes
  ASSERT_TRUE(w.AddTensor("c", {256, 1, 2}, GgmlType::kQ4_K, Pattern(2 * 144, 3)).ok());
  ASSERT_TRUE(w.AddTensor("d", {5, 1, 1, 2}, GgmlType::kF16, Pattern(20, 4)).ok());
  ASSERT_TRUE(w.AddTensor("e", {2}, GgmlType::kBF16, [](std::span<std::byte> out) {
                 EXPECT_EQ(out.size(), 4u);
                 for (std::byte& b : out) EXPECT_EQ(b, std::byte{0});  // handed over zeroed
                 out[0] = std::byte{0xAB};
                 return Status::Ok();
               }).ok());
  EXPECT_EQ(w.tensor_count(), 5u);
  EXPECT_EQ(w.tensor_bytes(), 12u + 102 + 288 + 20 + 4);
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->size(), w.FileSize());
  EXPECT_EQ(bytes->size() % 32, 0u);
  auto f = GgufFile::Parse(*bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->data_offset() % 32, 0u);
  ASSERT_EQ(f->tensors().size(), 5u);

  const std::vector<std::vector<std::byte>> expected = {Pattern(12, 1), Pattern(102, 2), Pattern(288, 3),
                                                        Pattern(20, 4)};
  const uint64_t offsets[] = {0, 32, 160, 448, 480};
  for (size_t i = 0; i < 5; ++i) {
    const GgufTensorInfo& t = f->tensors()[i];
    EXPECT_EQ(t.offset, offsets[i]) << t.name;
    EXPECT_EQ(t.file_offset % 32, 0u) << t.name;
    if (i < expected.size()) {
      EXPECT_TRUE(std::equal(t.data.begin(), t.data.end(), expected[i].begin(), expected[i].end())) << t.name;
    }
  }
  EXPECT_THAT(f->tensors()[2].dims, ElementsAre(256, 1, 2));
  EXPECT_EQ(f->tensors()[2].type, GgmlType::kQ4_K);
  EXPECT_THAT(f->tensors()[3].dims, ElementsAre(5, 1, 1, 2));
  EXPECT_EQ(f->tensors()[4].data[0], std::byte{0xAB});
  // Padding bytes are zero.
  const GgufTensorInfo& a = f->tensors()[0];
  for (uint64_t i = a.file_offset + 12; i < a.file_offset + 32; ++i) EXPECT_EQ((*bytes)[i], std::byte{0});
}

TEST(GgufWriterTest, OtherAlignments) {
  const std::pair<uint32_t, uint64_t> cases[] = {{1, 12}, {8, 16}, {64, 64}, {4096, 4096}};  // b's offset
  for (const auto& [alignment, b_offset] : cases) {
    GgufWriter w(alignment);
    ASSERT_TRUE(w.AddTensor("a", {3}, GgmlType::kF32, Pattern(12, 1)).ok());
    ASSERT_TRUE(w.AddTensor("b", {1}, GgmlType::kF32, Pattern(4, 2)).ok());
    auto bytes = w.Serialize();
    ASSERT_TRUE(bytes.ok());
    auto f = GgufFile::Parse(*bytes);
    ASSERT_TRUE(f.ok()) << alignment << ": " << f.status().ToString();
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->tensors()[1].offset, b_offset);
    EXPECT_EQ(f->tensors()[1].file_offset % alignment, 0u);
    EXPECT_EQ(bytes->size(), w.FileSize());
  }
}

TEST(GgufWriterTest, KeyErrors) {
  GgufWriter w;
  ASSERT_TRUE(w.SetUint32("a.b", 1).ok());
  Status dup = w.SetString("a.b", "again");
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(dup.message(), HasSubstr("'a.b'"));
  EXPECT_EQ(w.SetUint32("", 1).code(), StatusCode::kInvalidArgument);
  Status align = w.SetUint32("general.alignment", 64);
  EXPECT_EQ(align.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(align.message(), HasSubstr("set by the writer"));
}

TEST(GgufWriterTest, TensorErrors) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("x", {4}, GgmlType::kF32, Pattern(16, 0)).ok());
  EXPECT_EQ(w.AddTensor("x", {4}, GgmlType::kF32, Pattern(16, 0)).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(w.AddTensor("", {4}, GgmlType::kF32, Pattern(16, 0)).code(), StatusCode::kInvalidArgument);
  Status size = w.AddTensor("y", {4}, GgmlType::kF32, Pattern(15, 0));
  EXPECT_EQ(size.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(size.message(), HasSubstr("15 bytes given"));
  Status block = w.AddTensor("q", {48}, GgmlType::kQ8_0, Pattern(51, 0));
  EXPECT_EQ(block.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(block.message(), HasSubstr("tensor 'q'"));
  EXPECT_EQ(w.AddTensor("z", {}, GgmlType::kF32, Pattern(0, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("z", {1, 1, 1, 1, 1}, GgmlType::kF32, Pattern(4, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("z", {0}, GgmlType::kF32, Pattern(0, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("z", {4}, static_cast<GgmlType>(4), Pattern(16, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.tensor_count(), 1u);
}

TEST(GgufWriterTest, WriteFileMatchesSerialize) {
  TempDir dir;
  GgufWriter w;
  ASSERT_TRUE(w.SetString("general.name", "file").ok());
  ASSERT_TRUE(w.AddTensor("t", {8}, GgmlType::kF32, Pattern(32, 9)).ok());
  const std::string path = dir.File("model.gguf");
  ASSERT_TRUE(w.WriteFile(path).ok());
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(ReadAll(path), *bytes);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(*f->GetString("general.name"), "file");
  // Only the model is left in the folder: no temporary files.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(GgufWriterTest, WriteFileIntoAMissingFolderNamesIt) {
  TempDir dir;
  GgufWriter w;
  const std::string path = dir.File("no/such/folder/model.gguf");
  Status s = w.WriteFile(path);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("no/such/folder"));
}

TEST(GgufWriterTest, AFailedWriteLeavesTheOldFileAndNoTemporary) {
  TempDir dir;
  const std::string path = dir.File("model.gguf");
  GgufWriter good;
  ASSERT_TRUE(good.SetString("general.name", "old").ok());
  ASSERT_TRUE(good.WriteFile(path).ok());
  const std::vector<std::byte> before = ReadAll(path);

  GgufWriter bad;
  ASSERT_TRUE(bad.SetString("general.name", "new").ok());
  ASSERT_TRUE(bad.AddTensor("ok", {1}, GgmlType::kF32, Pattern(4, 0)).ok());
  ASSERT_TRUE(bad.AddTensor("broken", {1}, GgmlType::kF32, [](std::span<std::byte>) {
                   return DataLoss("generator gave up");
                 }).ok());
  Status s = bad.WriteFile(path);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("tensor 'broken': generator gave up"));
  EXPECT_EQ(ReadAll(path), before);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(GgufWriterTest, WriteFileReplacesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.File("model.gguf");
  for (const char* name : {"first", "second"}) {
    GgufWriter w;
    ASSERT_TRUE(w.SetString("general.name", name).ok());
    ASSERT_TRUE(w.WriteFile(path).ok());
  }
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f->GetString("general.name"), "second");
}

TEST(GgufWriterDeathTest, AlignmentMustBeAPowerOfTwo) {
  EXPECT_DEATH(GgufWriter(24), "alignment 24 is not a power of two");
}

}  // namespace
}  // namespace kvstack
