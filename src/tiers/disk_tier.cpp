// The disk tier: tier slots are fixed-size records in large segment files
// (disk_format.h), so the slot a TierIndex hands out is also the block's
// place on disk, and the core's eviction policy decides which record is
// overwritten next. One worker thread runs every read and write through the
// DiskIo seam (io_uring, O_DIRECT when the filesystem allows it).
//
// A slot's I/O state, next to the index's Free / Busy / Held (tier_index.h):
//   kOnDisk    its record on disk is the truth (or the slot is Free).
//   kEncoding  Busy: a Put is copying the block into a staging buffer; gets miss.
//   kStaged    Busy: the record is encoded in staging_[slot] and queued for
//              writing; gets copy from staging, no disk read.
// A write completes: kStaged -> kOnDisk and the slot is released (Held). A
// read holds a reference (Busy), so its record is not overwritten meanwhile.
//
// Lock order: mu_, then the stats' and the fault log's own locks. The worker
// never holds mu_ while doing I/O.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "kvstack/tiers.h"
#include "tiers/aligned_buffer.h"
#include "tiers/disk_format.h"
#include "tiers/disk_io.h"
#include "tiers/fault_log.h"
#include "tiers/op_state.h"
#include "tiers/indexed_tier.h"
#include "tiers/tier_index.h"
#include "tiers/tier_stats.h"

namespace kvstack {
namespace {

using namespace tiers_internal;  // NOLINT: a .cpp of the component

enum class SlotIo : uint8_t { kOnDisk, kEncoding, kStaged };

constexpr size_t kMaxIovPerOp = 1024;  // IOV_MAX
constexpr size_t kReindexBatch = 256;  // header reads per batch at open

struct WriteJob {
  std::shared_ptr<OpState> state;
  AlignedBuffer buffer;             // records, one per new slot, in order
  std::vector<int32_t> slots;       // slot of each record
  std::vector<BlockHash> hashes;
  std::vector<size_t> items;        // index into state->ok of each record
  uint64_t already_held = 0;        // puts answered without a write
  uint64_t refused = 0;             // puts refused at once (bad size, full, busy)
  int64_t start_us = 0;
};

struct ReadJob {
  struct Read {
    int32_t slot;
    BlockHash hash;
    std::span<std::byte> dest;
    size_t item;
  };
  std::shared_ptr<OpState> state;
  std::vector<Read> reads;
  uint64_t served = 0;              // hits served from staging at Get time
  uint64_t bytes = 0;
  int64_t start_us = 0;
};

class DiskTier final : public IndexedTier {
 public:
  explicit DiskTier(const DiskTierOptions& o)
      : o_(o),
        clock_(o.clock != nullptr ? o.clock : &SteadyClock::Default()),
        record_bytes_(RecordBytes(o.bytes_per_block)),
        log_(o.log, fmt::format("disk tier {}: ", o.dir)),
        stats_("disk") {}

  ~DiskTier() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

  Status Open();

  std::string_view name() const override { return "disk"; }
  size_t bytes_per_block() const override { return o_.bytes_per_block; }

  TierFuture Put(std::span<const TierPut> blocks) override;
  TierFuture Lookup(std::span<const BlockHash> hashes) override;
  TierFuture Get(std::span<const TierGet> blocks) override;

  // Not durable: the record stays on disk until its slot is reused, and a
  // restart that finds it intact indexes it again (its bytes are still the
  // ones put under that key).
  void Remove(const BlockHash& hash) override { RemoveIndexed(hash); }

  TierMetrics Metrics() const override { return IndexedMetrics(stats_); }

  Status CheckInvariants() const override {
    std::lock_guard<std::mutex> lock(mu_);
    KVSTACK_RETURN_IF_ERROR(index_->CheckInvariants());
    for (int32_t s = 0; s < static_cast<int32_t>(slot_io_.size()); ++s) {
      const SlotIo io = slot_io_[static_cast<size_t>(s)];
      if (io != SlotIo::kOnDisk && index_->meta(s).state != BlockState::kInUse) {
        return Internal(fmt::format("disk tier slot {}: I/O state {} but not busy", s, static_cast<int>(io)));
      }
      if ((io == SlotIo::kStaged) != (staging_[static_cast<size_t>(s)] != nullptr)) {
        return Internal(fmt::format("disk tier slot {}: staged {} with staging pointer {}", s,
                                    io == SlotIo::kStaged, staging_[static_cast<size_t>(s)] != nullptr));
      }
    }
    return Status::Ok();
  }

