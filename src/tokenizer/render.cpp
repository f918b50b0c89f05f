#include "tokenizer/render.h"

namespace kvstack::tokenizer_impl {

bool OwesPrefixSpace(const Tokenizer& tokenizer, const Tokenizer::DecodeOptions& options) {
  return options.strip_prefix_space && tokenizer.model() == Tokenizer::Model::kSentencePiece &&
         tokenizer.add_space_prefix();
}

void AppendRendered(const Tokenizer& tokenizer, Token token, bool skip_special, bool* strip_next, std::string* out) {
  if (!tokenizer.IsValid(token)) return;
  std::string_view piece = tokenizer.Piece(token);
  // Special tokens neither render nor pay the prefix space: it belongs to the
  // text after a leading BOS.
  if (tokenizer.IsSpecial(token)) {
    if (!skip_special) out->append(piece);
    return;
  }
  if (*strip_next) {
    if (!piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    *strip_next = false;
  }
  out->append(piece);
}

}  // namespace kvstack::tokenizer_impl
