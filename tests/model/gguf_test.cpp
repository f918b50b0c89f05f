// GGUF reader tests: hand-built images (valid and malformed), then the real
// models and vocabularies under KVSTACK_SHARED_DIR.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "kvstack/gguf.h"
#include "common/requirement.h"

namespace kvstack {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// A tiny GGUF writer, just enough to build valid files and break them.

class Bytes {
 public:
  Bytes& U8(uint8_t v) { return Put(v); }
  Bytes& U32(uint32_t v) { return Put(v); }
  Bytes& I32(int32_t v) { return Put(v); }
  Bytes& U64(uint64_t v) { return Put(v); }
  Bytes& F32(float v) { return Put(v); }
  Bytes& F64(double v) { return Put(v); }
  Bytes& Str(std::string_view s) {
    U64(s.size());
    for (char c : s) data_.push_back(static_cast<std::byte>(c));
    return *this;
  }
  Bytes& Append(const Bytes& other) {
    data_.insert(data_.end(), other.data_.begin(), other.data_.end());
    return *this;
  }
  Bytes& PadTo(size_t size) {
    data_.resize(size, std::byte{0});
    return *this;
  }
  size_t size() const { return data_.size(); }
  const std::vector<std::byte>& data() const { return data_; }

 private:
  template <typename T>
  Bytes& Put(T v) {
    std::byte raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    data_.insert(data_.end(), raw, raw + sizeof(T));
    return *this;
  }
  std::vector<std::byte> data_;
};

constexpr uint32_t kTypeU32 = 4, kTypeI32 = 5, kTypeF32 = 6, kTypeBool = 7, kTypeString = 8, kTypeArray = 9,
                   kTypeU64 = 10, kTypeF64 = 12;
constexpr uint32_t kF32 = 0, kQ8_0 = 8, kQ4_K = 12;

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = kF32;
  uint64_t data_bytes = 0;            // bytes the builder writes for it
  std::optional<uint64_t> offset;     // default: packed after the previous tensor
  std::optional<uint32_t> n_dims;     // default: dims.size(); lets a test lie
};

struct Image {
  std::vector<std::byte> bytes;
  std::vector<uint64_t> kv_offsets;      // of each metadata entry
  std::vector<uint64_t> tensor_offsets;  // of each tensor description
  uint64_t data_offset = 0;

  std::span<const std::byte> span() const { return bytes; }
  // Overwrites a little-endian field in place.
  template <typename T>
  void Patch(uint64_t at, T v) {
    std::memcpy(bytes.data() + at, &v, sizeof(T));
  }
};

class GgufBuilder {
 public:
  GgufBuilder& Version(uint32_t v) { version_ = v; return *this; }
  GgufBuilder& Alignment(uint32_t a) { alignment_ = a; return KvU32("general.alignment", a); }

  GgufBuilder& Kv(std::string_view key, uint32_t type, const Bytes& value) {
    kv_offsets_.push_back(kv_.size());
    kv_.Str(key).U32(type).Append(value);
    ++kv_count_;
    return *this;
  }
  GgufBuilder& KvU32(std::string_view key, uint32_t v) { return Kv(key, kTypeU32, Bytes().U32(v)); }
  GgufBuilder& KvU64(std::string_view key, uint64_t v) { return Kv(key, kTypeU64, Bytes().U64(v)); }
  GgufBuilder& KvF32(std::string_view key, float v) { return Kv(key, kTypeF32, Bytes().F32(v)); }
  GgufBuilder& KvBool(std::string_view key, bool v) { return Kv(key, kTypeBool, Bytes().U8(v ? 1 : 0)); }
  GgufBuilder& KvStr(std::string_view key, std::string_view v) { return Kv(key, kTypeString, Bytes().Str(v)); }
  GgufBuilder& KvStrArray(std::string_view key, const std::vector<std::string>& v) {
    Bytes b;
    b.U32(kTypeString).U64(v.size());
    for (const auto& s : v) b.Str(s);
    return Kv(key, kTypeArray, b);
  }
  GgufBuilder& KvF32Array(std::string_view key, const std::vector<float>& v) {
    Bytes b;
    b.U32(kTypeF32).U64(v.size());
    for (float f : v) b.F32(f);
    return Kv(key, kTypeArray, b);
  }
  GgufBuilder& KvI32Array(std::string_view key, const std::vector<int32_t>& v) {
    Bytes b;
    b.U32(kTypeI32).U64(v.size());
    for (int32_t i : v) b.I32(i);
    return Kv(key, kTypeArray, b);
  }
  GgufBuilder& Tensor(TensorSpec spec) {
    tensors_.push_back(std::move(spec));
    return *this;
  }

  Image Build() const {
    Image image;
    Bytes out;
    out.U32(0x46554747u).U32(version_).U64(tensors_.size()).U64(kv_count_);  // "GGUF" little-endian
    for (uint64_t o : kv_offsets_) image.kv_offsets.push_back(out.size() + o);
    out.Append(kv_);
    std::vector<uint64_t> offsets;
    uint64_t next = 0;
    for (const TensorSpec& t : tensors_) {
      const uint64_t offset = t.offset.value_or(next);
      offsets.push_back(offset);
      next = AlignUp(offset + t.data_bytes);
      image.tensor_offsets.push_back(out.size());
      out.Str(t.name).U32(t.n_dims.value_or(static_cast<uint32_t>(t.dims.size())));
      for (uint64_t d : t.dims) out.U64(d);
      out.U32(t.type).U64(offset);
    }
    if (tensors_.empty()) {
      image.data_offset = AlignUp(out.size());
      image.bytes = out.data();
      return image;
    }
    image.data_offset = AlignUp(out.size());
    out.PadTo(image.data_offset);
    // Data: each tensor's bytes at its offset; the file ends right after the
    // last written byte, so that every shorter prefix is truncated.
    uint64_t end = image.data_offset;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (tensors_[i].data_bytes == 0) continue;
      end = std::max(end, image.data_offset + offsets[i] + tensors_[i].data_bytes);
    }
    out.PadTo(end);
    image.bytes = out.data();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      for (uint64_t b = 0; b < tensors_[i].data_bytes; ++b) {
        image.bytes[image.data_offset + offsets[i] + b] = static_cast<std::byte>((i * 31 + b * 7 + 1) & 0xff);
      }
    }
    return image;
  }

 private:
  uint64_t AlignUp(uint64_t v) const { return (v + alignment_ - 1) / alignment_ * alignment_; }

  uint32_t version_ = 3;
  uint32_t alignment_ = 32;
  Bytes kv_;
  uint64_t kv_count_ = 0;
  std::vector<uint64_t> kv_offsets_;
  std::vector<TensorSpec> tensors_;
};