 private:
  int SegmentFd(int32_t slot) const { return fds_[static_cast<size_t>(slot / slots_per_segment_)]; }
  uint64_t SlotOffset(int32_t slot) const {
    return static_cast<uint64_t>(slot % slots_per_segment_) * record_bytes_;
  }
  Status CheckManifest();
  Status OpenSegments(bool direct);
  void Reindex();
  void WorkerLoop();
  void RunOps(std::vector<DiskIoOp>& ops);
  void FinishWrites(std::vector<WriteJob>& jobs, const std::vector<DiskIoOp>& ops,
                    const std::vector<std::vector<std::pair<size_t, size_t>>>& op_records);
  void FinishReads(std::vector<ReadJob>& jobs, std::vector<DiskIoOp>& ops, std::vector<AlignedBuffer>& bounce);
  // A buffer of at least `bytes` (not zeroed; empty if memory ran out).
  AlignedBuffer TakeBuffer(size_t bytes);
  void GiveBack(AlignedBuffer buffer);

  const DiskTierOptions o_;
  const Clock* clock_;
  const size_t record_bytes_;
  int32_t slots_per_segment_ = 1;
  std::shared_ptr<DiskIo> io_;
  std::vector<int> fds_;  // one per segment; reopened only by the worker
  bool direct_ = true;    // worker-owned after Open()
  FaultLog log_;
  TierStats stats_;

  // Staging and bounce buffers are reused: fresh large allocations cost a
  // page fault per 4 KiB, more than encoding the block. Never held with mu_.
  std::mutex spare_mu_;
  std::vector<AlignedBuffer> spare_;  // GUARDED_BY(spare_mu_)
  size_t spare_bytes_ = 0;            // GUARDED_BY(spare_mu_)

  std::condition_variable work_cv_;
  std::vector<SlotIo> slot_io_;            // GUARDED_BY(mu_)
  std::vector<const std::byte*> staging_;  // GUARDED_BY(mu_): the record of a kStaged slot
  std::deque<WriteJob> writes_;            // GUARDED_BY(mu_)
  std::deque<ReadJob> reads_;              // GUARDED_BY(mu_)
  uint64_t next_sequence_ = 1;             // GUARDED_BY(mu_)
  Micros full_until_ = 0;                  // GUARDED_BY(mu_): puts store nothing before this
  bool stop_ = false;                      // GUARDED_BY(mu_)
  std::thread worker_;
};

constexpr size_t kMaxSpareBytes = 256u << 20;

AlignedBuffer DiskTier::TakeBuffer(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(spare_mu_);
    for (size_t i = 0; i < spare_.size(); ++i) {
      const size_t have = spare_[i].size();
      if (have >= bytes && have <= 2 * bytes) {
        AlignedBuffer b = std::move(spare_[i]);
        spare_[i] = std::move(spare_.back());
        spare_.pop_back();
        spare_bytes_ -= have;
        return b;
      }
    }
  }
  return AlignedBuffer(bytes, /*zero=*/false);
}

void DiskTier::GiveBack(AlignedBuffer buffer) {
  if (buffer.data() == nullptr) return;
  std::lock_guard<std::mutex> lock(spare_mu_);
  if (spare_bytes_ + buffer.size() > kMaxSpareBytes) return;
  spare_bytes_ += buffer.size();
  spare_.push_back(std::move(buffer));
}

Status DiskTier::CheckManifest() {
  namespace fs = std::filesystem;
  const fs::path path = fs::path(o_.dir) / kManifestName;
  const std::string want = fmt::format("kvstack disk tier 1\nbytes_per_block {}\nrecord_bytes {}\nslots_per_segment {}\n",
                                       o_.bytes_per_block, record_bytes_, slots_per_segment_);
  std::error_code ec;
  if (fs::exists(path, ec)) {
    std::ifstream in(path);
    std::stringstream have;
    have << in.rdbuf();
    if (have.str() != want) {
      return FailedPrecondition(fmt::format(
          "disk tier {}: the directory holds a tier of another layout (manifest '{}' says:\n{}but the options "
          "give:\n{}): use another directory or empty this one",
          o_.dir, path.string(), have.str(), want));
    }
    return Status::Ok();
  }
  std::ofstream out(path);
  out << want;
  out.close();
  if (!out) return Unavailable(fmt::format("disk tier {}: cannot write {}: check permissions and space", o_.dir,
                                           path.string()));
  return Status::Ok();
}

Status DiskTier::OpenSegments(bool direct) {
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  for (size_t s = 0; s < fds_.size(); ++s) {
    const std::string path = (std::filesystem::path(o_.dir) / SegmentFileName(static_cast<uint32_t>(s))).string();
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0 && direct && errno == EINVAL) {
      // tmpfs and some others refuse O_DIRECT: same format, page cache.
      log_.Note("O_DIRECT is not supported on this filesystem; using buffered I/O");
      return OpenSegments(false);
    }
    if (fd < 0) {
      return Unavailable(fmt::format("disk tier {}: cannot open {}: {}", o_.dir, path, std::strerror(errno)));
    }
    fds_[s] = fd;
  }
  direct_ = direct;
  return Status::Ok();
}

