#include "tokenizer/render.h"
#include "tokenizer/utf8.h"

namespace kvstack {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, Tokenizer::DecodeOptions options)
    : tokenizer_(&tokenizer), options_(options), strip_next_(tokenizer_impl::OwesPrefixSpace(tokenizer, options)) {}

std::string StreamDecoder::Push(Token token) {
  tokenizer_impl::AppendRendered(*tokenizer_, token, options_.skip_special, &strip_next_, &pending_);
  const size_t ready = tokenizer_impl::CompleteUtf8Prefix(pending_);
  std::string text = pending_.substr(0, ready);
  pending_.erase(0, ready);
  return text;
}

std::string StreamDecoder::Flush() {
  std::string text;
  text.swap(pending_);
  return text;
}

}  // namespace kvstack
