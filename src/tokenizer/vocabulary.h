// Vocabulary: the token table of one tokenizer, immutable once built.
//
// Holds each token's text (as the file spells it), score, kind and piece
// (the bytes it decodes to), and an index from text to id. Two tokens with
// the same text index to the later id, as in llama.cpp; empty texts are not
// indexed.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/tokenizer.h"

namespace kvstack::tokenizer_impl {

struct VocabularyTables {
  std::vector<std::string> texts;
  std::vector<float> scores;      // one per token
  std::vector<TokenKind> kinds;   // one per token
  std::vector<std::string> pieces;  // one per token
  std::optional<Token> unk;
};

class Vocabulary {
 public:
  // REQUIRES: every vector of `tables` has texts.size() entries, at most
  // INT32_MAX; unk, when set, is a valid id.
  explicit Vocabulary(VocabularyTables tables);

  Vocabulary(const Vocabulary&) = delete;
  Vocabulary& operator=(const Vocabulary&) = delete;

  int32_t size() const { return static_cast<int32_t>(texts_.size()); }
  // REQUIRES for the four below: 0 <= token < size().
  std::string_view Text(Token token) const { return texts_[token]; }
  std::string_view Piece(Token token) const { return pieces_[token]; }
  float Score(Token token) const { return scores_[token]; }
  TokenKind Kind(Token token) const { return kinds_[token]; }

  std::optional<Token> Find(std::string_view text) const;
  std::optional<Token> unk() const { return unk_; }

  // SentencePiece's token for a byte no piece covers: "<0xXX>" (upper-case
  // hex), else the byte itself as a one-byte token, else UNK; none when the
  // vocabulary has none of these (the byte is then dropped).
  std::optional<Token> ByteFallback(uint8_t byte) const { return byte_fallback_[byte]; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::vector<std::string> texts_;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenKind> kinds_;
  std::optional<Token> unk_;
  // Views into texts_, whose strings never move once built.
  std::unordered_map<std::string_view, Token, Hash, std::equal_to<>> index_;
  std::array<std::optional<Token>, 256> byte_fallback_;
};

}  // namespace kvstack::tokenizer_impl
