#include "tokenizer/spm_encoder.h"

#include <algorithm>
#include <queue>
#include <string>

#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {
namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581

// A run of the escaped text; merged symbols absorb their right neighbour and
// leave it empty (size 0), unlinked from the list.
struct Symbol {
  int32_t prev;
  int32_t next;  // -1 at the end
  uint32_t begin;
  uint32_t size;
};

// A candidate merge of two adjacent symbols. It is stale when either symbol
// has changed since it was queued; since a symbol only ever absorbs its right
// neighbour, comparing the combined size is enough to tell.
struct Bigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;
};

// Highest score first; among equal scores the leftmost pair (llama.cpp's order).
struct LowerPriority {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

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

  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < escaped.size();) {
    const size_t n = std::min(Utf8SequenceLength(static_cast<uint8_t>(escaped[pos])), escaped.size() - pos);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, pos + n == escaped.size() ? -1 : index + 1, static_cast<uint32_t>(pos),
                       static_cast<uint32_t>(n)});
    pos += n;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, LowerPriority> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const std::string_view joined(escaped.data() + symbols[left].begin, symbols[left].size + symbols[right].size);
    const std::optional<Token> token = vocab_.Find(joined);
    if (!token) return;
    queue.push({vocab_.Score(*token), left, right, static_cast<uint32_t>(joined.size())});
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