// A small but complete llama model: every metadata type the reader handles,
// three tensors of two types.
GgufBuilder TinyLlama() {
  GgufBuilder b;
  b.KvStr("general.architecture", "llama")
      .KvStr("general.name", "tiny")
      .KvU32("llama.block_count", 2)
      .KvU32("llama.embedding_length", 32)
      .KvU32("llama.feed_forward_length", 64)
      .KvU32("llama.context_length", 128)
      .KvU32("llama.attention.head_count", 4)
      .KvU32("llama.attention.head_count_kv", 2)
      .KvF32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .KvU64("general.file_size_hint", 1234)
      .Kv("general.some_double", kTypeF64, Bytes().F64(0.5))
      .KvStr("tokenizer.ggml.model", "llama")
      .KvStrArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "b", "c"})
      .KvF32Array("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3})
      .KvI32Array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1})
      .KvU32("tokenizer.ggml.bos_token_id", 1)
      .KvU32("tokenizer.ggml.eos_token_id", 2)
      .KvU32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu)
      .KvBool("tokenizer.ggml.add_bos_token", true)
      .KvStr("tokenizer.chat_template", "{{ messages }}");
  b.Tensor({.name = "token_embd.weight", .dims = {32, 6}, .type = kF32, .data_bytes = 32 * 6 * 4});
  b.Tensor({.name = "output_norm.weight", .dims = {32}, .type = kF32, .data_bytes = 32 * 4});
  b.Tensor({.name = "blk.0.attn_q.weight", .dims = {256, 2}, .type = kQ4_K, .data_bytes = 2 * 144});
  return b;
}

Result<GgufFile> ParseImage(const Image& image) { return GgufFile::Parse(image.span()); }

// Matches a failed Result/Status whose code is `code` and whose message
// contains every one of `parts`.
MATCHER_P2(FailsWith, code, message_matcher, "") {
  const Status& s = arg.status();
  if (s.ok()) {
    *result_listener << "succeeded";
    return false;
  }
  *result_listener << "status is " << s.ToString();
  return s.code() == code && ::testing::Matches(message_matcher)(s.message());
}

// ---------------------------------------------------------------------------
// Type traits.

TEST(GgmlTypeTest, BlockGeometryMatchesGgml) {
  struct Expect {
    uint32_t id;
    std::string_view name;
    uint32_t elements, bytes;
  };
  const Expect expected[] = {{0, "F32", 1, 4},      {1, "F16", 1, 2},      {30, "BF16", 1, 2},
                             {2, "Q4_0", 32, 18},   {3, "Q4_1", 32, 20},   {6, "Q5_0", 32, 22},
                             {7, "Q5_1", 32, 24},   {8, "Q8_0", 32, 34},   {9, "Q8_1", 32, 36},
                             {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144},
                             {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}};
  for (const Expect& e : expected) {
    auto t = LookupGgmlType(e.id);
    ASSERT_TRUE(t.ok()) << e.name;
    EXPECT_EQ(static_cast<uint32_t>((*t)->type), e.id);
    EXPECT_EQ((*t)->name, e.name);
    EXPECT_EQ((*t)->block_elements, e.elements) << e.name;
    EXPECT_EQ((*t)->block_bytes, e.bytes) << e.name;
    EXPECT_EQ(&GetGgmlTypeTraits((*t)->type), *t);
  }
}

TEST(GgmlTypeTest, UnknownIdsAreErrors) {
  for (uint32_t id : {4u, 5u, 16u, 29u, 31u, 1000u, 0xFFFFFFFFu}) {
    EXPECT_THAT(LookupGgmlType(id),
                FailsWith(StatusCode::kInvalidArgument, HasSubstr("unknown ggml type id " + std::to_string(id))));
  }
}

TEST(GgmlTypeDeathTest, TraitsOfANonEnumeratorAbort) {
  EXPECT_DEATH(GetGgmlTypeTraits(static_cast<GgmlType>(4)), "4 is not a GgmlType enumerator");
}

TEST(GgmlTypeTest, TensorBytes) {
  const std::vector<uint64_t> embd = {256, 512};
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kF32, embd), 256u * 512 * 4);
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kQ8_0, embd), 512u * 8 * 34);
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kQ4_K, embd), 512u * 144);
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kQ6_K, embd), 512u * 210);
  const std::vector<uint64_t> vec = {7};
  EXPECT_EQ(*GgmlTensorBytes(GgmlType::kBF16, vec), 14u);

  const std::vector<uint64_t> ragged = {100, 2};
  EXPECT_THAT(GgmlTensorBytes(GgmlType::kQ4_K, ragged),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("ne[0] = 100 is not a multiple of Q4_K's block size 256")));
  const std::vector<uint64_t> huge = {uint64_t{1} << 40, uint64_t{1} << 30};
  EXPECT_THAT(GgmlTensorBytes(GgmlType::kF32, huge), FailsWith(StatusCode::kInvalidArgument, HasSubstr("overflow")));
  const std::vector<uint64_t> bytes_overflow = {uint64_t{1} << 62};
  EXPECT_THAT(GgmlTensorBytes(GgmlType::kF32, bytes_overflow),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("overflow")));
  const std::vector<uint64_t> zero = {32, 0};
  EXPECT_THAT(GgmlTensorBytes(GgmlType::kF32, zero), FailsWith(StatusCode::kInvalidArgument, HasSubstr("ne[1] is 0")));
  EXPECT_THAT(GgmlTensorBytes(GgmlType::kF32, std::span<const uint64_t>()),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("0 dimensions")));
}

// ---------------------------------------------------------------------------
// Valid images.

