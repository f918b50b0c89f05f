// GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte
// as one printable code point, so that a vocabulary of strings can hold any
// byte sequence. Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand
// for themselves; the other 68 (controls, space, DEL, NBSP, soft hyphen) take
// U+0100.. in byte order, so a space is 'Ġ' (U+0120) and '\n' is 'Ċ'.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvstack::tokenizer_impl {

// The code point that spells `byte`.
uint32_t ByteToCodePoint(uint8_t byte);
// The byte that `cp` spells, if it is in the alphabet.
std::optional<uint8_t> CodePointToByte(uint32_t cp);

// Each byte of `bytes` spelled in the alphabet (UTF-8 encoded).
std::string ByteLevelEncode(std::string_view bytes);
// The bytes that `text` spells. Code points outside the alphabet and bytes
// that are not well-formed UTF-8 (possible only in hand-edited vocabularies)
// are copied through as they are.
std::string ByteLevelDecode(std::string_view text);

}  // namespace kvstack::tokenizer_impl
