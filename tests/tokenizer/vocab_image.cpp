#include "tokenizer/vocab_image.h"

#include <cstring>

#include "kvstack/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace kvstack::testing {
namespace {

constexpr uint32_t kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9;

}  // namespace

template <typename T>
void VocabImage::Put(T value) {
  std::byte raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  kv_.insert(kv_.end(), raw, raw + sizeof(T));
}

void VocabImage::PutStr(std::string_view s) {
  Put<uint64_t>(s.size());
  for (char c : s) kv_.push_back(static_cast<std::byte>(c));
}

void VocabImage::Key(std::string_view key, uint32_t type) {
  PutStr(key);
  Put<uint32_t>(type);
  ++count_;
}

VocabImage& VocabImage::Str(std::string_view key, std::string_view value) {
  Key(key, kString);
  PutStr(value);
  return *this;
}

VocabImage& VocabImage::U32(std::string_view key, uint32_t value) {
  Key(key, kU32);
  Put<uint32_t>(value);
  return *this;
}

VocabImage& VocabImage::Bool(std::string_view key, bool value) {
  Key(key, kBool);
  Put<uint8_t>(value ? 1 : 0);
  return *this;
}

VocabImage& VocabImage::StrArray(std::string_view key, const std::vector<std::string>& values) {
  Key(key, kArray);
  Put<uint32_t>(kString);
  Put<uint64_t>(values.size());
  for (const std::string& v : values) PutStr(v);
  return *this;
}

VocabImage& VocabImage::F32Array(std::string_view key, const std::vector<float>& values) {
  Key(key, kArray);
  Put<uint32_t>(kF32);
  Put<uint64_t>(values.size());
  for (float v : values) Put<float>(v);
  return *this;
}

VocabImage& VocabImage::I32Array(std::string_view key, const std::vector<int32_t>& values) {
  Key(key, kArray);
  Put<uint32_t>(kI32);
  Put<uint64_t>(values.size());
  for (int32_t v : values) Put<int32_t>(v);
  return *this;
}

std::vector<std::byte> VocabImage::Bytes() const {
  VocabImage header;
  header.Put<uint32_t>(0x46554747u);  // "GGUF"
  header.Put<uint32_t>(3);
  header.Put<uint64_t>(0);  // tensors
  header.Put<uint64_t>(count_);
  std::vector<std::byte> out = header.kv_;
  out.insert(out.end(), kv_.begin(), kv_.end());
  return out;
}

Result<std::unique_ptr<Tokenizer>> VocabImage::Build() const {
  const std::vector<std::byte> bytes = Bytes();
  auto file = GgufFile::Parse(bytes);
  if (!file.ok()) return file.status();
  return Tokenizer::FromGguf(*file);
}

std::vector<std::string> ByteAlphabet() {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    tokenizer_impl::AppendUtf8(tokenizer_impl::ByteToCodePoint(static_cast<uint8_t>(b)), &s);
    tokens.push_back(s);
  }
  return tokens;
}

std::string ByteSpelling(std::string_view text) { return tokenizer_impl::ByteLevelEncode(text); }

}  // namespace kvstack::testing