TEST(GgufParseTest, ReadsEverySection) {
  const Image image = TinyLlama().Build();
  auto file = ParseImage(image);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  EXPECT_EQ(file->data_offset(), image.data_offset);
  EXPECT_EQ(file->metadata().size(), 20u);
  EXPECT_EQ(file->metadata()[0].key, "general.architecture");
  EXPECT_EQ(file->metadata()[3].offset, image.kv_offsets[3]);

  EXPECT_EQ(*file->GetString("general.architecture"), "llama");
  EXPECT_EQ(*file->GetUint32("llama.block_count"), 2u);
  EXPECT_EQ(*file->GetUint64("general.file_size_hint"), 1234u);
  EXPECT_EQ(*file->GetUint32("general.file_size_hint"), 1234u);  // uint64 that fits
  EXPECT_FLOAT_EQ(*file->GetFloat32("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_FLOAT_EQ(*file->GetFloat32("general.some_double"), 0.5f);
  EXPECT_TRUE(*file->GetBool("tokenizer.ggml.add_bos_token"));
  EXPECT_THAT(*file->GetStringArray("tokenizer.ggml.tokens"), ElementsAre("<unk>", "<s>", "</s>", "a", "b", "c"));
  EXPECT_THAT(*file->GetFloat32Array("tokenizer.ggml.scores"), ElementsAre(0, 0, 0, -1, -2, -3));
  EXPECT_THAT(*file->GetInt32Array("tokenizer.ggml.token_type"), ElementsAre(2, 3, 3, 1, 1, 1));
  EXPECT_EQ(*file->GetUint32Or("llama.expert_count", 7), 7u);
  EXPECT_FLOAT_EQ(*file->GetFloat32Or("llama.rope.freq_base", 10000.0f), 10000.0f);
  EXPECT_FALSE(*file->GetBoolOr("tokenizer.ggml.add_eos_token", false));

  ASSERT_EQ(file->tensors().size(), 3u);
  const GgufTensorInfo& q = file->tensors()[2];
  EXPECT_EQ(q.name, "blk.0.attn_q.weight");
  EXPECT_EQ(q.type, GgmlType::kQ4_K);
  EXPECT_THAT(q.dims, ElementsAre(256, 2));
  EXPECT_EQ(q.n_elements, 512u);
  EXPECT_EQ(q.size_bytes, 288u);
  EXPECT_EQ(q.info_offset, image.tensor_offsets[2]);
  EXPECT_EQ(q.offset % 32, 0u);
  EXPECT_EQ(q.file_offset, image.data_offset + q.offset);
  EXPECT_EQ(q.data.data(), image.bytes.data() + q.file_offset);
  EXPECT_EQ(q.data.size(), 288u);
  auto found = file->FindTensor("output_norm.weight");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->dims, std::vector<uint64_t>{32});
  EXPECT_EQ((*found)->data.size(), 128u);
}

TEST(GgufParseTest, VersionsTwoAndThreeAreRead) {
  for (uint32_t v : {2u, 3u}) {
    auto file = ParseImage(TinyLlama().Version(v).Build());
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_EQ(file->version(), v);
  }
}

TEST(GgufParseTest, OtherVersionsAreRejected) {
  EXPECT_THAT(ParseImage(TinyLlama().Version(1).Build()),
              FailsWith(StatusCode::kInvalidArgument, AllOf(HasSubstr("version 1 at offset 4"), HasSubstr("2 and 3"))));
  EXPECT_THAT(ParseImage(TinyLlama().Version(4).Build()),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("version 4 at offset 4 is not supported")));
  EXPECT_THAT(ParseImage(TinyLlama().Version(0x03000000).Build()),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("big-endian")));
}

TEST(GgufParseTest, CustomAlignmentIsHonoured) {
  GgufBuilder b;
  b.Alignment(64);
  b.Tensor({.name = "a", .dims = {3}, .data_bytes = 12});
  b.Tensor({.name = "b", .dims = {5}, .data_bytes = 20});
  const Image image = b.Build();
  auto file = ParseImage(image);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->alignment(), 64u);
  EXPECT_EQ(file->data_offset() % 64, 0u);
  EXPECT_EQ(file->tensors()[1].offset, 64u);
}

TEST(GgufParseTest, FileWithoutTensorsMayEndBeforeTheDataSection) {
  GgufBuilder b;
  b.KvStr("general.architecture", "llama").KvStr("tokenizer.ggml.model", "gpt2");
  const Image image = b.Build();
  ASSERT_NE(image.bytes.size() % 32, 0u) << "the image should end unaligned for this test to mean anything";
  auto file = ParseImage(image);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_TRUE(file->tensors().empty());
}

TEST(GgufParseTest, MovingKeepsViewsValid) {
  const Image image = TinyLlama().Build();
  auto parsed = ParseImage(image);
  ASSERT_TRUE(parsed.ok());
  auto tokens = parsed->GetStringArray("tokenizer.ggml.tokens");
  auto name = parsed->GetString("general.name");
  GgufFile moved = std::move(parsed).value();
  GgufFile target = std::move(moved);
  EXPECT_EQ(tokens->data(), target.GetStringArray("tokenizer.ggml.tokens")->data());
  EXPECT_EQ(*name, "tiny");
  EXPECT_EQ(name->data(), target.GetString("general.name")->data());
}

// ---------------------------------------------------------------------------
// Getters: missing keys and wrong types name the key and its offset.

TEST(GgufGetterTest, ErrorsNameKeyOffsetAndTypes) {
  const Image image = TinyLlama().Build();
  auto file = ParseImage(image);
  ASSERT_TRUE(file.ok());
  const std::string arch_at = "(at offset " + std::to_string(image.kv_offsets[0]) + ")";
  EXPECT_THAT(file->GetUint32("general.architecture"),
              FailsWith(StatusCode::kInvalidArgument,
                        AllOf(HasSubstr("'general.architecture'"), HasSubstr(arch_at),
                              HasSubstr("expected an unsigned integer, found string"))));
  EXPECT_THAT(file->GetString("llama.block_count"),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("expected string, found uint32")));
  EXPECT_THAT(file->GetFloat32Array("tokenizer.ggml.tokens"),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("expected array of float32, found array of 6 string")));
  EXPECT_THAT(file->GetInt32Array("tokenizer.ggml.scores"),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("found array of 6 float32")));
  EXPECT_THAT(file->GetBool("llama.block_count"), FailsWith(StatusCode::kInvalidArgument, HasSubstr("expected bool")));
  EXPECT_THAT(file->GetUint32("nope.key"), FailsWith(StatusCode::kNotFound, HasSubstr("'nope.key' not found")));
  EXPECT_THAT(file->GetUint32Or("general.name", 3), FailsWith(StatusCode::kInvalidArgument, HasSubstr("general.name")));
  EXPECT_THAT(file->FindTensor("missing.weight"), FailsWith(StatusCode::kNotFound, HasSubstr("'missing.weight'")));
  EXPECT_THAT(file->Find("nope"), FailsWith(StatusCode::kNotFound, HasSubstr("'nope'")));
}

