// GgufFile::Mapping (private to src/model): a read-only mmap of a whole file,
// unmapped when destroyed.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "kvstack/gguf.h"

namespace kvstack {

class GgufFile::Mapping {
 public:
  // NotFound when `path` does not exist; InvalidArgument when it cannot be
  // opened, is not a regular file, or cannot be mapped. An empty file maps to
  // an empty span (mmap refuses length 0).
  static Result<std::unique_ptr<Mapping>> Map(const std::string& path);

  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(base_), size_}; }

 private:
  Mapping(void* base, size_t size) : base_(base), size_(size) {}

  void* base_;  // null for an empty file
  size_t size_;
};

}  // namespace kvstack
