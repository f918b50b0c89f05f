// Text helpers shared by chat-template detection and the family formatters.
#pragma once

#include <string>
#include <string_view>

namespace kvstack::chat_impl {

// `text` without leading and trailing whitespace, as Python's str.strip() (and
// so Jinja's `trim` filter) removes it: ASCII whitespace, U+001C..U+001F, and
// the Unicode spaces (U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000). Bytes that are not valid UTF-8 are never stripped.
std::string_view PyStrip(std::string_view text);

// `source` with each two-character escape `\n` turned into a newline. Jinja
// reads both spellings inside a string literal as the same newline, and GGUF
// files carry templates in either, so detection matches on this form.
std::string UnescapeNewlines(std::string_view source);

inline bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

}  // namespace kvstack::chat_impl