TEST(GgufGetterTest, IntegerConversionsCheckRange) {
  GgufBuilder b;
  b.KvU64("big", uint64_t{1} << 40).Kv("negative", kTypeI32, Bytes().I32(-1)).Kv("small", kTypeI32, Bytes().I32(9));
  auto file = ParseImage(b.Build());
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(*file->GetUint64("big"), uint64_t{1} << 40);
  EXPECT_THAT(file->GetUint32("big"),
              FailsWith(StatusCode::kInvalidArgument, AllOf(HasSubstr("'big'"), HasSubstr("does not fit in uint32"))));
  EXPECT_THAT(file->GetUint32("negative"), FailsWith(StatusCode::kInvalidArgument, HasSubstr("int32 -1")));
  EXPECT_EQ(*file->GetUint32("small"), 9u);
  EXPECT_EQ(*(*file->Find("negative"))->AsInt64(), -1);
}

// ---------------------------------------------------------------------------
// Malformed images: each a clean error naming the place.

TEST(GgufMalformedTest, EveryTruncationIsACleanError) {
  const Image image = TinyLlama().Build();
  ASSERT_TRUE(ParseImage(image).ok());
  for (size_t len = 0; len < image.bytes.size(); ++len) {
    // A fresh heap copy per prefix, so AddressSanitizer sees any read past it.
    std::vector<std::byte> prefix(image.bytes.begin(), image.bytes.begin() + static_cast<ptrdiff_t>(len));
    auto file = GgufFile::Parse(prefix);
    ASSERT_FALSE(file.ok()) << "a " << len << "-byte prefix parsed";
    EXPECT_EQ(file.status().code(), StatusCode::kDataLoss) << len << ": " << file.status().ToString();
    EXPECT_THAT(file.status().message(), HasSubstr("offset")) << len;
  }
}

TEST(GgufMalformedTest, TruncationNamesTheKeyOrTensor) {
  const Image image = TinyLlama().Build();
  // Cut inside the token list: the message names the key, the element and where the entry starts.
  const uint64_t tokens_at = image.kv_offsets[12];
  std::vector<std::byte> cut(image.bytes.begin(), image.bytes.begin() + static_cast<ptrdiff_t>(tokens_at + 60));
  EXPECT_THAT(GgufFile::Parse(cut),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'tokenizer.ggml.tokens'"),
                                                     HasSubstr("at offset " + std::to_string(tokens_at)),
                                                     HasSubstr("element"))));
  // Cut inside the last tensor's data.
  std::vector<std::byte> short_data(image.bytes.begin(), image.bytes.end() - 1);
  EXPECT_THAT(GgufFile::Parse(short_data),
              FailsWith(StatusCode::kDataLoss,
                        AllOf(HasSubstr("'blk.0.attn_q.weight'"),
                              HasSubstr("info at offset " + std::to_string(image.tensor_offsets[2])),
                              HasSubstr("past the end of the file"))));
}

TEST(GgufMalformedTest, NotGguf) {
  std::string text = "GGML this is not it at all, really";
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(text.data()), text.size());
  EXPECT_THAT(GgufFile::Parse(bytes), FailsWith(StatusCode::kDataLoss, HasSubstr("not a GGUF file")));
  EXPECT_THAT(GgufFile::Parse({}), FailsWith(StatusCode::kDataLoss, HasSubstr("header")));
}

TEST(GgufMalformedTest, AbsurdCounts) {
  Image image = TinyLlama().Build();
  image.Patch<uint64_t>(16, uint64_t{1} << 60);  // kv_count
  EXPECT_THAT(ParseImage(image), FailsWith(StatusCode::kDataLoss,
                                           AllOf(HasSubstr("kv_count 1152921504606846976 at offset 16"),
                                                 HasSubstr("impossible"))));
  image = TinyLlama().Build();
  image.Patch<uint64_t>(8, ~uint64_t{0});  // tensor_count
  EXPECT_THAT(ParseImage(image), FailsWith(StatusCode::kDataLoss, HasSubstr("tensor_count 18446744073709551615 at offset 8")));
  image = TinyLlama().Build();
  image.Patch<uint64_t>(8, 400);  // more tensors than the table can hold, fewer than the header check catches
  EXPECT_THAT(ParseImage(image), FailsWith(StatusCode::kDataLoss, HasSubstr("tensor_count 400")));
}

TEST(GgufMalformedTest, AbsurdStringLength) {
  Image image = TinyLlama().Build();
  const uint64_t key_at = image.kv_offsets[1];
  image.Patch<uint64_t>(key_at, uint64_t{1} << 62);  // the key "general.name"
  EXPECT_THAT(ParseImage(image),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("metadata entry 1 of 20 at offset " + std::to_string(key_at)),
                                                     HasSubstr("claims 4611686018427387904 bytes"))));
  // The value of general.name: key length (8) + key (12) + type (4).
  image = TinyLlama().Build();
  image.Patch<uint64_t>(key_at + 8 + 12 + 4, uint64_t{1} << 62);
  EXPECT_THAT(ParseImage(image), FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'general.name'"),
                                                                        HasSubstr("string value"),
                                                                        HasSubstr("4611686018427387904"))));
}

