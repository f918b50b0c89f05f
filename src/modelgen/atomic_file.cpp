// AtomicFile: mkstemp in the target's folder, write, fsync, rename.
#include "modelgen/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

namespace kvstack {
namespace {

std::string ErrnoText() { return std::strerror(errno); }

std::string FolderOf(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

Result<AtomicFile> AtomicFile::Create(const std::string& path) {
  if (path.empty()) return InvalidArgument("output path is empty");
  std::string temp = path + ".tmp.XXXXXX";
  std::vector<char> name(temp.begin(), temp.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0) {
    return InvalidArgument(
        fmt::format("{}: cannot create a file in folder '{}': {}", path, FolderOf(path), ErrnoText()));
  }
  // mkstemp creates 0600; a model file is meant to be shared like any other.
  // A failure is not fatal: the file is still correct, only less readable.
  (void)::fchmod(fd, 0644);
  return AtomicFile(path, std::string(name.data()), fd);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(other.fd_),
      committed_(other.committed_) {
  other.fd_ = -1;
  other.committed_ = true;  // the moved-from object owns nothing to discard
}

AtomicFile::~AtomicFile() {
  if (!committed_) Discard();
}

void AtomicFile::Discard() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status AtomicFile::Append(std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Unavailable(fmt::format("{}: write failed: {}", temp_path_, ErrnoText()));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (::fsync(fd_) != 0) return Unavailable(fmt::format("{}: fsync failed: {}", temp_path_, ErrnoText()));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return Unavailable(fmt::format("{}: close failed: {}", temp_path_, ErrnoText()));
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return Unavailable(fmt::format("{}: cannot rename {} over it: {}", path_, temp_path_, ErrnoText()));
  }
  committed_ = true;
  // Make the rename itself durable; a failure here leaves a complete file
  // that a crash might un-rename, which is no worse than not syncing at all.
  const int dir = ::open(FolderOf(path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
  return Status::Ok();
}

}  // namespace kvstack
