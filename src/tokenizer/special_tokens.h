// SpecialTokenSplitter: cuts the text spelling special tokens out of the
// input before the model's encoder sees it (llama.cpp's
// tokenizer_st_partition).
//
// Candidates are the control, unknown and user-defined tokens. Longer texts
// are cut out first (ties by lower id), each everywhere in the text that
// earlier cuts left, leftmost occurrence first; so with "<|im_start|>" and
// "<|im" both in the vocabulary, the former wins.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"
#include "tokenizer/vocabulary.h"

namespace kvstack::tokenizer_impl {

struct Fragment {
  std::string_view text;       // a view into the input; the token's text for a token
  std::optional<Token> token;  // set: a special token; unset: plain text
};

class SpecialTokenSplitter {
 public:
  explicit SpecialTokenSplitter(const Vocabulary& vocab);

  // The input as fragments in order. With `parse_special` false only
  // user-defined tokens are cut out. Empty input gives no fragments.
  std::vector<Fragment> Split(std::string_view text, bool parse_special) const;

 private:
  struct Candidate {
    Token token;
    std::string_view text;
    bool user_defined;
  };
  std::vector<Candidate> candidates_;  // longest text first
};

}  // namespace kvstack::tokenizer_impl
