// UTF-8 helpers for the tokenizers: what llama.cpp counts as one character,
// strict validation (PCRE2 needs well-formed input), and where a stream of
// bytes may be cut without splitting a character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvstack::tokenizer_impl {

// Bytes in the sequence that `lead` starts, from its high bits alone, as
// llama.cpp's unicode_len_utf8 counts them: 1 for ASCII and for stray
// continuation bytes, 2, 3 or 4 for lead bytes. The tokenizers split text
// into symbols this way; the caller clamps the length to the bytes left.
size_t Utf8SequenceLength(uint8_t lead);

// Length of the well-formed UTF-8 sequence (Unicode Table 3-7: no overlongs,
// no surrogates, nothing above U+10FFFF) at the start of `bytes`, or 0 when
// `bytes` is empty or does not start with one.
size_t WellFormedPrefix(std::string_view bytes);

// `text` with every byte that is not part of a well-formed sequence replaced
// by U+FFFD, one replacement per byte (llama.cpp's behaviour).
std::string ToWellFormedUtf8(std::string_view text);
bool IsWellFormedUtf8(std::string_view text);

// Length of the longest prefix of `bytes` that does not end inside an
// incomplete character: a trailing lead byte and the continuation bytes after
// it are held back only while they can still become a well-formed sequence.
size_t CompleteUtf8Prefix(std::string_view bytes);

// Appends the UTF-8 encoding of `cp`. REQUIRES: cp <= 0x10FFFF.
void AppendUtf8(uint32_t cp, std::string* out);

// The code point at `*pos`, advancing `*pos` past it.
// REQUIRES: a well-formed sequence starts at `*pos`.
uint32_t DecodeUtf8(std::string_view text, size_t* pos);

}  // namespace kvstack::tokenizer_impl
