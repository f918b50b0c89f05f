#include "tokenizer/symbol_merge.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {

std::vector<Symbol> SplitCharacters(std::string_view text) {
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = std::min(Utf8SequenceLength(static_cast<uint8_t>(text[pos])), text.size() - pos);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, pos + n == text.size() ? -1 : index + 1, static_cast<uint32_t>(pos),
                       static_cast<uint32_t>(n)});
    pos += n;
  }
  return symbols;
}

}  // namespace kvstack::tokenizer_impl