TEST(GgufMalformedTest, AbsurdArrayLength) {
  Image image = TinyLlama().Build();
  // tokens: key length (8) + "tokenizer.ggml.tokens" (21) + type (4) + element type (4), then the count.
  const uint64_t count_at = image.kv_offsets[12] + 8 + 21 + 4 + 4;
  image.Patch<uint64_t>(count_at, uint64_t{1} << 61);
  EXPECT_THAT(ParseImage(image), FailsWith(StatusCode::kDataLoss,
                                           AllOf(HasSubstr("'tokenizer.ggml.tokens'"),
                                                 HasSubstr("array length 2305843009213693952 at offset " +
                                                           std::to_string(count_at)),
                                                 HasSubstr("impossible"))));
  // Same for a fixed-size element type.
  image = TinyLlama().Build();
  const uint64_t scores_count_at = image.kv_offsets[13] + 8 + 21 + 4 + 4;
  image.Patch<uint64_t>(scores_count_at, ~uint64_t{0});
  EXPECT_THAT(ParseImage(image),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'tokenizer.ggml.scores'"), HasSubstr("impossible"))));
}

TEST(GgufMalformedTest, UnknownValueType) {
  GgufBuilder b;
  b.KvStr("general.architecture", "llama").Kv("weird.key", 13, Bytes().U32(0));
  const Image image = b.Build();
  const uint64_t type_at = image.kv_offsets[1] + 8 + 9;
  EXPECT_THAT(ParseImage(image),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'weird.key'"),
                                                     HasSubstr("unknown value type 13 at offset " + std::to_string(type_at)))));
  GgufBuilder arr;
  arr.Kv("weird.array", kTypeArray, Bytes().U32(99).U64(1).U32(0));
  EXPECT_THAT(ParseImage(arr.Build()),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'weird.array'"), HasSubstr("unknown value type 99"))));
  GgufBuilder nested;
  nested.Kv("nested", kTypeArray, Bytes().U32(kTypeArray).U64(0));
  EXPECT_THAT(ParseImage(nested.Build()),
              FailsWith(StatusCode::kInvalidArgument, AllOf(HasSubstr("'nested'"), HasSubstr("nested arrays"))));
}

TEST(GgufMalformedTest, BadBool) {
  GgufBuilder b;
  b.Kv("flag", kTypeBool, Bytes().U8(7));
  EXPECT_THAT(ParseImage(b.Build()), FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'flag'"), HasSubstr("holds 7"))));
}

TEST(GgufMalformedTest, DuplicateKey) {
  GgufBuilder b;
  b.KvU32("llama.block_count", 2).KvU32("llama.block_count", 3);
  const Image image = b.Build();
  EXPECT_THAT(ParseImage(image),
              FailsWith(StatusCode::kDataLoss,
                        AllOf(HasSubstr("'llama.block_count' (entry 1, at offset " + std::to_string(image.kv_offsets[1])),
                              HasSubstr("duplicate key"), HasSubstr("offset " + std::to_string(image.kv_offsets[0])))));
}

TEST(GgufMalformedTest, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    GgufBuilder b;
    b.KvU32("general.alignment", a);
    EXPECT_THAT(ParseImage(b.Build()),
                FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'general.alignment'"), HasSubstr("power of two"))))
        << a;
  }
  GgufBuilder typed;
  typed.KvStr("general.alignment", "32");
  EXPECT_THAT(ParseImage(typed.Build()), FailsWith(StatusCode::kDataLoss, HasSubstr("'general.alignment'")));
}

TEST(GgufMalformedTest, TooManyDimensions) {
  GgufBuilder b;
  b.Tensor({.name = "five.d", .dims = {1, 1, 1, 1, 1}, .data_bytes = 4});
  const Image image = b.Build();
  EXPECT_THAT(ParseImage(image), FailsWith(StatusCode::kDataLoss,
                                           AllOf(HasSubstr("'five.d'"),
                                                 HasSubstr("info at offset " + std::to_string(image.tensor_offsets[0])),
                                                 HasSubstr("n_dims 5"), HasSubstr("must be 1 to 4"))));
  GgufBuilder zero;
  zero.Tensor({.name = "zero.d", .dims = {}, .data_bytes = 4});
  EXPECT_THAT(ParseImage(zero.Build()), FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'zero.d'"), HasSubstr("n_dims 0"))));
}

TEST(GgufMalformedTest, UnknownTensorType) {
  GgufBuilder b;
  b.Tensor({.name = "ok", .dims = {8}, .data_bytes = 32});
  b.Tensor({.name = "strange.weight", .dims = {32}, .type = 4, .data_bytes = 32});
  const Image image = b.Build();
  EXPECT_THAT(ParseImage(image), FailsWith(StatusCode::kInvalidArgument,
                                           AllOf(HasSubstr("'strange.weight'"),
                                                 HasSubstr("info at offset " + std::to_string(image.tensor_offsets[1])),
                                                 HasSubstr("unknown ggml type id 4"))));
}

TEST(GgufMalformedTest, DimensionProblems) {
  GgufBuilder overflow;
  overflow.Tensor({.name = "huge", .dims = {uint64_t{1} << 32, uint64_t{1} << 32}, .data_bytes = 4});
  EXPECT_THAT(ParseImage(overflow.Build()),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'huge'"), HasSubstr("overflow int64"))));
  GgufBuilder ragged;
  ragged.Tensor({.name = "ragged", .dims = {33, 1}, .type = kQ8_0, .data_bytes = 34});
  EXPECT_THAT(ParseImage(ragged.Build()),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'ragged'"), HasSubstr("not a multiple of Q8_0's block size 32"))));
  GgufBuilder zero;
  zero.Tensor({.name = "empty", .dims = {0}, .data_bytes = 4});
  EXPECT_THAT(ParseImage(zero.Build()), FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'empty'"), HasSubstr("is 0"))));
}

TEST(GgufMalformedTest, BadTensorOffsets) {
  GgufBuilder past_end;
  past_end.Tensor({.name = "a", .dims = {8}, .data_bytes = 32});
  past_end.Tensor({.name = "far.away", .dims = {8}, .offset = uint64_t{1} << 40});
  EXPECT_THAT(ParseImage(past_end.Build()),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'far.away'"), HasSubstr("at offset 1099511627776"),
                                                     HasSubstr("past the end of the file"))));
  // An offset near 2^64 must not wrap around into the file.
  GgufBuilder wrap;
  wrap.Tensor({.name = "filler", .dims = {8}, .data_bytes = 32});
  wrap.Tensor({.name = "wrap", .dims = {8}, .offset = ~uint64_t{31}});
  EXPECT_THAT(ParseImage(wrap.Build()),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'wrap'"), HasSubstr("past the end of the file"))));
  GgufBuilder misaligned;
  misaligned.Tensor({.name = "a", .dims = {8}, .data_bytes = 32});
  misaligned.Tensor({.name = "crooked", .dims = {4}, .data_bytes = 16, .offset = 40});
  const Image image = misaligned.Build();
  EXPECT_THAT(ParseImage(image),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'crooked'"),
                                                     HasSubstr("info at offset " + std::to_string(image.tensor_offsets[1])),
                                                     HasSubstr("data offset 40"), HasSubstr("alignment 32"))));
  GgufBuilder overlap;
  overlap.Tensor({.name = "first", .dims = {16}, .data_bytes = 64});
  overlap.Tensor({.name = "second", .dims = {8}, .data_bytes = 32, .offset = 32});
  EXPECT_THAT(ParseImage(overlap.Build()),
              FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr("'second'"), HasSubstr("overlaps"), HasSubstr("'first'"))));
}

