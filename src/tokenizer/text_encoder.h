// TextEncoder: turns one fragment of plain text (no special tokens left in it)
// into token ids. One implementation per vocabulary model; the Tokenizer cuts
// out special tokens and adds BOS/EOS around it.
#pragma once

#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"

namespace kvstack::tokenizer_impl {

class TextEncoder {
 public:
  virtual ~TextEncoder() = default;

  // Appends the ids of `text` to `out`. `starts_text` is true for the first
  // fragment of the input and for a fragment right after a special token
  // (where SentencePiece puts its prefix space). Never fails: bytes with no
  // token fall back as each model defines. Safe to call from many threads.
  virtual void Encode(std::string_view text, bool starts_text, std::vector<Token>* out) const = 0;
};

}  // namespace kvstack::tokenizer_impl
