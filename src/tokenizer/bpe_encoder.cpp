#include "tokenizer/bpe_encoder.h"

#include <algorithm>
#include <queue>
#include <string>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {
namespace {

// A run of the word; as in SpmEncoder, merged symbols absorb their right
// neighbour, which is left empty and unlinked.
struct Symbol {
  int32_t prev;
  int32_t next;  // -1 at the end
  uint32_t begin;
  uint32_t size;
};

// Stale when either side changed since it was queued; a symbol only grows by
// absorbing its right neighbour, so the combined size tells.
struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  uint32_t size;
};

// Lowest rank first; among equal ranks the leftmost pair (llama.cpp's order).
struct LowerPriority {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

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

  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < word.size();) {
    const size_t n = std::min(Utf8SequenceLength(static_cast<uint8_t>(word[pos])), word.size() - pos);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, pos + n == word.size() ? -1 : index + 1, static_cast<uint32_t>(pos),
                       static_cast<uint32_t>(n)});
    pos += n;
  }
  auto text_of = [&](const Symbol& s) { return word.substr(s.begin, s.size); };

  std::priority_queue<Bigram, std::vector<Bigram>, LowerPriority> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const std::optional<int32_t> rank = ranks_.Rank(text_of(symbols[left]), text_of(symbols[right]));
    if (!rank) return;
    queue.push({*rank, left, right, symbols[left].size + symbols[right].size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

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
