#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {
namespace {

// The shape of a well-formed sequence, from its lead byte: its length and the
// range its second byte must fall in (later bytes are always 0x80-0xBF).
struct SequenceShape {
  size_t length = 0;  // 0: the byte cannot start a sequence
  uint8_t second_lo = 0x80;
  uint8_t second_hi = 0xBF;
};

SequenceShape ShapeOf(uint8_t lead) {
  if (lead < 0x80) return {1};
  if (lead >= 0xC2 && lead <= 0xDF) return {2};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (lead >= 0xE1 && lead <= 0xEF) return {3};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead >= 0xF1 && lead <= 0xF3) return {4};
  if (lead == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {};
}

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Whether bytes[1..n) fit `shape` (n = bytes.size(), at most shape.length).
bool TailFits(std::string_view bytes, const SequenceShape& shape) {
  for (size_t i = 1; i < bytes.size(); ++i) {
    const auto b = static_cast<uint8_t>(bytes[i]);
    const bool ok = i == 1 ? (b >= shape.second_lo && b <= shape.second_hi) : IsContinuation(b);
    if (!ok) return false;
  }
  return true;
}

}  // namespace

size_t Utf8SequenceLength(uint8_t lead) {
  static constexpr size_t kByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kByHighNibble[lead >> 4];
}

size_t WellFormedPrefix(std::string_view bytes) {
  if (bytes.empty()) return 0;
  const SequenceShape shape = ShapeOf(static_cast<uint8_t>(bytes[0]));
  if (shape.length == 0 || bytes.size() < shape.length) return 0;
  return TailFits(bytes.substr(0, shape.length), shape) ? shape.length : 0;
}

bool IsWellFormedUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = WellFormedPrefix(text.substr(pos));
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string ToWellFormedUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = WellFormedPrefix(text.substr(pos));
    if (n == 0) {
      AppendUtf8(0xFFFD, &out);
      ++pos;
    } else {
      out.append(text.substr(pos, n));
      pos += n;
    }
  }
  return out;
}

size_t CompleteUtf8Prefix(std::string_view bytes) {
  // An incomplete character has at most 3 bytes: look for its lead among them.
  const size_t size = bytes.size();
  for (size_t back = 1; back <= 3 && back <= size; ++back) {
    const size_t start = size - back;
    const auto b = static_cast<uint8_t>(bytes[start]);
    if (IsContinuation(b)) continue;
    const SequenceShape shape = ShapeOf(b);
    const bool incomplete = shape.length > back && TailFits(bytes.substr(start), shape);
    return incomplete ? start : size;
  }
  return size;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t DecodeUtf8(std::string_view text, size_t* pos) {
  const auto lead = static_cast<uint8_t>(text[*pos]);
  const size_t n = Utf8SequenceLength(lead);
  static constexpr uint8_t kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  uint32_t cp = lead & kLeadMask[n];
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<uint8_t>(text[*pos + i]) & 0x3F);
  *pos += n;
  return cp;
}

}  // namespace kvstack::tokenizer_impl