TEST(GgufMalformedTest, DuplicateTensorName) {
  GgufBuilder b;
  b.Tensor({.name = "twice", .dims = {8}, .data_bytes = 32});
  b.Tensor({.name = "twice", .dims = {8}, .data_bytes = 32});
  const Image image = b.Build();
  EXPECT_THAT(ParseImage(image),
              FailsWith(StatusCode::kDataLoss,
                        AllOf(HasSubstr("'twice' (info at offset " + std::to_string(image.tensor_offsets[1])),
                              HasSubstr("duplicate tensor name"),
                              HasSubstr("offset " + std::to_string(image.tensor_offsets[0])))));
}

TEST(GgufMalformedTest, NamesWithControlBytesAreEscaped) {
  GgufBuilder b;
  b.KvU32(std::string("bad\nkey\x01", 8), 1).KvU32(std::string("bad\nkey\x01", 8), 2);
  EXPECT_THAT(ParseImage(b.Build()), FailsWith(StatusCode::kDataLoss, HasSubstr("'bad\\x0akey\\x01'")));
}

// ---------------------------------------------------------------------------
// Hyperparameters and tokenizer metadata on built images.

TEST(LlamaHParamsTest, DefaultsAndDerivedValues) {
  auto file = ParseImage(TinyLlama().Build());
  ASSERT_TRUE(file.ok());
  auto hp = ReadLlamaHParams(*file);
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->architecture, "llama");
  EXPECT_EQ(hp->n_layer, 2u);
  EXPECT_EQ(hp->n_embd, 32u);
  EXPECT_EQ(hp->n_head, 4u);
  EXPECT_EQ(hp->n_head_kv, 2u);
  EXPECT_EQ(hp->head_dim, 8u);
  EXPECT_EQ(hp->head_dim_v, 8u);
  EXPECT_EQ(hp->n_rot, 8u);
  EXPECT_EQ(hp->n_ff, 64u);
  EXPECT_EQ(hp->n_ctx_train, 128u);
  EXPECT_EQ(hp->n_vocab, 6u);
  EXPECT_FLOAT_EQ(hp->rope_freq_base, 10000.0f);
  EXPECT_FLOAT_EQ(hp->rms_eps, 1e-5f);
  EXPECT_EQ(hp->rope_scaling, RopeScalingType::kNone);
  EXPECT_FLOAT_EQ(hp->rope_scaling_factor, 1.0f);
  EXPECT_EQ(hp->rope_original_ctx, 128u);
}

GgufBuilder Qwen2(uint32_t n_head, uint32_t n_head_kv) {
  GgufBuilder b;
  b.KvStr("general.architecture", "qwen2")
      .KvU32("qwen2.block_count", 24)
      .KvU32("qwen2.embedding_length", 896)
      .KvU32("qwen2.feed_forward_length", 4864)
      .KvU32("qwen2.context_length", 32768)
      .KvU32("qwen2.attention.head_count", n_head)
      .KvU32("qwen2.attention.head_count_kv", n_head_kv)
      .KvF32("qwen2.rope.freq_base", 1000000.0f)
      .KvF32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f)
      .KvU32("qwen2.vocab_size", 151936);
  return b;
}

TEST(LlamaHParamsTest, Qwen2WithRopeScaling) {
  GgufBuilder b = Qwen2(14, 2);
  b.KvStr("qwen2.rope.scaling.type", "yarn")
      .KvF32("qwen2.rope.scaling.factor", 4.0f)
      .KvU32("qwen2.rope.scaling.original_context_length", 32768);
  auto file = ParseImage(b.Build());
  ASSERT_TRUE(file.ok());
  auto hp = ReadLlamaHParams(*file);
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->architecture, "qwen2");
  EXPECT_EQ(hp->head_dim, 64u);
  EXPECT_EQ(hp->n_vocab, 151936u);
  EXPECT_FLOAT_EQ(hp->rope_freq_base, 1e6f);
  EXPECT_EQ(hp->rope_scaling, RopeScalingType::kYarn);
  EXPECT_FLOAT_EQ(hp->rope_scaling_factor, 4.0f);
}

TEST(LlamaHParamsTest, InconsistentValuesNameTheKey) {
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(Qwen2(14, 4).Build())),
              FailsWith(StatusCode::kInvalidArgument,
                        AllOf(HasSubstr("'qwen2.attention.head_count_kv' is 4"), HasSubstr("divide"))));
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(Qwen2(15, 3).Build())),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("'qwen2.attention.head_count' is 15")));
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(Qwen2(14, 0).Build())),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("'qwen2.attention.head_count_kv' is 0")));

  GgufBuilder scaling = Qwen2(14, 2);
  scaling.KvStr("qwen2.rope.scaling.type", "magic");
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(scaling.Build())),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("'qwen2.rope.scaling.type' is 'magic'")));
  GgufBuilder rot = Qwen2(14, 2);
  rot.KvU32("qwen2.rope.dimension_count", 65);
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(rot.Build())),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("'qwen2.rope.dimension_count' is 65")));
  GgufBuilder vocab = Qwen2(14, 2);
  vocab.KvStrArray("tokenizer.ggml.tokens", {"a", "b"});
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(vocab.Build())),
              FailsWith(StatusCode::kInvalidArgument,
                        AllOf(HasSubstr("'qwen2.vocab_size' is 151936"), HasSubstr("holds 2 tokens"))));
}

