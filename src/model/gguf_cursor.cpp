#include "model/gguf_cursor.h"

#include <fmt/format.h>

namespace kvstack::gguf_internal {

Status ByteCursor::Require(uint64_t n, std::string_view what) const {
  if (n <= remaining()) return Status::Ok();
  return DataLoss(fmt::format("truncated at offset {}: {} needs {} bytes, but the file ends at {} ({} left)",
                              offset_, what, n, bytes_.size(), remaining()));
}

Result<std::string_view> ByteCursor::ReadString(std::string_view what) {
  // Callers read tens of thousands of strings (token lists), so messages are
  // only formatted on the error path.
  const uint64_t at = offset_;
  if (remaining() < sizeof(uint64_t)) {
    return DataLoss(fmt::format("truncated at offset {}: the length of {} needs 8 bytes, but the file ends at {} ({} left)",
                                at, what, bytes_.size(), remaining()));
  }
  uint64_t length;
  std::memcpy(&length, bytes_.data() + offset_, sizeof(length));
  offset_ += sizeof(length);
  if (length > remaining()) {
    return DataLoss(fmt::format("{} at offset {} claims {} bytes, but only {} remain before the end of the file ({} bytes)",
                                what, at, length, remaining(), bytes_.size()));
  }
  const char* p = reinterpret_cast<const char*>(Take(length));
  return std::string_view(p, length);
}

Status Annotate(std::string_view context, const Status& status) {
  return Status(status.code(), fmt::format("{}: {}", context, status.message()));
}

std::string Printable(std::string_view text) {
  constexpr size_t kMaxShown = 80;
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (text.size() > kMaxShown) out += fmt::format("...' ({} bytes)", text.size());
  else out += "'";
  return out;
}

}  // namespace kvstack::gguf_internal
