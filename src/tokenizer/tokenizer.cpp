// Tokenizer's encode and decode paths and accessors; FromGguf is in
// tokenizer_from_gguf.cpp.
#include "kvstack/tokenizer.h"

#include <algorithm>

#include <fmt/format.h>

#include "tokenizer/render.h"
#include "tokenizer/tokenizer_parts.h"

namespace kvstack {

Tokenizer::Tokenizer(Parts parts)
    : model_(parts.model),
      model_name_(std::move(parts.model_name)),
      pre_name_(std::move(parts.pre_name)),
      vocab_(std::move(parts.vocab)),
      encoder_(std::move(parts.encoder)),
      specials_(std::move(parts.specials)),
      eog_(std::move(parts.eog)),
      bos_(parts.bos),
      eos_(parts.eos),
      eot_(parts.eot),
      unk_(parts.unk),
      pad_(parts.pad),
      add_bos_(parts.add_bos),
      add_eos_(parts.add_eos),
      add_space_prefix_(parts.add_space_prefix) {}

Tokenizer::~Tokenizer() = default;

std::vector<Token> Tokenizer::Encode(std::string_view text) const { return Encode(text, EncodeOptions{}); }

std::vector<Token> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<Token> out;
  out.reserve(text.size() / 3 + 2);
  // FromGguf guarantees the ids exist whenever the file asks for them; an
  // explicit request on a vocabulary without the token adds nothing.
  if (options.add_bos.value_or(add_bos_) && bos_) out.push_back(*bos_);
  bool starts_text = true;  // the input's start, or right after a special token
  for (const tokenizer_impl::Fragment& fragment : specials_->Split(text, options.parse_special)) {
    if (fragment.token) {
      out.push_back(*fragment.token);
      starts_text = true;
    } else {
      encoder_->Encode(fragment.text, starts_text, &out);
      starts_text = false;
    }
  }
  if (options.add_eos.value_or(add_eos_) && eos_) out.push_back(*eos_);
  return out;
}

std::string Tokenizer::Decode(std::span<const Token> tokens) const { return Decode(tokens, DecodeOptions{}); }

std::string Tokenizer::Decode(std::span<const Token> tokens, const DecodeOptions& options) const {
  std::string out;
  bool strip_next = tokenizer_impl::OwesPrefixSpace(*this, options);
  for (Token token : tokens) tokenizer_impl::AppendRendered(*this, token, options.skip_special, &strip_next, &out);
  return out;
}

Status Tokenizer::CheckTokens(std::span<const Token> tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!IsValid(tokens[i])) {
      return InvalidArgument(fmt::format("token id {} at position {} is not in the vocabulary (ids 0 to {})",
                                         tokens[i], i, vocab_size() - 1));
    }
  }
  return Status::Ok();
}

int32_t Tokenizer::vocab_size() const { return vocab_->size(); }
std::string_view Tokenizer::Piece(Token token) const { return vocab_->Piece(token); }
std::string_view Tokenizer::Text(Token token) const { return vocab_->Text(token); }
TokenKind Tokenizer::Kind(Token token) const { return vocab_->Kind(token); }

bool Tokenizer::IsSpecial(Token token) const {
  const TokenKind kind = vocab_->Kind(token);
  return kind == TokenKind::kControl || kind == TokenKind::kUnknown;
}

std::optional<Token> Tokenizer::Find(std::string_view text) const { return vocab_->Find(text); }

bool Tokenizer::IsEog(Token token) const { return std::binary_search(eog_.begin(), eog_.end(), token); }

}  // namespace kvstack
