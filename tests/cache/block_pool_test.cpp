// BlockPool: allocation, lazy eviction, eviction order, retention, pins.
// Fixtures are hand-sized (a pool of 11 blocks) so every assertion is exact.
#include "cache/block_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kvstack {
namespace {

using ::testing::ElementsAre;

BlockHash H(uint64_t x) { return BlockHash{x, x * 7 + 1}; }

class RecordingObserver : public BlockPoolObserver {
 public:
  void OnEvict(int32_t id, const BlockMeta& m) override { evicted.push_back({id, m.hash}); }
  std::vector<std::pair<int32_t, BlockHash>> evicted;
};

class BlockPoolTest : public ::testing::Test {
 protected:
  void Make(std::unique_ptr<EvictionPolicy> policy, int32_t n = 11, int32_t max_pinned = 5) {
    policy_ = std::move(policy);
    BlockPoolOptions o;
    o.num_blocks = n;
    o.policy = policy_.get();
    o.clock = &clock_;
    o.max_pinned_blocks = max_pinned;
    o.observer = &observer_;
    auto p = BlockPool::Create(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    pool_ = std::move(p).value();
  }
  void SetUp() override { Make(MakePriorityLruPolicy()); }
  void TearDown() override {
    if (pool_) {
      EXPECT_TRUE(pool_->CheckInvariants().ok()) << pool_->CheckInvariants().ToString();
    }
  }

  // Allocates a block, commits it under H(key) with `priority`, releases it.
  int32_t Cache(uint64_t key, Priority priority = kDefaultPriority, Micros expiry = kNoExpiry) {
    int32_t id = *pool_->Allocate();
    EXPECT_TRUE(pool_->Commit(id, H(key), -1, priority, expiry));
    clock_.Advance(1);
    pool_->Release(id);
    return id;
  }

  ManualClock clock_{1000};
  RecordingObserver observer_;
  std::unique_ptr<EvictionPolicy> policy_;
  std::unique_ptr<BlockPool> pool_;
};

TEST_F(BlockPoolTest, MetadataIsOneCacheLine) { EXPECT_EQ(sizeof(BlockMeta), 64u); }

TEST_F(BlockPoolTest, UncommitFreesACachedBlockAndPrivatizesAnInUseOne) {
  const int32_t a = Cache(1);
  const int32_t b = Cache(2);
  pool_->Uncommit(a);  // Cached: Free now, not evicted (observer not told)
  EXPECT_FALSE(pool_->Find(H(1)).has_value());
  EXPECT_EQ(pool_->meta(a).state, BlockState::kFree);
  EXPECT_EQ(pool_->num_cached(), 1);
  pool_->AcquireHit(b);  // InUse: private until its last release
  pool_->Uncommit(b);
  EXPECT_FALSE(pool_->Find(H(2)).has_value());
  EXPECT_EQ(pool_->meta(b).state, BlockState::kInUse);
  ASSERT_TRUE(pool_->CheckInvariants().ok()) << pool_->CheckInvariants().ToString();
  pool_->Release(b);
  EXPECT_EQ(pool_->meta(b).state, BlockState::kFree);
  EXPECT_EQ(pool_->num_free(), 11);
  EXPECT_TRUE(observer_.evicted.empty());
}

TEST_F(BlockPoolTest, RejectsBadOptions) {
  BlockPoolOptions o;
  o.num_blocks = 0;
  o.policy = policy_.get();
  o.clock = &clock_;
  auto r = BlockPool::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "num_blocks 0: must be from 1 to 2^30");
  o.num_blocks = 4;
  o.max_pinned_blocks = 5;
  EXPECT_EQ(BlockPool::Create(o).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(BlockPoolTest, FreshPoolAllocatesInOrderUntilFull) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 11; ++i) ids.push_back(*pool_->Allocate());
  EXPECT_THAT(ids, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
  EXPECT_EQ(pool_->Allocate(), std::nullopt);
  EXPECT_EQ(pool_->num_in_use(), 11);
  for (int32_t id : ids) pool_->Release(id);
  EXPECT_EQ(pool_->num_free(), 11);
}

TEST_F(BlockPoolTest, RecentlyFreedBlocksAreReusedFirst) {
  int32_t a = *pool_->Allocate();  // 0
  int32_t b = *pool_->Allocate();  // 1
  pool_->Release(a);
  pool_->Release(b);
  std::vector<int32_t> next;
  for (int i = 0; i < 11; ++i) next.push_back(*pool_->Allocate());
  EXPECT_THAT(next, ElementsAre(1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10));
}

TEST_F(BlockPoolTest, AllocateManyIsAllOrNothing) {
  std::vector<int32_t> ids;
  EXPECT_FALSE(pool_->AllocateMany(12, &ids));
  EXPECT_TRUE(ids.empty());
  EXPECT_EQ(pool_->num_free(), 11);
  ASSERT_TRUE(pool_->AllocateMany(3, &ids));
  EXPECT_THAT(ids, ElementsAre(0, 1, 2));
  std::vector<int32_t> reversed(ids.rbegin(), ids.rend());
  pool_->ReleaseMany(reversed);
  EXPECT_EQ(pool_->num_free(), 11);
}

TEST_F(BlockPoolTest, LazyEvictionKeepsCachedContentUntilSlotIsNeeded) {
  const int32_t id = Cache(42);
  EXPECT_EQ(pool_->meta(id).state, BlockState::kCached);
  // Ten free blocks go first; the cached one survives and is still a hit.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(pool_->Allocate().has_value());
  EXPECT_EQ(pool_->Find(H(42)), id);
  EXPECT_TRUE(observer_.evicted.empty());
  // The eleventh allocation must evict it.
  EXPECT_EQ(pool_->Allocate(), id);
  ASSERT_EQ(observer_.evicted.size(), 1u);
  EXPECT_EQ(observer_.evicted[0].first, id);
  EXPECT_EQ(observer_.evicted[0].second, H(42));
  EXPECT_EQ(pool_->Find(H(42)), std::nullopt);
  EXPECT_TRUE(pool_->meta(id).hash.IsZero());
}

TEST_F(BlockPoolTest, EvictionOrderIsPriorityThenLeastRecentlyUsed) {
  const int32_t a = Cache(1, 50);
  const int32_t b = Cache(2, 10);
  const int32_t c = Cache(3, 50);
  const int32_t d = Cache(4, 10);
  const int32_t e = Cache(5, kDefaultPriority);
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(b, d, e, a, c));
}

TEST_F(BlockPoolTest, LruPolicyIgnoresPriority) {
  Make(MakeLruPolicy());
  const int32_t a = Cache(1, 90);
  const int32_t b = Cache(2, 10);
  const int32_t c = Cache(3, 50);
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(a, b, c));
}