TEST(LlamaHParamsTest, MissingOrWrongKeys) {
  GgufBuilder gpt2;
  gpt2.KvStr("general.architecture", "gpt2");
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(gpt2.Build())),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("'general.architecture' is 'gpt2'")));
  GgufBuilder none;
  none.KvU32("x", 1);
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(none.Build())),
              FailsWith(StatusCode::kNotFound, HasSubstr("'general.architecture' not found")));
  GgufBuilder partial;
  partial.KvStr("general.architecture", "llama").KvU32("llama.embedding_length", 8);
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(partial.Build())),
              FailsWith(StatusCode::kNotFound, HasSubstr("'llama.block_count' not found")));
  GgufBuilder typed = Qwen2(14, 2);
  typed.KvStr("qwen2.attention.key_length", "64");
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(typed.Build())),
              FailsWith(StatusCode::kInvalidArgument,
                        AllOf(HasSubstr("'qwen2.attention.key_length'"), HasSubstr("found string"))));
  GgufBuilder no_eps;
  no_eps.KvStr("general.architecture", "llama")
      .KvU32("llama.block_count", 1)
      .KvU32("llama.embedding_length", 8)
      .KvU32("llama.feed_forward_length", 8)
      .KvU32("llama.context_length", 8)
      .KvU32("llama.attention.head_count", 2)
      .KvU32("llama.vocab_size", 10);
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(no_eps.Build())),
              FailsWith(StatusCode::kNotFound, HasSubstr("'llama.attention.layer_norm_rms_epsilon' not found")));
  no_eps.KvF32("llama.attention.layer_norm_rms_epsilon", std::nanf(""));
  EXPECT_THAT(ReadLlamaHParams(*ParseImage(no_eps.Build())),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("'llama.attention.layer_norm_rms_epsilon' is nan")));
}

TEST(TokenizerMetadataTest, CollectsKeys) {
  auto file = ParseImage(TinyLlama().Build());
  ASSERT_TRUE(file.ok());
  auto tok = ReadTokenizerMetadata(*file);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->model, "llama");
  EXPECT_EQ(tok->pre, "");
  EXPECT_EQ(tok->tokens.size(), 6u);
  EXPECT_EQ(tok->scores.size(), 6u);
  EXPECT_EQ(tok->token_types.size(), 6u);
  EXPECT_TRUE(tok->merges.empty());
  EXPECT_EQ(tok->bos_id, 1u);
  EXPECT_EQ(tok->eos_id, 2u);
  EXPECT_EQ(tok->pad_id, std::nullopt);  // stored as 0xFFFFFFFF
  EXPECT_EQ(tok->unk_id, std::nullopt);  // absent
  EXPECT_EQ(tok->add_bos, true);
  EXPECT_EQ(tok->add_eos, std::nullopt);
  EXPECT_EQ(tok->chat_template, "{{ messages }}");
}

TEST(TokenizerMetadataTest, InconsistenciesNameTheKey) {
  GgufBuilder scores;
  scores.KvStr("tokenizer.ggml.model", "llama")
      .KvStrArray("tokenizer.ggml.tokens", {"a", "b", "c"})
      .KvF32Array("tokenizer.ggml.scores", {1, 2});
  EXPECT_THAT(ReadTokenizerMetadata(*ParseImage(scores.Build())),
              FailsWith(StatusCode::kInvalidArgument,
                        AllOf(HasSubstr("'tokenizer.ggml.scores' holds 2 entries"), HasSubstr("holds 3"))));
  GgufBuilder bos;
  bos.KvStr("tokenizer.ggml.model", "gpt2").KvStrArray("tokenizer.ggml.tokens", {"a"}).KvU32("tokenizer.ggml.bos_token_id", 1);
  EXPECT_THAT(ReadTokenizerMetadata(*ParseImage(bos.Build())),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("'tokenizer.ggml.bos_token_id' is 1: not a token id")));
  GgufBuilder no_model;
  no_model.KvStrArray("tokenizer.ggml.tokens", {"a"});
  EXPECT_THAT(ReadTokenizerMetadata(*ParseImage(no_model.Build())),
              FailsWith(StatusCode::kNotFound, HasSubstr("'tokenizer.ggml.model'")));
}

// ---------------------------------------------------------------------------
// Open: the file system side.

std::string TempPath(std::string_view name) {
  return (std::filesystem::temp_directory_path() / (std::string(name) + "." + std::to_string(::getpid()))).string();
}

TEST(GgufOpenTest, MapsAFileAndNamesThePathOnErrors) {
  const std::string path = TempPath("kvstack_gguf_test.gguf");
  const Image image = TinyLlama().Build();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(image.bytes.data()), static_cast<std::streamsize>(image.bytes.size()));
  }
  {
    auto file = GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_EQ(file->tensors().size(), 3u);
    // The mapping is page-aligned, so tensor data honours the file's alignment.
    for (const GgufTensorInfo& t : file->tensors()) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data.data()) % 32, 0u) << t.name;
      EXPECT_EQ(0, std::memcmp(t.data.data(), image.bytes.data() + t.file_offset, t.size_bytes));
    }
  }
  std::filesystem::resize_file(path, image.bytes.size() - 5);
  EXPECT_THAT(GgufFile::Open(path), FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr(path), HasSubstr("past the end"))));
  std::filesystem::resize_file(path, 0);
  EXPECT_THAT(GgufFile::Open(path), FailsWith(StatusCode::kDataLoss, AllOf(HasSubstr(path), HasSubstr("header"))));
  std::filesystem::remove(path);
  EXPECT_THAT(GgufFile::Open(path), FailsWith(StatusCode::kNotFound, HasSubstr(path)));
  EXPECT_THAT(GgufFile::Open(std::filesystem::temp_directory_path().string()),
              FailsWith(StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
}

// ---------------------------------------------------------------------------
// The shared models and vocabularies.

std::string SharedPath(std::string_view relative) { return std::string(KVSTACK_SHARED_DIR) + "/" + std::string(relative); }

#define SKIP_IF_ABSENT(path)                                                                       \
  do {                                                                                             \
    if (!std::filesystem::exists(path)) KVSTACK_SKIP_MISSING() << (path) << " is absent (shared test assets)"; \
  } while (0)

TEST(GgufSharedTest, Stories260K) {
  const std::string path = SharedPath("models/stories260K.gguf");
  SKIP_IF_ABSENT(path);
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  EXPECT_EQ(file->tensors().size(), 48u);
  auto hp = ReadLlamaHParams(*file);
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->architecture, "llama");
  EXPECT_EQ(hp->n_layer, 5u);
  EXPECT_EQ(hp->n_embd, 64u);
  EXPECT_EQ(hp->n_head, 8u);
  EXPECT_EQ(hp->n_head_kv, 4u);
  EXPECT_EQ(hp->head_dim, 8u);
  EXPECT_EQ(hp->n_rot, 8u);
  EXPECT_EQ(hp->n_ff, 172u);
  EXPECT_EQ(hp->n_vocab, 512u);
  EXPECT_EQ(hp->n_ctx_train, 512u);
  EXPECT_FLOAT_EQ(hp->rope_freq_base, 10000.0f);
  EXPECT_FLOAT_EQ(hp->rms_eps, 1e-5f);

  auto embd = file->FindTensor("token_embd.weight");
  ASSERT_TRUE(embd.ok());
  EXPECT_EQ((*embd)->type, GgmlType::kF32);
  EXPECT_THAT((*embd)->dims, ElementsAre(64, 512));
  EXPECT_EQ((*embd)->size_bytes, 64u * 512 * 4);
  auto down = file->FindTensor("blk.4.ffn_down.weight");
  ASSERT_TRUE(down.ok());
  EXPECT_THAT((*down)->dims, ElementsAre(172, 64));
  // The last tensor's data ends at the end of the file.
  uint64_t end = 0;
  for (const GgufTensorInfo& t : file->tensors()) end = std::max(end, t.file_offset + t.size_bytes);
  EXPECT_EQ(end, file->bytes().size());

  auto tok = ReadTokenizerMetadata(*file);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->model, "llama");
  EXPECT_EQ(tok->tokens.size(), 512u);
  EXPECT_EQ(tok->tokens[1], "<s>");
  EXPECT_EQ(tok->unk_id, 0u);
  EXPECT_EQ(tok->bos_id, 1u);
  EXPECT_EQ(tok->eos_id, 2u);
  EXPECT_EQ(tok->sep_id, std::nullopt);
  EXPECT_EQ(tok->pad_id, std::nullopt);
}

