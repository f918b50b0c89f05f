#include "chat/text.h"

#include <cstdint>

namespace kvstack::chat_impl {
namespace {

// Py_UNICODE_ISSPACE: the code points Python's str.strip() removes.
bool IsPyWhitespace(char32_t c) {
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return true;
  if (c < 0x80) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// Decodes the UTF-8 character of `len` bytes at `p`; 0xFFFFFFFF when the bytes
// are not one well-formed character (those are never whitespace).
char32_t Decode(const unsigned char* p, size_t len) {
  constexpr char32_t kInvalid = 0xFFFFFFFF;
  if (len == 1) return p[0] < 0x80 ? p[0] : kInvalid;
  char32_t c;
  if (len == 2 && (p[0] & 0xE0) == 0xC0) {
    c = p[0] & 0x1F;
  } else if (len == 3 && (p[0] & 0xF0) == 0xE0) {
    c = p[0] & 0x0F;
  } else {
    return kInvalid;  // no whitespace is 4 bytes long
  }
  for (size_t i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return kInvalid;
    c = (c << 6) | (p[i] & 0x3F);
  }
  return c;
}

size_t LeadLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

}  // namespace

std::string_view PyStrip(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end) {
    const size_t len = LeadLength(bytes[begin]);
    if (len == 0 || begin + len > end || !IsPyWhitespace(Decode(bytes + begin, len))) break;
    begin += len;
  }
  while (end > begin) {
    size_t start = end - 1;  // back over continuation bytes to the lead byte
    while (start > begin && end - start < 4 && (bytes[start] & 0xC0) == 0x80) --start;
    if (LeadLength(bytes[start]) != end - start || !IsPyWhitespace(Decode(bytes + start, end - start))) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string UnescapeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\\' && i + 1 < source.size() && source[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += source[i];
    }
  }
  return out;
}

}  // namespace kvstack::chat_impl