TEST_F(BlockPoolTest, LfuPolicyEvictsLeastReusedFirst) {
  Make(MakeLfuPolicy());
  const int32_t a = Cache(1);
  const int32_t b = Cache(2);
  const int32_t c = Cache(3);
  for (int i = 0; i < 3; ++i) {  // a: 3 hits, c: 1 hit, b: none
    pool_->AcquireHit(a);
    clock_.Advance(1);
    pool_->Release(a);
  }
  pool_->AcquireHit(c);
  pool_->Release(c);
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(b, c, a));
}

TEST_F(BlockPoolTest, HitTakesABlockFromTheMiddleOfItsQueue) {
  const int32_t a = Cache(1);
  const int32_t b = Cache(2);
  const int32_t c = Cache(3);
  pool_->AcquireHit(b);
  EXPECT_EQ(pool_->meta(b).state, BlockState::kInUse);
  EXPECT_EQ(pool_->meta(b).hit_count, 1u);
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(a, c));
  clock_.Advance(5);
  pool_->Release(b);  // most recently used now
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(a, c, b));
}

TEST_F(BlockPoolTest, DuplicateCommitLeavesTheBlockPrivate) {
  Cache(7);
  const int32_t dup = *pool_->Allocate();
  EXPECT_FALSE(pool_->Commit(dup, H(7), -1, kDefaultPriority, kNoExpiry));
  EXPECT_TRUE(pool_->meta(dup).hash.IsZero());
  pool_->Release(dup);
  EXPECT_EQ(pool_->meta(dup).state, BlockState::kFree);
}

TEST_F(BlockPoolTest, RetentionExpiryFallsBackToDefaultInLruPlace) {
  // x: priority 80 for 100us, released first; y, z: default, released later.
  const int32_t x = Cache(1, 80, clock_.Now() + 100);
  const int32_t y = Cache(2);
  const int32_t z = Cache(3);
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(y, z, x));
  EXPECT_EQ(pool_->EffectivePriority(x), 80);
  clock_.Advance(100);
  EXPECT_EQ(pool_->EffectivePriority(x), kDefaultPriority);
  // Back at the default priority, x is the least recently used of the three.
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(x, y, z));
  EXPECT_EQ(pool_->meta(x).priority, kDefaultPriority);
}

TEST_F(BlockPoolTest, LowPriorityWithDurationRisesToDefaultAfterExpiry) {
  const int32_t lo = Cache(1, 5, clock_.Now() + 10);
  const int32_t mid = Cache(2, 20);
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(lo, mid));
  clock_.Advance(10);
  EXPECT_THAT(pool_->EvictionOrder(), ElementsAre(mid, lo));
}