Status DiskTier::Open() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(o_.dir, ec);
  if (ec) return Unavailable(fmt::format("disk tier {}: cannot create the directory: {}", o_.dir, ec.message()));
  const int64_t capacity = static_cast<int64_t>(o_.capacity_bytes / record_bytes_);
  if (capacity < 1) {
    return InvalidArgument(fmt::format("disk tier {}: capacity_bytes {} holds no record of {} bytes", o_.dir,
                                       o_.capacity_bytes, record_bytes_));
  }
  slots_per_segment_ = static_cast<int32_t>(std::clamp<uint64_t>(o_.segment_bytes / record_bytes_, 1, 1u << 30));
  auto index = TierIndex::Create(capacity, o_.policy, clock_, [this](int32_t, const BlockHash&) {
    stats_.AddEvictions(1);
  });
  if (!index.ok()) return index.status();
  index_ = std::move(index).value();
  slot_io_.assign(static_cast<size_t>(capacity), SlotIo::kOnDisk);
  staging_.assign(static_cast<size_t>(capacity), nullptr);
  KVSTACK_RETURN_IF_ERROR(CheckManifest());
  fds_.assign(static_cast<size_t>((capacity + slots_per_segment_ - 1) / slots_per_segment_), -1);
  KVSTACK_RETURN_IF_ERROR(OpenSegments(true));
  io_ = o_.io != nullptr ? o_.io : std::shared_ptr<DiskIo>(MakeUringDiskIo());
  Reindex();
  worker_ = std::thread([this] { WorkerLoop(); });
  return Status::Ok();
}

