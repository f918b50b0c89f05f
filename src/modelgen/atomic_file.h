// AtomicFile: a file that appears at its path complete or not at all.
//
// Create opens a temporary file in the target's folder (same file system, so
// the final rename is atomic); Append writes to it; Commit syncs it and renames
// it over the target. Destroying an uncommitted AtomicFile removes the
// temporary file, so every failure path cleans up by returning.
//
// Thread safety: one thread at a time.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "kvstack/status.h"

namespace kvstack {

class AtomicFile {
 public:
  // Fails with InvalidArgument naming the path when the temporary file cannot
  // be created (a missing folder, no permission).
  static Result<AtomicFile> Create(const std::string& path);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  // Unavailable with strerror when the write fails (a full disk).
  Status Append(std::span<const std::byte> bytes);
  // Syncs, closes and renames. Unavailable when any of those fails (the
  // temporary file is then removed and the target left as it was).
  // REQUIRES: called at most once.
  Status Commit();

 private:
  AtomicFile(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}
  void Discard();

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;  // -1 once closed or moved from
  bool committed_ = false;
};

}  // namespace kvstack
