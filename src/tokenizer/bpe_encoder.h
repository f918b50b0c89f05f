// Byte-level BPE encoding as llama.cpp's llm_tokenizer_bpe does it.
//
// The text (made well-formed UTF-8 first: each invalid byte becomes U+FFFD)
// is cut into words by the pre-tokenizer; each word is spelled in GPT-2's
// byte alphabet and cut into characters, and the adjacent pair with the
// lowest merge rank is merged, leftmost first among equals, until no pair has
// a rank. With ignore_merges (Llama 3) a word that is itself a token is
// emitted whole. A final symbol that is not a token (only possible with
// merges that produce no token) becomes one token per character, characters
// without a token falling back to UNK or, lacking that, being dropped.
#pragma once

#include "tokenizer/bpe_ranks.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/text_encoder.h"
#include "tokenizer/vocabulary.h"

namespace kvstack::tokenizer_impl {

class BpeEncoder : public TextEncoder {
 public:
  // REQUIRES: `vocab` outlives the encoder.
  BpeEncoder(const Vocabulary& vocab, BpeRanks ranks, PreTokenizer pre, bool ignore_merges)
      : vocab_(vocab), ranks_(std::move(ranks)), pre_(std::move(pre)), ignore_merges_(ignore_merges) {}

  void Encode(std::string_view text, bool starts_text, std::vector<Token>* out) const override;

  // One pre-tokenized word, already in the byte alphabet.
  void EncodeWord(std::string_view word, std::vector<Token>* out) const;

 private:
  const Vocabulary& vocab_;
  BpeRanks ranks_;
  PreTokenizer pre_;
  bool ignore_merges_;
};

}  // namespace kvstack::tokenizer_impl
