// Regex: one compiled pre-tokenizer pattern (PCRE2 in UTF mode with Unicode
// properties, JIT-compiled when the platform allows), and the split that
// llama.cpp's unicode_regex_split performs with it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/status.h"

namespace kvstack::tokenizer_impl {

class Regex {
 public:
  // Compiles `pattern` with PCRE2_UTF | PCRE2_UCP. Fails with InvalidArgument
  // carrying PCRE2's message and the offset in the pattern.
  static Result<Regex> Compile(std::string_view pattern);

  // Cuts `text` into consecutive non-empty pieces: every match is a piece,
  // and so is every run of text between matches. Appends views into `text`.
  // Should PCRE2 give up (its match or heap limit, on pathological input), the
  // rest of `text` becomes one piece. Safe to call from many threads.
  // REQUIRES: `text` is well-formed UTF-8.
  void Split(std::string_view text, std::vector<std::string_view>* out) const;

  const std::string& pattern() const;

 private:
  struct Code;  // the compiled pattern; immutable, shared by copies
  explicit Regex(std::shared_ptr<const Code> code) : code_(std::move(code)) {}
  std::shared_ptr<const Code> code_;
};

}  // namespace kvstack::tokenizer_impl
