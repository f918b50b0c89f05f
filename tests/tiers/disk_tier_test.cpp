// Disk tier: round trips, batched contiguous writes, restart re-indexing,
// corrupt and torn records detected and dropped, a full disk degrading to
// storing nothing, a foreign layout refused, O_DIRECT fallback on tmpfs, and
// a randomized model check.
#include <gtest/gtest.h>

#include <sys/vfs.h>

#include <cerrno>
#include <fstream>
#include <linux/magic.h>
#include <mutex>
#include <unordered_map>

#include "kvstack/tiers.h"
#include "tier_test_util.h"
#include "tiers/disk_format.h"
#include "tiers/disk_io.h"

namespace kvstack {
namespace {

using tier_test::Bytes;
using tier_test::GetOne;
using tier_test::H;
using tier_test::PutOne;
using tier_test::TempDir;

constexpr size_t kBlock = 5000;                // not a multiple of 4096: records are 8192 bytes
constexpr size_t kRecord = 8192;
constexpr uint64_t kSegment = 4 * kRecord;     // 4 records per segment file

// Wraps the real io_uring DiskIo: records the write ops it sees and fails
// writes with an injected errno while told to.
class FaultyDiskIo final : public DiskIo {
 public:
  FaultyDiskIo() : real_(MakeUringDiskIo()) {}
  void Run(std::span<DiskIoOp> ops) override {
    std::vector<DiskIoOp> pass;
    std::vector<size_t> where;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].kind == DiskIoOp::Kind::kWrite) {
        std::lock_guard<std::mutex> lock(mu);
        write_sizes.push_back(ops[i].bytes());
        if (fail_writes != 0) {
          ops[i].result = -fail_writes;
          continue;
        }
      }
      if (einval_runs > 0) {  // as a filesystem that refuses O_DIRECT I/O would
        ops[i].result = -EINVAL;
        continue;
      }
      pass.push_back(ops[i]);
      where.push_back(i);
    }
    if (einval_runs > 0) --einval_runs;
    real_->Run(pass);
    for (size_t k = 0; k < pass.size(); ++k) ops[where[k]].result = pass[k].result;
  }
  int einval_runs = 0;               // Run() calls left that fail every op with EINVAL
  std::mutex mu;
  int fail_writes = 0;               // errno to fail writes with; 0: none
  std::vector<uint64_t> write_sizes;  // bytes of each write op

 private:
  std::unique_ptr<DiskIo> real_;
};

struct Opened {
  std::unique_ptr<Tier> tier;
  std::vector<std::string> log;
};