// Reads every written record's header (the first 4096 bytes of each slot)
// and indexes the valid ones, oldest write first so LRU order survives.
// Payload checksums are checked at Get(), not here: opening reads 4 KiB per
// block, not the whole directory.
void DiskTier::Reindex() {
  struct Found {
    uint64_t sequence;
    int32_t slot;
    TierBlockInfo block;
  };
  std::vector<Found> found;
  uint64_t corrupt = 0;
  const int64_t capacity = index_->capacity();
  std::vector<int32_t> present;
  for (size_t s = 0; s < fds_.size(); ++s) {
    struct stat st{};
    if (::fstat(fds_[s], &st) != 0) continue;
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    const uint64_t whole = size / record_bytes_;
    if (size % record_bytes_ != 0) {
      ++corrupt;
      log_.Report("torn", fmt::format("{}: {} bytes is not a whole number of {}-byte records: the last record is "
                                      "torn and dropped",
                                      SegmentFileName(static_cast<uint32_t>(s)), size, record_bytes_));
    }
    for (uint64_t r = 0; r < whole && r < static_cast<uint64_t>(slots_per_segment_); ++r) {
      const int64_t slot = static_cast<int64_t>(s) * slots_per_segment_ + static_cast<int64_t>(r);
      if (slot < capacity) present.push_back(static_cast<int32_t>(slot));
    }
  }
  AlignedBuffer buf(kReindexBatch * kIoAlign);
  for (size_t at = 0; at < present.size(); at += kReindexBatch) {
    const size_t n = std::min(kReindexBatch, present.size() - at);
    std::vector<DiskIoOp> ops(n);
    for (size_t i = 0; i < n; ++i) {
      ops[i].kind = DiskIoOp::Kind::kRead;
      ops[i].fd = SegmentFd(present[at + i]);
      ops[i].offset = SlotOffset(present[at + i]);
      ops[i].iov = {iovec{buf.data() + i * kIoAlign, kIoAlign}};
    }
    RunOps(ops);
    for (size_t i = 0; i < n; ++i) {
      std::span<const std::byte> rec(buf.data() + i * kIoAlign, kIoAlign);
      if (ops[i].result != static_cast<int64_t>(kIoAlign) || NeverWritten(rec)) continue;
      auto h = ParseHeader(rec, o_.bytes_per_block);
      if (!h) {
        ++corrupt;
        log_.Report("corrupt", fmt::format("slot {}: record header fails its checksum: dropped", present[at + i]));
        continue;
      }
      found.push_back({h->sequence, present[at + i], {BlockHash{h->hash_lo, h->hash_hi}, h->priority, h->hits}});
    }
  }
  // The newest record of a key wins; older duplicates are dropped.
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.sequence > b.sequence; });
  std::lock_guard<std::mutex> lock(mu_);
  index_->TakeAllSlots();
  std::vector<uint8_t> restored(static_cast<size_t>(capacity), 0);
  std::vector<int32_t> order;
  for (const Found& f : found) {
    if (index_->Restore(f.slot, f.block)) {
      restored[static_cast<size_t>(f.slot)] = 1;
      order.push_back(f.slot);
    }
    next_sequence_ = std::max(next_sequence_, f.sequence + 1);
  }
  std::reverse(order.begin(), order.end());  // oldest first: the head of LRU
  for (int32_t slot : order) index_->Release(slot);
  for (int64_t s = capacity - 1; s >= 0; --s) {  // free slots handed out lowest first
    if (!restored[static_cast<size_t>(s)]) index_->Release(static_cast<int32_t>(s));
  }
  if (corrupt > 0) stats_.AddFaults(corrupt);
}

TierFuture DiskTier::Put(std::span<const TierPut> blocks) {
  const int64_t start = WallMicros();
  auto state = std::make_shared<OpState>(blocks.size());
  WriteJob job;
  job.state = state;
  job.start_us = start;
  std::vector<size_t> fresh;  // items that got a new slot
  uint64_t refused = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const bool full = clock_->Now() < full_until_;
    for (size_t i = 0; i < blocks.size(); ++i) {
      const TierPut& p = blocks[i];
      if (p.bytes.size() != o_.bytes_per_block) {
        ++refused;
        continue;
      }
      if (auto slot = index_->Find(p.block.hash)) {  // held (or being written): same key, same bytes
        index_->Acquire(*slot);
        index_->Raise(*slot, p.block.priority);
        index_->Release(*slot);
        state->ok[i] = 1;
        ++job.already_held;
        continue;
      }
      std::optional<int32_t> slot = full ? std::nullopt : index_->Insert(p.block);
      if (!slot) {
        ++refused;
        continue;
      }
      slot_io_[static_cast<size_t>(*slot)] = SlotIo::kEncoding;
      job.slots.push_back(*slot);
      job.hashes.push_back(p.block.hash);
      job.items.push_back(i);
      fresh.push_back(i);
    }
  }
  if (job.slots.empty()) {
    stats_.RecordPut(0, refused, 0, start);
    state->Finish();
    return TierFuture(std::move(state));
  }
  // Encode outside the lock: gets of these slots miss until they are staged.
  job.buffer = TakeBuffer(job.slots.size() * record_bytes_);
  if (job.buffer.data() == nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    for (int32_t slot : job.slots) {
      slot_io_[static_cast<size_t>(slot)] = SlotIo::kOnDisk;
      if (!index_->meta(slot).hash.IsZero()) index_->Remove(slot);
      index_->Release(slot);
    }
    stats_.RecordPut(0, refused + job.slots.size(), 0, start);
    state->Finish();
    return TierFuture(std::move(state));
  }
  uint64_t first_sequence;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first_sequence = next_sequence_;
    next_sequence_ += job.slots.size();
  }
  for (size_t r = 0; r < fresh.size(); ++r) {
    const TierPut& p = blocks[fresh[r]];
    EncodeRecord(p.block, first_sequence + r, p.bytes,
                 std::span<std::byte>(job.buffer.data() + r * record_bytes_, record_bytes_));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t r = 0; r < job.slots.size(); ++r) {
      const auto s = static_cast<size_t>(job.slots[r]);
      slot_io_[s] = SlotIo::kStaged;
      staging_[s] = job.buffer.data() + r * record_bytes_;
    }
    job.refused = refused;
    writes_.push_back(std::move(job));
  }
  work_cv_.notify_one();
  return TierFuture(std::move(state));
}

