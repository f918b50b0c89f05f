// Pre-tokenizers of byte-level BPE vocabularies: the regular expressions that
// cut text into words before merging, chosen by `tokenizer.ggml.pre`.
//
// The patterns are those of the models' tokenizer.json files as llama.cpp
// adapted them (Llama 3's `(?i:'s|...)` spelled with explicit [sS] classes).
// `\s` and `\S` are rewritten to Unicode's White_Space property (what
// llama.cpp and Hugging Face tokenizers use; PCRE2's own `\s` misses U+0085).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/status.h"
#include "tokenizer/regex.h"

namespace kvstack::tokenizer_impl {

struct PreTokenizerSpec {
  // Applied in order; each one splits every piece the previous ones made.
  std::vector<std::string> patterns;
  // A word that is itself a token is emitted whole, without merging (Llama 3).
  bool ignore_merges = false;
  // llama.cpp's add_bos default for this pre-tokenizer (the file's
  // tokenizer.ggml.add_bos_token overrides it).
  bool add_bos = false;
};

// The spec for a `tokenizer.ggml.pre` value ("" reads as "default"), or
// nullopt for a name kvstack does not support.
std::optional<PreTokenizerSpec> LookupPreTokenizer(std::string_view name);
// "gpt-2, llama-bpe, ..." for error messages.
std::string SupportedPreTokenizerNames();

// `pattern` with `\s` and `\S` replaced by White_Space classes (inside a
// character class `\s` contributes its members; `\S` is only rewritten
// outside classes, the only place the supported patterns use it).
std::string ExpandWhitespaceClasses(std::string_view pattern);

class PreTokenizer {
 public:
  // Compiles each pattern after ExpandWhitespaceClasses; fails with
  // InvalidArgument for a pattern PCRE2 rejects.
  static Result<PreTokenizer> Compile(std::span<const std::string> patterns);

  // The words of `text`, in order, covering it exactly (views into `text`).
  // REQUIRES: `text` is well-formed UTF-8.
  std::vector<std::string_view> Split(std::string_view text) const;

 private:
  explicit PreTokenizer(std::vector<Regex> regexes) : regexes_(std::move(regexes)) {}
  std::vector<Regex> regexes_;
};

}  // namespace kvstack::tokenizer_impl
