// Bounds-checked little-endian reads over a GGUF image (private to src/model).
//
// Every read checks the remaining length first and reports a truncation as
// DataLoss naming what was being read, its offset and the file size, so the
// parser above never touches a byte it has not proven to exist.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "kvstack/status.h"

namespace kvstack::gguf_internal {

// GGUF is little-endian on disk and scalars are copied as they lie; a
// big-endian host would need byte swaps that nobody would ever exercise.
static_assert(std::endian::native == std::endian::little, "kvstack reads GGUF on little-endian hosts only");

class ByteCursor {
 public:
  explicit ByteCursor(std::span<const std::byte> bytes) : bytes_(bytes) {}

  uint64_t offset() const { return offset_; }
  uint64_t size() const { return bytes_.size(); }
  uint64_t remaining() const { return bytes_.size() - offset_; }

  // DataLoss unless `n` more bytes exist; `what` names them in the message.
  Status Require(uint64_t n, std::string_view what) const;

  template <typename T>
  Result<T> Read(std::string_view what) {
    static_assert(std::is_trivially_copyable_v<T>);
    Status s = Require(sizeof(T), what);
    if (!s.ok()) return s;
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  // A uint64 length followed by that many bytes; the view points into the image.
  Result<std::string_view> ReadString(std::string_view what);

  // REQUIRES: Require(n) succeeded.
  const std::byte* Take(uint64_t n) {
    const std::byte* p = bytes_.data() + offset_;
    offset_ += n;
    return p;
  }

 private:
  std::span<const std::byte> bytes_;
  uint64_t offset_ = 0;
};

// `status` with `context` and ": " in front of its message, same code.
Status Annotate(std::string_view context, const Status& status);

// A key or tensor name as it appears in messages: quoted, control and
// non-ASCII bytes escaped, cut after 80 characters.
std::string Printable(std::string_view text);

}  // namespace kvstack::gguf_internal