TierFuture DiskTier::Lookup(std::span<const BlockHash> hashes) { return LookupIndexed(hashes, stats_); }

TierFuture DiskTier::Get(std::span<const TierGet> blocks) {
  const int64_t start = WallMicros();
  auto state = std::make_shared<OpState>(blocks.size());
  ReadJob job;
  job.state = state;
  job.start_us = start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < blocks.size(); ++i) {
      const TierGet& g = blocks[i];
      if (g.dest.size() != o_.bytes_per_block) continue;
      auto slot = index_->Find(g.hash);
      if (!slot) continue;
      const auto s = static_cast<size_t>(*slot);
      if (slot_io_[s] == SlotIo::kEncoding) continue;  // not readable yet: a miss
      index_->Acquire(*slot);  // a use; and the record stays put while read
      if (slot_io_[s] == SlotIo::kStaged) {
        std::memcpy(g.dest.data(), staging_[s] + kRecordHeaderBytes, o_.bytes_per_block);
        index_->Release(*slot);
        state->ok[i] = 1;
        ++job.served;
        continue;
      }
      job.reads.push_back({*slot, g.hash, g.dest, i});
    }
    if (!job.reads.empty()) {
      reads_.push_back(std::move(job));
      work_cv_.notify_one();
      return TierFuture(std::move(state));
    }
  }
  stats_.RecordGet(job.served, blocks.size() - job.served, job.served * o_.bytes_per_block, start);
  state->Finish();
  return TierFuture(std::move(state));
}

void DiskTier::RunOps(std::vector<DiskIoOp>& ops) {
  if (ops.empty()) return;
  io_->Run(ops);
  if (!direct_) return;
  // A filesystem that accepted O_DIRECT at open may still refuse the I/O
  // (EINVAL): reopen buffered once and rerun what failed that way.
  std::vector<DiskIoOp> retry;
  std::vector<size_t> where;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].result == -EINVAL) {
      retry.push_back(ops[i]);
      where.push_back(i);
    }
  }
  if (retry.empty()) return;
  log_.Note("O_DIRECT I/O refused (EINVAL); reopening the segments for buffered I/O");
  std::vector<int> old = fds_;
  if (!OpenSegments(false).ok()) return;
  for (auto& op : retry) {
    const auto it = std::find(old.begin(), old.end(), op.fd);
    if (it != old.end()) op.fd = fds_[static_cast<size_t>(it - old.begin())];
  }
  io_->Run(retry);
  for (size_t k = 0; k < retry.size(); ++k) ops[where[k]].result = retry[k].result;
}

