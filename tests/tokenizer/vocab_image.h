// VocabImage: vocabulary-only GGUF images built in memory, so tokenizer tests
// can use hand-sized vocabularies (a dozen tokens, three merges) with exact
// expectations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/status.h"
#include "kvstack/tokenizer.h"

namespace kvstack::testing {

class VocabImage {
 public:
  VocabImage& Str(std::string_view key, std::string_view value);
  VocabImage& U32(std::string_view key, uint32_t value);
  VocabImage& Bool(std::string_view key, bool value);
  VocabImage& StrArray(std::string_view key, const std::vector<std::string>& values);
  VocabImage& F32Array(std::string_view key, const std::vector<float>& values);
  VocabImage& I32Array(std::string_view key, const std::vector<int32_t>& values);

  // The GGUF v3 file: header, the metadata in the order it was set, no tensors.
  std::vector<std::byte> Bytes() const;
  // Parses the image and builds its tokenizer (which does not keep the image).
  Result<std::unique_ptr<Tokenizer>> Build() const;

 private:
  void Key(std::string_view key, uint32_t type);
  void PutStr(std::string_view s);
  template <typename T>
  void Put(T value);

  std::vector<std::byte> kv_;
  uint64_t count_ = 0;
};

// The 256 tokens of GPT-2's byte alphabet, in byte order ("!" is token 0x21,
// "Ġ" (space) token 0x20, "Ċ" ("\n") token 0x0A).
std::vector<std::string> ByteAlphabet();
// `text` spelled in that alphabet ("a b" -> "aĠb").
std::string ByteSpelling(std::string_view text);

}  // namespace kvstack::testing
