// AlignedBuffer: an owned byte buffer aligned for O_DIRECT (4096).
// Thread safety: a value; the owner orders access.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

namespace kvstack::tiers_internal {

inline constexpr size_t kIoAlign = 4096;

inline size_t RoundUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // Empty (data() == nullptr) when the memory cannot be had.
  // `zero` false: staging buffers whose every byte the owner writes.
  explicit AlignedBuffer(size_t bytes, bool zero = true) : size_(RoundUp(bytes, kIoAlign)) {
    if (size_ == 0) return;
    data_.reset(static_cast<std::byte*>(std::aligned_alloc(kIoAlign, size_)));
    if (data_) {
      if (zero) std::memset(data_.get(), 0, size_);  // touched once, up front
    } else {
      size_ = 0;
    }
  }
  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t size_ = 0;
};

}  // namespace kvstack::tiers_internal