void DiskTier::WorkerLoop() {
  for (;;) {
    std::vector<WriteJob> writes;
    std::vector<ReadJob> reads;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !writes_.empty() || !reads_.empty(); });
      if (writes_.empty() && reads_.empty()) return;  // stopping, and drained
      while (!writes_.empty()) {
        writes.push_back(std::move(writes_.front()));
        writes_.pop_front();
      }
      while (!reads_.empty()) {
        reads.push_back(std::move(reads_.front()));
        reads_.pop_front();
      }
    }
    // Writes: records sorted by slot; runs of adjacent slots in one segment
    // become one large write (up to max_write_batch_bytes).
    struct Rec {
      int32_t slot;
      size_t job, r;
    };
    std::vector<Rec> recs;
    for (size_t j = 0; j < writes.size(); ++j) {
      for (size_t r = 0; r < writes[j].slots.size(); ++r) recs.push_back({writes[j].slots[r], j, r});
    }
    std::sort(recs.begin(), recs.end(), [](const Rec& a, const Rec& b) { return a.slot < b.slot; });
    std::vector<DiskIoOp> ops;
    std::vector<std::vector<std::pair<size_t, size_t>>> op_records;  // (job, record) of each write op
    for (size_t i = 0; i < recs.size(); ++i) {
      const Rec& rc = recs[i];
      const bool extend = !ops.empty() && i > 0 && recs[i - 1].slot + 1 == rc.slot &&
                          rc.slot / slots_per_segment_ == recs[i - 1].slot / slots_per_segment_ &&
                          ops.back().iov.size() < kMaxIovPerOp &&
                          ops.back().bytes() + record_bytes_ <= std::max(o_.max_write_batch_bytes, record_bytes_);
      if (!extend) {
        DiskIoOp op;
        op.kind = DiskIoOp::Kind::kWrite;
        op.fd = SegmentFd(rc.slot);
        op.offset = SlotOffset(rc.slot);
        ops.push_back(std::move(op));
        op_records.emplace_back();
      }
      ops.back().iov.push_back(iovec{writes[rc.job].buffer.data() + rc.r * record_bytes_, record_bytes_});
      op_records.back().emplace_back(rc.job, rc.r);
    }
    const size_t num_writes = ops.size();
    // Reads: each whole record into a bounce buffer (the payload sits after
    // the header, so it is not aligned for the destination).
    std::vector<AlignedBuffer> bounce;
    for (const ReadJob& job : reads) {
      for (const ReadJob::Read& rd : job.reads) {
        bounce.push_back(TakeBuffer(record_bytes_));
        DiskIoOp op;
        op.kind = DiskIoOp::Kind::kRead;
        op.fd = SegmentFd(rd.slot);
        op.offset = SlotOffset(rd.slot);
        if (bounce.back().data() != nullptr) op.iov = {iovec{bounce.back().data(), record_bytes_}};
        ops.push_back(std::move(op));
      }
    }
    // Ops without memory (a failed bounce allocation) fail as ENOMEM.
    std::vector<DiskIoOp> runnable;
    std::vector<size_t> where;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].iov.empty()) {
        ops[i].result = -ENOMEM;
      } else {
        runnable.push_back(ops[i]);
        where.push_back(i);
      }
    }
    RunOps(runnable);
    for (size_t k = 0; k < runnable.size(); ++k) ops[where[k]].result = runnable[k].result;
    std::vector<DiskIoOp> read_ops(ops.begin() + static_cast<ptrdiff_t>(num_writes), ops.end());
    ops.resize(num_writes);
    FinishWrites(writes, ops, op_records);
    FinishReads(reads, read_ops, bounce);
    for (WriteJob& job : writes) GiveBack(std::move(job.buffer));
    for (AlignedBuffer& b : bounce) GiveBack(std::move(b));
  }
}

