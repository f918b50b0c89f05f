#include "tiers/disk_io.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>

namespace kvstack {
namespace {

int64_t RunOneSync(const DiskIoOp& op) {
  const int n = static_cast<int>(op.iov.size());
  ssize_t r = op.kind == DiskIoOp::Kind::kRead ? ::preadv(op.fd, op.iov.data(), n, static_cast<off_t>(op.offset))
                                               : ::pwritev(op.fd, op.iov.data(), n, static_cast<off_t>(op.offset));
  return r < 0 ? -errno : r;
}

class UringDiskIo final : public DiskIo {
 public:
  explicit UringDiskIo(unsigned depth) : depth_(depth) { ok_ = io_uring_queue_init(depth, &ring_, 0) == 0; }
  ~UringDiskIo() override {
    if (ok_) io_uring_queue_exit(&ring_);
  }

  void Run(std::span<DiskIoOp> ops) override {
    if (!ok_) {
      for (DiskIoOp& op : ops) op.result = RunOneSync(op);
      return;
    }
    size_t next = 0, done = 0, in_flight = 0;
    while (done < ops.size()) {
      while (next < ops.size() && in_flight < depth_) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) break;
        DiskIoOp& op = ops[next];
        const unsigned n = static_cast<unsigned>(op.iov.size());
        if (op.kind == DiskIoOp::Kind::kRead) {
          io_uring_prep_readv(sqe, op.fd, op.iov.data(), n, op.offset);
        } else {
          io_uring_prep_writev(sqe, op.fd, op.iov.data(), n, op.offset);
        }
        io_uring_sqe_set_data64(sqe, next);
        ++next;
        ++in_flight;
      }
      int r = io_uring_submit_and_wait(&ring_, 1);
      if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
        // The ring itself failed: finish the rest synchronously.
        Reap(ops, &done, &in_flight);
        for (size_t i = next; i < ops.size(); ++i) ops[i].result = RunOneSync(ops[i]);
        done += ops.size() - next;
        next = ops.size();
        while (in_flight > 0) {
          io_uring_cqe* cqe = nullptr;
          if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
          Complete(ops, cqe, &done, &in_flight);
        }
        return;
      }
      Reap(ops, &done, &in_flight);
    }
  }

 private:
  void Complete(std::span<DiskIoOp> ops, io_uring_cqe* cqe, size_t* done, size_t* in_flight) {
    ops[io_uring_cqe_get_data64(cqe)].result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    ++*done;
    --*in_flight;
  }
  void Reap(std::span<DiskIoOp> ops, size_t* done, size_t* in_flight) {
    io_uring_cqe* cqe = nullptr;
    while (*in_flight > 0 && io_uring_peek_cqe(&ring_, &cqe) == 0) Complete(ops, cqe, done, in_flight);
  }

  unsigned depth_;
  io_uring ring_{};
  bool ok_ = false;
};

}  // namespace

std::unique_ptr<DiskIo> MakeUringDiskIo(unsigned queue_depth) { return std::make_unique<UringDiskIo>(queue_depth); }

}  // namespace kvstack