TEST_F(BlockPoolTest, RaiseRetentionKeepsTheHighestPriority) {
  const int32_t id = *pool_->Allocate();
  ASSERT_TRUE(pool_->Commit(id, H(1), -1, 60, kNoExpiry));
  pool_->RaiseRetention(id, 20, kNoExpiry);  // lower: ignored
  EXPECT_EQ(pool_->meta(id).priority, 60);
  pool_->RaiseRetention(id, 70, clock_.Now() + 50);  // higher: replaces
  EXPECT_EQ(pool_->meta(id).priority, 70);
  EXPECT_EQ(pool_->meta(id).expiry, clock_.Now() + 50);
  pool_->RaiseRetention(id, 70, clock_.Now() + 80);  // equal: extends
  EXPECT_EQ(pool_->meta(id).expiry, clock_.Now() + 80);
  pool_->Release(id);
}

TEST_F(BlockPoolTest, PinnedBlocksAreNeverEvictedAndPinsAreCapped) {
  std::vector<int32_t> ids;
  for (uint64_t k = 1; k <= 6; ++k) ids.push_back(Cache(k));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool_->Pin(ids[i]).ok());
  Status over = pool_->Pin(ids[5]);
  EXPECT_EQ(over.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(over.message(), "pin cap reached: 5 of 5 blocks pinned");
  EXPECT_TRUE(pool_->Pin(ids[0]).ok());  // a second pin of a pinned block is free
  EXPECT_EQ(pool_->meta(ids[0]).pin_count, 2);
  EXPECT_EQ(pool_->meta(ids[0]).priority, kMaxPriority);
  // Fill the pool: only the one unpinned cached block can be evicted.
  std::vector<int32_t> taken;
  while (auto id = pool_->Allocate()) taken.push_back(*id);
  EXPECT_EQ(taken.size(), 6u);  // 5 free + the unpinned cached block
  EXPECT_EQ(pool_->num_pinned(), 5);
  pool_->Unpin(ids[0]);
  pool_->Unpin(ids[0]);
  EXPECT_EQ(pool_->meta(ids[0]).state, BlockState::kCached);
  EXPECT_EQ(pool_->meta(ids[0]).priority, kDefaultPriority);
  EXPECT_EQ(pool_->Allocate(), ids[0]);
  for (int32_t id : taken) pool_->Release(id);
  pool_->Release(ids[0]);
  for (int i = 1; i < 5; ++i) pool_->Unpin(ids[i]);
}

TEST_F(BlockPoolTest, PinnedBlockInUseStaysPinnedAfterRelease) {
  const int32_t id = Cache(9);
  pool_->AcquireHit(id);
  ASSERT_TRUE(pool_->Pin(id).ok());
  pool_->Release(id);
  EXPECT_EQ(pool_->meta(id).state, BlockState::kPinned);
  pool_->AcquireHit(id);
  pool_->Unpin(id);
  EXPECT_EQ(pool_->meta(id).state, BlockState::kInUse);
  pool_->Release(id);
  EXPECT_EQ(pool_->meta(id).state, BlockState::kCached);
}

TEST_F(BlockPoolTest, EvictAllCachedFreesEverythingEvictable) {
  Cache(1);
  Cache(2);
  const int32_t held = *pool_->Allocate();
  EXPECT_EQ(pool_->EvictAllCached(), 2);
  EXPECT_EQ(pool_->num_free(), 10);
  EXPECT_EQ(observer_.evicted.size(), 2u);
  pool_->Release(held);
}

TEST_F(BlockPoolTest, ManyBlocksHashIndexSurvivesChurn) {
  Make(MakePriorityLruPolicy(), 1000, 0);
  // Commit, hit, evict and recommit through a pool 4x smaller than the keys.
  for (uint64_t k = 0; k < 4000; ++k) {
    int32_t id = *pool_->Allocate();
    ASSERT_TRUE(pool_->Commit(id, H(k), -1, static_cast<Priority>(k % 101), kNoExpiry));
    pool_->Release(id);
    if (k % 7 == 0) {
      if (auto hit = pool_->Find(H(k / 2))) {
        pool_->AcquireHit(*hit);
        pool_->Release(*hit);
      }
    }
  }
  ASSERT_TRUE(pool_->CheckInvariants().ok()) << pool_->CheckInvariants().ToString();
  EXPECT_EQ(pool_->num_cached(), 1000);
}

using BlockPoolDeathTest = BlockPoolTest;

TEST_F(BlockPoolDeathTest, DoubleReleaseAborts) {
  const int32_t id = *pool_->Allocate();
  pool_->Release(id);
  EXPECT_DEATH(pool_->Release(id), "block 0: release with ref_count 0");
}

TEST_F(BlockPoolDeathTest, UnpinWithoutPinAborts) {
  const int32_t id = Cache(3);
  EXPECT_DEATH(pool_->Unpin(id), "unpin with pin_count 0");
}

TEST_F(BlockPoolDeathTest, HitOnUncommittedBlockAborts) {
  const int32_t id = *pool_->Allocate();
  EXPECT_DEATH(pool_->AcquireHit(id), "prefix hit on a block with no hash");
  pool_->Release(id);
}

}  // namespace
}  // namespace kvstack
