// GgufFile::Open and its mapping: the only code here that touches the OS.
#include "model/gguf_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "model/gguf_cursor.h"

namespace kvstack {
namespace {

Status ErrnoStatus(std::string_view what, const std::string& path, int err) {
  std::string message = fmt::format("{}: cannot {}: {}", path, what, std::strerror(err));
  if (err == ENOENT) return NotFound(std::move(message));
  return InvalidArgument(std::move(message));
}

// Closes the descriptor on every path out of Map; the mapping outlives it.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() { ::close(fd_); }

 private:
  int fd_;
};

}  // namespace

Result<std::unique_ptr<GgufFile::Mapping>> GgufFile::Mapping::Map(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  FdCloser closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus("stat", path, errno);
  if (!S_ISREG(st.st_mode)) return InvalidArgument(fmt::format("{}: not a regular file", path));
  const auto size = static_cast<size_t>(st.st_size);
  if (size == 0) return std::unique_ptr<Mapping>(new Mapping(nullptr, 0));
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (base == MAP_FAILED) return ErrnoStatus("mmap", path, errno);
  return std::unique_ptr<Mapping>(new Mapping(base, size));
}

GgufFile::Mapping::~Mapping() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

Result<GgufFile> GgufFile::Open(const std::string& path) {
  auto mapping = Mapping::Map(path);
  if (!mapping.ok()) return mapping.status();
  auto file = Parse((*mapping)->bytes());
  if (!file.ok()) return gguf_internal::Annotate(path, file.status());
  file->mapping_ = std::move(*mapping);
  return std::move(file).value();
}

}  // namespace kvstack