void DiskTier::FinishWrites(std::vector<WriteJob>& jobs, const std::vector<DiskIoOp>& ops,
                            const std::vector<std::vector<std::pair<size_t, size_t>>>& op_records) {
  std::vector<uint64_t> stored(jobs.size(), 0), failed(jobs.size(), 0);
  uint64_t faults = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < ops.size(); ++i) {
      const bool ok = ops[i].result == static_cast<int64_t>(ops[i].bytes());
      if (!ok) {
        ++faults;
        const int64_t r = ops[i].result;
        if (r == -ENOSPC || r == -EDQUOT) {
          full_until_ = clock_->Now() + o_.full_disk_pause;
          log_.Report("enospc", fmt::format("the disk is full ({}); storing nothing for {} s", std::strerror(-static_cast<int>(r)),
                                            o_.full_disk_pause / 1'000'000));
        } else {
          log_.Report("write", fmt::format("write of {} bytes at {} failed: {}", ops[i].bytes(), ops[i].offset,
                                           r < 0 ? std::strerror(-static_cast<int>(r)) : "short write"));
        }
      }
      for (auto [j, r] : op_records[i]) {
        WriteJob& job = jobs[j];
        const int32_t slot = job.slots[r];
        slot_io_[static_cast<size_t>(slot)] = SlotIo::kOnDisk;
        staging_[static_cast<size_t>(slot)] = nullptr;
        if (ok) {
          job.state->ok[job.items[r]] = 1;
          ++stored[j];
        } else {
          // The record on disk may be torn: forget it now (a removed block
          // has no hash any more; nothing to forget).
          if (index_->meta(slot).hash == job.hashes[r]) index_->Remove(slot);
          ++failed[j];
        }
        index_->Release(slot);
      }
    }
  }
  // Counters first, then Finish(): a waiter sees this batch counted.
  if (faults > 0) stats_.AddFaults(faults);
  for (size_t j = 0; j < jobs.size(); ++j) {
    stats_.RecordPut(stored[j], failed[j] + jobs[j].refused, stored[j] * o_.bytes_per_block, jobs[j].start_us);
    jobs[j].state->Finish();
  }
}

void DiskTier::FinishReads(std::vector<ReadJob>& jobs, std::vector<DiskIoOp>& ops,
                           std::vector<AlignedBuffer>& bounce) {
  // Every counter of a job is updated before its Finish(): a waiter woken by
  // the future reads metrics that already include this batch.
  size_t k = 0;
  for (ReadJob& job : jobs) {
    uint64_t hits = job.served;
    uint64_t faults = 0;
    for (ReadJob::Read& rd : job.reads) {
      DiskIoOp& op = ops[k];
      AlignedBuffer& buf = bounce[k];
      ++k;
      bool good = false;
      if (op.result == static_cast<int64_t>(record_bytes_)) {
        std::span<const std::byte> rec(buf.data(), record_bytes_);
        auto h = ParseHeader(rec, o_.bytes_per_block);
        good = h && h->hash_lo == rd.hash.lo && h->hash_hi == rd.hash.hi && PayloadIntact(*h, rec);
        if (good) std::memcpy(rd.dest.data(), buf.data() + kRecordHeaderBytes, o_.bytes_per_block);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!good) {
          // Corrupt, torn or unreadable: drop it so later lookups miss.
          if (index_->meta(rd.slot).hash == rd.hash) index_->Remove(rd.slot);
        }
        index_->Release(rd.slot);
      }
      if (good) {
        job.state->ok[rd.item] = 1;
        ++hits;
      } else {
        ++faults;
        log_.Report("read", op.result == static_cast<int64_t>(record_bytes_)
                                ? fmt::format("slot {}: block {} is corrupt or torn (checksum): dropped", rd.slot,
                                              rd.hash.ToHex())
                                : fmt::format("slot {}: read failed ({}): block dropped", rd.slot,
                                              op.result < 0 ? std::strerror(-static_cast<int>(op.result))
                                                            : "short read"));
      }
    }
    const uint64_t total = job.state->ok.size();
    if (faults > 0) stats_.AddFaults(faults);
    stats_.RecordGet(hits, total - hits, hits * o_.bytes_per_block, job.start_us);
    job.state->Finish();
  }
}

}  // namespace

Result<std::unique_ptr<Tier>> OpenDiskTier(const DiskTierOptions& o) {
  if (o.dir.empty()) return InvalidArgument("disk tier: dir is required");
  if (o.bytes_per_block == 0) return InvalidArgument("disk tier: bytes_per_block must be >= 1");
  auto tier = std::make_unique<DiskTier>(o);
  KVSTACK_RETURN_IF_ERROR(tier->Open());
  return std::unique_ptr<Tier>(std::move(tier));
}

}  // namespace kvstack
