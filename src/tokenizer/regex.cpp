#include "tokenizer/regex.h"

#include <algorithm>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {

struct Regex::Code {
  std::string pattern;
  pcre2_code* code = nullptr;

  Code() = default;
  Code(const Code&) = delete;
  Code& operator=(const Code&) = delete;
  ~Code() { pcre2_code_free(code); }
};

namespace {

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

Result<Regex> Regex::Compile(std::string_view pattern) {
  auto code = std::make_shared<Code>();
  code->pattern = std::string(pattern);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                             &error, &error_offset, nullptr);
  if (code->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return InvalidArgument(fmt::format("pre-tokenizer pattern '{}': {} at offset {}", pattern,
                                       reinterpret_cast<const char*>(message), error_offset));
  }
  // JIT is a speed-up only: where it is unavailable pcre2_match interprets.
  (void)pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE);
  return Regex(std::move(code));
}

const std::string& Regex::pattern() const { return code_->pattern; }

void Regex::Split(std::string_view text, std::vector<std::string_view>* out) const {
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> match(
      pcre2_match_data_create_from_pattern(code_->code, nullptr));
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t piece_begin = 0;  // end of the last match: where the next gap starts
  size_t offset = 0;
  while (offset < text.size() && match != nullptr) {
    int rc = pcre2_match(code_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // the interpreter keeps its stack on the heap
      rc = pcre2_match(code_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, match.get(),
                       nullptr);
    }
    if (rc < 0) break;  // no further match, or PCRE2 gave up: the rest is one piece
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end == begin) {  // none of kvstack's patterns match empty text; step over a character if one does
      if (begin >= text.size()) break;
      offset = begin + std::min(Utf8SequenceLength(static_cast<uint8_t>(text[begin])), text.size() - begin);
      continue;
    }
    if (begin > piece_begin) out->push_back(text.substr(piece_begin, begin - piece_begin));
    out->push_back(text.substr(begin, end - begin));
    piece_begin = end;
    offset = end;
  }
  if (piece_begin < text.size()) out->push_back(text.substr(piece_begin));
}

}  // namespace kvstack::tokenizer_impl
