// SentencePiece encoding as llama.cpp's llm_tokenizer_spm does it.
//
// The text gets a leading space (when add_space_prefix and the fragment
// starts a text), every ' ' becomes U+2581 "▁", and the text is cut into
// UTF-8 characters (a stray byte is a character of its own). Then, over and
// over, the adjacent pair whose concatenation is the highest-scoring token is
// merged, the leftmost pair winning ties, until no adjacent pair forms a
// token. A final symbol that is not a token (a character the vocabulary lacks)
// becomes one byte-fallback token per byte.
#pragma once

#include "tokenizer/text_encoder.h"
#include "tokenizer/vocabulary.h"

namespace kvstack::tokenizer_impl {

class SpmEncoder : public TextEncoder {
 public:
  // REQUIRES: `vocab` outlives the encoder.
  SpmEncoder(const Vocabulary& vocab, bool add_space_prefix)
      : vocab_(vocab), add_space_prefix_(add_space_prefix) {}

  void Encode(std::string_view text, bool starts_text, std::vector<Token>* out) const override;

 private:
  const Vocabulary& vocab_;
  bool add_space_prefix_;
};

}  // namespace kvstack::tokenizer_impl