class DiskTierTest : public ::testing::Test {
 protected:
  std::unique_ptr<Tier> Open(uint64_t capacity_records = 12, std::shared_ptr<DiskIo> io = nullptr,
                             const Clock* clock = nullptr, const std::string& dir = "") {
    DiskTierOptions o;
    o.dir = dir.empty() ? dir_.str() : dir;
    o.bytes_per_block = kBlock;
    o.capacity_bytes = capacity_records * kRecord;
    o.segment_bytes = kSegment;
    o.io = std::move(io);
    o.clock = clock;
    o.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.emplace_back(line);
    };
    auto t = OpenDiskTier(o);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? std::move(t).value() : nullptr;
  }
  std::string Segment(int s) const { return (dir_.path() / tiers_internal::SegmentFileName(s)).string(); }
  void FlipByte(const std::string& file, uint64_t offset) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good()) << file;
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
  }
  size_t LogLines() {
    std::lock_guard<std::mutex> lock(log_mu_);
    return log_.size();
  }

  TempDir dir_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(DiskTierTest, RejectsBadOptions) {
  EXPECT_EQ(OpenDiskTier({.dir = "", .bytes_per_block = 8, .capacity_bytes = 1 << 20}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenDiskTier({.dir = dir_.str(), .bytes_per_block = kBlock, .capacity_bytes = 100}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(DiskTierTest, PutThenGetRoundTrips) {
  auto t = Open();
  for (uint64_t k = 0; k < 5; ++k) ASSERT_TRUE(PutOne(*t, k));
  for (uint64_t k = 0; k < 5; ++k) {
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k));
  }
  EXPECT_FALSE(GetOne(*t, 99).has_value());
  const TierMetrics m = t->Metrics();
  EXPECT_EQ(m.name, "disk");
  EXPECT_EQ(m.blocks, 5);
  EXPECT_EQ(m.capacity_blocks, 12);
  EXPECT_EQ(m.stored, 5u);
  EXPECT_EQ(m.hits, 5u);
  EXPECT_EQ(m.misses, 1u);
  EXPECT_EQ(m.bytes_out, 5 * kBlock);
  EXPECT_EQ(m.faults, 0u);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

TEST_F(DiskTierTest, ABatchBecomesOneContiguousWritePerSegment) {
  auto io = std::make_shared<FaultyDiskIo>();
  auto t = Open(12, io);
  std::vector<std::vector<std::byte>> bytes;
  std::vector<TierPut> puts;
  for (uint64_t k = 0; k < 6; ++k) bytes.push_back(Bytes(kBlock, k));
  for (uint64_t k = 0; k < 6; ++k) puts.push_back({{H(k)}, bytes[k]});
  TierFuture f = t->Put(puts);
  f.Wait();
  EXPECT_EQ(f.num_ok(), 6u);
  // Slots 0-5: segment 0 holds 0-3, segment 1 holds 4-5.
  std::lock_guard<std::mutex> lock(io->mu);
  EXPECT_EQ(io->write_sizes, (std::vector<uint64_t>{4 * kRecord, 2 * kRecord}));
}

TEST_F(DiskTierTest, RestartReindexesAndServesHits) {
  {
    auto t = Open();
    for (uint64_t k = 0; k < 7; ++k) ASSERT_TRUE(PutOne(*t, k, 0, static_cast<Priority>(40 + k)));
  }
  auto t = Open();
  const TierMetrics m = t->Metrics();
  EXPECT_EQ(m.blocks, 7);
  // What a listener attached now is told the tier holds (TierChain::SetListener).
  std::unordered_map<BlockHash, Priority> listed;
  t->ForEachHeld([&](const BlockHash& h, Priority p) { EXPECT_TRUE(listed.emplace(h, p).second); });
  ASSERT_EQ(listed.size(), 7u);
  for (uint64_t k = 0; k < 7; ++k) EXPECT_EQ(listed[H(k)], static_cast<Priority>(40 + k)) << k;
  for (uint64_t k = 0; k < 7; ++k) {
    EXPECT_TRUE(t->Contains(H(k)));
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k));
  }
  EXPECT_EQ(t->Metrics().faults, 0u);
  // New puts take free slots, not the restored ones.
  ASSERT_TRUE(PutOne(*t, 100));
  for (uint64_t k = 0; k < 7; ++k) EXPECT_TRUE(t->Contains(H(k)));
  EXPECT_TRUE(t->CheckInvariants().ok());
}

TEST_F(DiskTierTest, EvictionReusesSlotsAndTheNewestRecordWinsAfterRestart) {
  {
    auto t = Open(4);
    for (uint64_t k = 0; k < 10; ++k) ASSERT_TRUE(PutOne(*t, k));
    EXPECT_EQ(t->Metrics().evictions, 6u);
    EXPECT_EQ(t->Metrics().blocks, 4);
  }
  EXPECT_LE(std::filesystem::file_size(Segment(0)), 4 * kRecord);
  auto t = Open(4);
  for (uint64_t k = 0; k < 6; ++k) EXPECT_FALSE(t->Contains(H(k))) << k;
  for (uint64_t k = 6; k < 10; ++k) {
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k));
  }
}

