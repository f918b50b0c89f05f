#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {
namespace {

constexpr bool StandsForItself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr std::array<uint16_t, 256> MakeByteToCodePoint() {
  std::array<uint16_t, 256> table{};
  uint16_t next = 0x100;
  for (int b = 0; b < 256; ++b) table[b] = StandsForItself(b) ? static_cast<uint16_t>(b) : next++;
  return table;
}

constexpr std::array<uint16_t, 256> kByteToCodePoint = MakeByteToCodePoint();
// Every byte that does not stand for itself maps into [0x100, kEnd).
constexpr uint32_t kEnd = 0x100 + 68;
static_assert(kByteToCodePoint[' '] == 0x120 && kByteToCodePoint['\n'] == 0x10A);

constexpr std::array<uint8_t, kEnd - 0x100> MakeShiftedToByte() {
  std::array<uint8_t, kEnd - 0x100> table{};
  for (int b = 0; b < 256; ++b) {
    if (!StandsForItself(b)) table[kByteToCodePoint[b] - 0x100] = static_cast<uint8_t>(b);
  }
  return table;
}

constexpr std::array<uint8_t, kEnd - 0x100> kShiftedToByte = MakeShiftedToByte();

}  // namespace

uint32_t ByteToCodePoint(uint8_t byte) { return kByteToCodePoint[byte]; }

std::optional<uint8_t> CodePointToByte(uint32_t cp) {
  if (cp < 0x100) {
    if (StandsForItself(static_cast<int>(cp))) return static_cast<uint8_t>(cp);
    return std::nullopt;
  }
  if (cp < kEnd) return kShiftedToByte[cp - 0x100];
  return std::nullopt;
}

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToCodePoint(static_cast<uint8_t>(c)), &out);
  return out;
}

std::string ByteLevelDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (WellFormedPrefix(text.substr(pos)) == 0) {  // a malformed vocabulary entry
      out.push_back(text[pos++]);
      continue;
    }
    const uint32_t cp = DecodeUtf8(text, &pos);
    if (auto byte = CodePointToByte(cp)) {
      out.push_back(static_cast<char>(*byte));
    } else {
      AppendUtf8(cp, &out);
    }
  }
  return out;
}

}  // namespace kvstack::tokenizer_impl
