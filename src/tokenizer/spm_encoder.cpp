#include "tokenizer/spm_encoder.h"

#include <algorithm>
#include <string>

#include "tokenizer/symbol_merge.h"
#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {
namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581

}  // namespace

void SpmEncoder::Encode(std::string_view text, bool starts_text, std::vector<Token>* out) const {
  std::string escaped;
  escaped.reserve(text.size() + 8);
  if (add_space_prefix_ && starts_text) escaped.append(kEscapedSpace);
  for (char c : text) {
    if (c == ' ') {
      escaped.append(kEscapedSpace);
    } else {
      escaped.push_back(c);
    }
  }
  if (escaped.empty()) return;

  std::vector<Symbol> symbols = SplitCharacters(escaped);
  // The highest score of the token the pair would make first.
  MergeSymbols(escaped, symbols, [&](std::string_view left, std::string_view right) -> std::optional<float> {
    const std::optional<Token> token = vocab_.Find(std::string_view(left.data(), left.size() + right.size()));
    if (!token) return std::nullopt;
    return vocab_.Score(*token);
  });

  // Every merged symbol is a token by construction, so only single characters
  // the vocabulary lacks need the byte fallback. (llama.cpp also keeps a
  // reverse-merge table to re-split non-token symbols; no symbol reaches it.)
  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const std::string_view piece(escaped.data() + symbols[i].begin, symbols[i].size);
    if (const std::optional<Token> token = vocab_.Find(piece)) {
      out->push_back(*token);
      continue;
    }
    for (char byte : piece) {
      if (const std::optional<Token> token = vocab_.ByteFallback(static_cast<uint8_t>(byte))) out->push_back(*token);
    }
  }
}

}  // namespace kvstack::tokenizer_impl
