#include "tokenizer/bpe_encoder.h"

#include <algorithm>
#include <string>

#include "tokenizer/byte_level.h"
#include "tokenizer/symbol_merge.h"
#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {

void BpeEncoder::Encode(std::string_view text, bool /*starts_text*/, std::vector<Token>* out) const {
  std::string repaired;
  if (!IsWellFormedUtf8(text)) {
    repaired = ToWellFormedUtf8(text);
    text = repaired;
  }
  for (std::string_view word : pre_.Split(text)) EncodeWord(ByteLevelEncode(word), out);
}

void BpeEncoder::EncodeWord(std::string_view word, std::vector<Token>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const std::optional<Token> token = vocab_.Find(word)) {
      out->push_back(*token);
      return;
    }
  }

  std::vector<Symbol> symbols = SplitCharacters(word);
  // The lowest merge rank first.
  MergeSymbols(word, symbols, [&](std::string_view left, std::string_view right) -> std::optional<int64_t> {
    const std::optional<int32_t> rank = ranks_.Rank(left, right);
    if (!rank) return std::nullopt;
    return -int64_t{*rank};
  });
  const auto text_of = [&](const Symbol& sym) { return word.substr(sym.begin, sym.size); };

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = text_of(symbols[i]);
    if (const std::optional<Token> token = vocab_.Find(piece)) {
      out->push_back(*token);
      continue;
    }
    // A merge whose result is not a token. llama.cpp looks each byte up on
    // its own here; looking up characters keeps byte-alphabet spellings whole.
    for (size_t pos = 0; pos < piece.size();) {
      const size_t n = std::min(Utf8SequenceLength(static_cast<uint8_t>(piece[pos])), piece.size() - pos);
      std::optional<Token> token = vocab_.Find(piece.substr(pos, n));
      if (!token) token = vocab_.unk();
      if (token) out->push_back(*token);
      pos += n;
    }
  }
}

}  // namespace kvstack::tokenizer_impl
