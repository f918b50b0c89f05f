// DiskIo: the disk tier's I/O seam. The tier hands it batches of aligned
// reads and writes; the real one runs them through io_uring, and tests wrap
// it to inject faults (a full disk, failing writes) as LevelDB's tests wrap
// its Env.
//
// Thread safety: none. One tier's worker uses one DiskIo (the tier also uses
// it while opening, before the worker starts).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace kvstack {

struct DiskIoOp {
  enum class Kind : uint8_t { kRead, kWrite };
  Kind kind = Kind::kRead;
  int fd = -1;
  uint64_t offset = 0;       // a multiple of 4096 (O_DIRECT)
  std::vector<iovec> iov;    // each base 4096-aligned, each length a multiple of 4096
  int64_t result = 0;        // filled by Run(): bytes transferred, or -errno

  uint64_t bytes() const {
    uint64_t n = 0;
    for (const iovec& v : iov) n += v.iov_len;
    return n;
  }
};

class DiskIo {
 public:
  virtual ~DiskIo() = default;
  // Runs every op (concurrently, in any order) and fills each result. Ops in
  // one call must not overlap in the file.
  virtual void Run(std::span<DiskIoOp> ops) = 0;
};

// io_uring with `queue_depth` entries; when the kernel refuses io_uring,
// plain preadv/pwritev one at a time (same results).
std::unique_ptr<DiskIo> MakeUringDiskIo(unsigned queue_depth = 64);

}  // namespace kvstack