TEST_F(DiskTierTest, CorruptPayloadIsDetectedDroppedAndCounted) {
  {
    auto t = Open();
    for (uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(PutOne(*t, k));
  }
  FlipByte(Segment(0), 1 * kRecord + tiers_internal::kRecordHeaderBytes + 100);  // slot 1's payload
  auto t = Open();
  EXPECT_TRUE(t->Contains(H(1)));  // the header is intact; the payload is checked on read
  EXPECT_FALSE(GetOne(*t, 1).has_value());
  EXPECT_FALSE(t->Contains(H(1)));  // dropped
  EXPECT_EQ(t->Metrics().faults, 1u);
  EXPECT_TRUE(GetOne(*t, 0).has_value());
  EXPECT_TRUE(GetOne(*t, 2).has_value());
  EXPECT_GE(LogLines(), 1u);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

TEST_F(DiskTierTest, CorruptHeaderIsDroppedWhenReindexing) {
  {
    auto t = Open();
    for (uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(PutOne(*t, k));
  }
  FlipByte(Segment(0), 2 * kRecord + 20);  // slot 2's header
  auto t = Open();
  EXPECT_FALSE(t->Contains(H(2)));
  EXPECT_TRUE(t->Contains(H(0)));
  EXPECT_EQ(t->Metrics().faults, 1u);
}

TEST_F(DiskTierTest, TruncatedSegmentDropsTheTornRecord) {
  {
    auto t = Open();
    for (uint64_t k = 0; k < 3; ++k) ASSERT_TRUE(PutOne(*t, k));
  }
  std::filesystem::resize_file(Segment(0), 2 * kRecord + kRecord / 2);
  auto t = Open();
  EXPECT_TRUE(t->Contains(H(0)));
  EXPECT_TRUE(t->Contains(H(1)));
  EXPECT_FALSE(t->Contains(H(2)));
  EXPECT_FALSE(GetOne(*t, 2).has_value());
  EXPECT_EQ(t->Metrics().faults, 1u);
  ASSERT_TRUE(PutOne(*t, 7));  // the torn slot is free again
  EXPECT_EQ(*GetOne(*t, 7), Bytes(kBlock, 7));
}

TEST_F(DiskTierTest, TornPayloadWithAnIntactHeaderIsAMiss) {
  {
    auto t = Open();
    ASSERT_TRUE(PutOne(*t, 0));
  }
  // The header's page survived, the rest of the record did not.
  std::filesystem::resize_file(Segment(0), 4096);
  std::filesystem::resize_file(Segment(0), kRecord);
  auto t = Open();
  EXPECT_FALSE(GetOne(*t, 0).has_value());
  EXPECT_EQ(t->Metrics().faults, 1u);
}

TEST_F(DiskTierTest, AFullDiskStoresNothingThenRecovers) {
  auto io = std::make_shared<FaultyDiskIo>();
  ManualClock clock(1000);
  auto t = Open(12, io, &clock);
  io->fail_writes = ENOSPC;
  EXPECT_FALSE(PutOne(*t, 1));  // the write fails: not stored
  EXPECT_FALSE(t->Contains(H(1)));
  EXPECT_FALSE(GetOne(*t, 1).has_value());
  EXPECT_EQ(t->Metrics().faults, 1u);
  const size_t writes = io->write_sizes.size();
  EXPECT_FALSE(PutOne(*t, 2));  // paused: refused without touching the disk
  EXPECT_EQ(io->write_sizes.size(), writes);
  io->fail_writes = 0;
  clock.Advance(10'000'001);
  EXPECT_TRUE(PutOne(*t, 3));
  EXPECT_EQ(*GetOne(*t, 3), Bytes(kBlock, 3));
  const TierMetrics m = t->Metrics();
  EXPECT_EQ(m.faults, 1u);
  EXPECT_EQ(m.not_stored, 2u);
  EXPECT_EQ(m.stored, 1u);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

TEST_F(DiskTierTest, AnotherLayoutIsRefused) {
  { auto t = Open(); }
  DiskTierOptions o;
  o.dir = dir_.str();
  o.bytes_per_block = kBlock * 2;
  o.capacity_bytes = 1 << 20;
  o.segment_bytes = kSegment;
  auto t = OpenDiskTier(o);
  EXPECT_EQ(t.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("another layout"), std::string::npos);
}

TEST_F(DiskTierTest, FallsBackToBufferedIoWhenODirectIoIsRefused) {
  auto io = std::make_shared<FaultyDiskIo>();
  auto t = Open(12, io);
  io->einval_runs = 1;
  ASSERT_TRUE(PutOne(*t, 1));  // refused with EINVAL, reopened buffered, rerun
  EXPECT_EQ(*GetOne(*t, 1), Bytes(kBlock, 1));
  EXPECT_EQ(t->Metrics().faults, 0u);
  std::lock_guard<std::mutex> lock(log_mu_);
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_NE(log_[0].find("O_DIRECT"), std::string::npos) << log_[0];
}

TEST_F(DiskTierTest, WorksOnTmpfs) {
  // Kernels before 6.6 refuse O_DIRECT on tmpfs at open (the tier then opens
  // buffered, with a note); later ones accept it. Either way blocks round-trip.
  struct statfs fs{};
  if (::statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC) GTEST_SKIP() << "/dev/shm is not tmpfs here";
  TempDir shm("/dev/shm");
  auto t = Open(12, nullptr, nullptr, shm.str());
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(PutOne(*t, 1));
  EXPECT_EQ(*GetOne(*t, 1), Bytes(kBlock, 1));
}

TEST_F(DiskTierTest, RandomizedAgainstAReferenceModel) {
  auto t = Open(23);
  tier_test::RandomModelCheck(*t, 3000, 5, 70);
}

}  // namespace
}  // namespace kvstack
