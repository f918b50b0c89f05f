// Tokenizer::Parts: everything FromGguf assembles before the Tokenizer exists.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstack/tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/text_encoder.h"
#include "tokenizer/vocabulary.h"

namespace kvstack {

struct Tokenizer::Parts {
  Model model = Model::kSentencePiece;
  std::string model_name;
  std::string pre_name;
  std::unique_ptr<const tokenizer_impl::Vocabulary> vocab;
  // Both refer to *vocab.
  std::unique_ptr<const tokenizer_impl::TextEncoder> encoder;
  std::unique_ptr<const tokenizer_impl::SpecialTokenSplitter> specials;
  std::vector<Token> eog;  // ascending, unique
  std::optional<Token> bos, eos, eot, unk, pad;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
};

}  // namespace kvstack
