// How Decode and StreamDecoder render one token, so that streaming a sequence
// gives exactly the text of decoding it at once.
#pragma once

#include <string>

#include "kvstack/tokenizer.h"

namespace kvstack::tokenizer_impl {

// Whether the first text token of a sequence decoded with `options` drops its
// leading space (SentencePiece with add_space_prefix, asked to strip).
bool OwesPrefixSpace(const Tokenizer& tokenizer, const Tokenizer::DecodeOptions& options);

// Appends the piece of `token` to `out`: nothing for an invalid id, nothing
// for a special token when `skip_special`, and the piece less one leading
// space for the first other token while `*strip_next` (which it then clears).
void AppendRendered(const Tokenizer& tokenizer, Token token, bool skip_special, bool* strip_next, std::string* out);

}  // namespace kvstack::tokenizer_impl
