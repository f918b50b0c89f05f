// The merge loop SentencePiece and byte-level BPE share (llama.cpp's): the
// text as a linked list of symbols, one UTF-8 character each at first, and
// a queue of adjacent pairs by priority. The best pair merges (the left
// symbol absorbs the right one, which is left empty and unlinked) and the
// merged symbol's new pairs are queued. A queued pair is stale once either
// side changed; a symbol only grows, by absorbing its right neighbour, so
// the combined size tells.
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <string_view>
#include <type_traits>
#include <vector>

namespace kvstack::tokenizer_impl {

// A run [begin, begin + size) of the text; size 0 once absorbed.
struct Symbol {
  int32_t prev;
  int32_t next;  // -1 at the end
  uint32_t begin;
  uint32_t size;
};

// `text` (not empty) split into UTF-8 characters; a sequence cut short by
// the end of the text is one symbol.
std::vector<Symbol> SplitCharacters(std::string_view text);

// Merges adjacent symbols of `text` while any pair may merge:
// `priority(left, right)` is the pair's priority (higher merges first; among
// equals the leftmost pair), or nullopt when it may not merge.
template <class PriorityOf>
void MergeSymbols(std::string_view text, std::vector<Symbol>& symbols, PriorityOf priority) {
  using P = typename std::invoke_result_t<PriorityOf, std::string_view, std::string_view>::value_type;
  struct Pair {
    P priority;
    int32_t left;
    int32_t right;
    uint32_t size;
  };
  const auto below = [](const Pair& a, const Pair& b) {
    return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(below)> queue(below);
  const auto text_of = [&](const Symbol& s) { return text.substr(s.begin, s.size); };
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const std::optional<P> p = priority(text_of(symbols[left]), text_of(symbols[right]));
    if (p) queue.push({*p, left, right, symbols[left].size + symbols[right].size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Pair pair = queue.top();
    queue.pop();
    Symbol& left = symbols[pair.left];
    Symbol& right = symbols[pair.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != pair.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = pair.left;
    try_add(left.prev, pair.left);
    try_add(pair.left, left.next);
  }
}

}  // namespace kvstack::tokenizer_impl
