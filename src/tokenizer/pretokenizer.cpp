#include "tokenizer/pretokenizer.h"

#include <array>

namespace kvstack::tokenizer_impl {
namespace {

// Unicode's White_Space property (PropList.txt), as PCRE2 class members.
constexpr std::string_view kWhiteSpace =
    "\\x{09}-\\x{0D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// GPT-2's pattern. llama.cpp drops the final `|\s+`; with or without it the
// words are the same, because a lone whitespace character before a non-space
// is the only text no other branch takes, and the gap becomes a word anyway.
constexpr std::string_view kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

constexpr std::string_view kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Llama 3's pattern with single digits.
constexpr std::string_view kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Family {
  std::span<const std::string_view> names;
  std::span<const std::string_view> patterns;
  bool ignore_merges;
  bool add_bos;
};

constexpr std::array<std::string_view, 7> kGpt2Names = {"gpt-2", "phi-2", "roberta-bpe", "gigachat",
                                                          "mpt",   "olmo",  "jais"};
constexpr std::array<std::string_view, 4> kLlama3Names = {"llama3", "llama-v3", "llama-bpe", "falcon3"};
// dbrx and smaug use Llama 3's pattern but keep llama.cpp's BPE defaults.
constexpr std::array<std::string_view, 2> kLlama3PatternNames = {"dbrx", "smaug-bpe"};
constexpr std::array<std::string_view, 3> kQwen2Names = {"qwen2", "megrez", "stablelm2"};
constexpr std::array<std::string_view, 1> kDefaultNames = {"default"};

constexpr std::array<std::string_view, 1> kGpt2Patterns = {kGpt2};
constexpr std::array<std::string_view, 1> kLlama3Patterns = {kLlama3};
constexpr std::array<std::string_view, 1> kQwen2Patterns = {kQwen2};
// llama.cpp's fallback for BPE files that name no pre-tokenizer.
constexpr std::array<std::string_view, 4> kDefaultPatterns = {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)",
                                                              "[0-9][0-9][0-9]"};

constexpr std::array<Family, 5> kFamilies = {{
    {kGpt2Names, kGpt2Patterns, false, false},
    {kLlama3Names, kLlama3Patterns, true, true},
    {kLlama3PatternNames, kLlama3Patterns, false, false},
    {kQwen2Names, kQwen2Patterns, false, false},
    {kDefaultNames, kDefaultPatterns, false, false},
}};

}  // namespace

std::optional<PreTokenizerSpec> LookupPreTokenizer(std::string_view name) {
  if (name.empty()) name = "default";
  for (const Family& family : kFamilies) {
    for (std::string_view candidate : family.names) {
      if (candidate != name) continue;
      PreTokenizerSpec spec;
      for (std::string_view p : family.patterns) spec.patterns.emplace_back(p);
      spec.ignore_merges = family.ignore_merges;
      spec.add_bos = family.add_bos;
      return spec;
    }
  }
  return std::nullopt;
}

std::string SupportedPreTokenizerNames() {
  std::string names;
  for (const Family& family : kFamilies) {
    for (std::string_view name : family.names) {
      if (!names.empty()) names += ", ";
      names += name;
    }
  }
  return names;
}

std::string ExpandWhitespaceClasses(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() * 2);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char escaped = pattern[++i];
      if (escaped == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (escaped == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += escaped;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

Result<PreTokenizer> PreTokenizer::Compile(std::span<const std::string> patterns) {
  std::vector<Regex> regexes;
  for (const std::string& pattern : patterns) {
    auto regex = Regex::Compile(ExpandWhitespaceClasses(pattern));
    if (!regex.ok()) return regex.status();
    regexes.push_back(std::move(regex).value());
  }
  return PreTokenizer(std::move(regexes));
}

std::vector<std::string_view> PreTokenizer::Split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  std::vector<std::string_view> next;
  for (const Regex& regex : regexes_) {
    next.clear();
    for (std::string_view piece : pieces) regex.Split(piece, &next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace kvstack::tokenizer_impl