TEST(GgufSharedTest, TinyQuantizedModels) {
  struct Expect {
    std::string_view file;
    GgmlType embd, attn_q, ffn_down, output;
  };
  const Expect expected[] = {
      {"tinyq-a-f32.gguf", GgmlType::kF32, GgmlType::kF32, GgmlType::kF32, GgmlType::kF32},
      {"tinyq-a-q8_0.gguf", GgmlType::kQ8_0, GgmlType::kQ8_0, GgmlType::kQ8_0, GgmlType::kQ8_0},
      {"tinyq-a-q4_0.gguf", GgmlType::kQ4_0, GgmlType::kQ4_0, GgmlType::kQ4_0, GgmlType::kQ4_0},
      {"tinyq-a-q4_k_m.gguf", GgmlType::kQ4_K, GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kQ6_K},
      {"tinyq-a-q6_k.gguf", GgmlType::kQ6_K, GgmlType::kQ6_K, GgmlType::kQ6_K, GgmlType::kQ6_K},
  };
  for (const Expect& e : expected) {
    SCOPED_TRACE(e.file);
    const std::string path = SharedPath("models/" + std::string(e.file));
    SKIP_IF_ABSENT(path);
    auto file = GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_EQ(file->tensors().size(), 21u);
    auto hp = ReadLlamaHParams(*file);
    ASSERT_TRUE(hp.ok()) << hp.status().ToString();
    EXPECT_EQ(hp->n_layer, 2u);
    EXPECT_EQ(hp->n_embd, 256u);
    EXPECT_EQ(hp->n_head, 4u);
    EXPECT_EQ(hp->n_head_kv, 2u);
    EXPECT_EQ(hp->head_dim, 64u);
    EXPECT_EQ(hp->n_ff, 768u);
    EXPECT_EQ(hp->n_vocab, 512u);
    const struct {
      std::string_view name;
      GgmlType type;
      std::vector<uint64_t> dims;
    } tensors[] = {{"token_embd.weight", e.embd, {256, 512}},
                   {"blk.0.attn_q.weight", e.attn_q, {256, 256}},
                   {"blk.1.ffn_down.weight", e.ffn_down, {768, 256}},
                   {"output.weight", e.output, {256, 512}},
                   {"output_norm.weight", GgmlType::kF32, {256}}};
    for (const auto& t : tensors) {
      auto info = file->FindTensor(t.name);
      ASSERT_TRUE(info.ok()) << t.name;
      EXPECT_EQ((*info)->type, t.type) << t.name;
      EXPECT_EQ((*info)->dims, t.dims) << t.name;
      const GgmlTypeTraits& traits = GetGgmlTypeTraits(t.type);
      EXPECT_EQ((*info)->size_bytes, (*info)->n_elements / traits.block_elements * traits.block_bytes) << t.name;
    }
  }
}

TEST(GgufSharedTest, VocabularyOnlyFiles) {
  const std::string spm = SharedPath("vocab/ggml-vocab-llama-spm.gguf");
  SKIP_IF_ABSENT(spm);
  auto llama = GgufFile::Open(spm);
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  EXPECT_TRUE(llama->tensors().empty());
  auto tok = ReadTokenizerMetadata(*llama);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->model, "llama");
  EXPECT_EQ(tok->pre, "default");
  EXPECT_EQ(tok->tokens.size(), 32000u);
  EXPECT_EQ(tok->scores.size(), 32000u);
  EXPECT_EQ(tok->add_bos, true);
  EXPECT_EQ(tok->add_eos, false);
  auto hp = ReadLlamaHParams(*llama);
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->n_vocab, 32000u);
  EXPECT_EQ(hp->head_dim, 128u);

  const std::string gpt2_path = SharedPath("vocab/ggml-vocab-gpt-2.gguf");
  SKIP_IF_ABSENT(gpt2_path);
  auto gpt2 = GgufFile::Open(gpt2_path);
  ASSERT_TRUE(gpt2.ok()) << gpt2.status().ToString();
  EXPECT_TRUE(gpt2->tensors().empty());
  auto bpe = ReadTokenizerMetadata(*gpt2);
  ASSERT_TRUE(bpe.ok()) << bpe.status().ToString();
  EXPECT_EQ(bpe->model, "gpt2");
  EXPECT_EQ(bpe->pre, "gpt-2");
  EXPECT_EQ(bpe->tokens.size(), 50257u);
  EXPECT_EQ(bpe->merges.size(), 50000u);
  EXPECT_EQ(bpe->merges[0], "\xc4\xa0 t");  // "Ġ t"
  EXPECT_TRUE(bpe->scores.empty());
  EXPECT_EQ(bpe->bos_id, 50256u);
  EXPECT_THAT(ReadLlamaHParams(*gpt2), FailsWith(StatusCode::kInvalidArgument, HasSubstr("'gpt2'")));
}

}  // namespace
}  // namespace kvstack
