// libFuzzer target for the tokenizers: text to ids to text. Any bytes encode
// without crashing, every id is in the vocabulary, and valid UTF-8 without
// control-token text decodes back to exactly itself (SentencePiece: stories260K,
// with byte fallback; BPE: GPT-2's vocabulary), as the tokenizer promises.
// The vocabularies come from KVSTACK_SHARED_DIR (default ../shared).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/tokenizer.h"

using namespace kvstack;

namespace {

std::vector<std::unique_ptr<Tokenizer>>& Tokenizers() {
  static auto* all = [] {
    auto* out = new std::vector<std::unique_ptr<Tokenizer>>;
    const char* env = std::getenv("KVSTACK_SHARED_DIR");
    const std::string shared = env ? env : KVSTACK_SHARED_DIR;
    for (const char* rel : {"/models/stories260K.gguf", "/vocab/ggml-vocab-gpt-2.gguf"}) {
      auto file = GgufFile::Open(shared + rel);
      if (!file.ok()) {
        std::fprintf(stderr, "tokenizer_fuzz: %s\n", file.status().ToString().c_str());
        std::abort();  // a fuzz run without its vocabularies tests nothing
      }
      auto t = Tokenizer::FromGguf(*file);
      if (!t.ok()) std::abort();
      out->push_back(std::move(t).value());
    }
    return out;
  }();
  return *all;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool utf8 = ValidUtf8(text);
  for (const auto& t : Tokenizers()) {
    const std::vector<Token> ids = t->Encode(text, {.add_bos = false, .add_eos = false, .parse_special = false});
    for (Token id : ids) {
      if (id < 0 || id >= t->vocab_size()) std::abort();
    }
    const std::string back = t->Decode(ids, {.skip_special = false, .strip_prefix_space = true});
    if (utf8 && back != text) {
      std::fprintf(stderr, "round trip changed the text: %zu bytes in, %zu out\n", text.size(), back.size());
      std::abort();
    }
  }
  return 0;
}
