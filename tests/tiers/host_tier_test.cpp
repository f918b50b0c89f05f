// Host tier: round trips, eviction order by the core's policy, removal,
// refusal of malformed blocks, metrics, and a randomized model check.
#include <gtest/gtest.h>

#include "kvstack/tiers.h"
#include "tier_test_util.h"

namespace kvstack {
namespace {

using tier_test::Bytes;
using tier_test::GetOne;
using tier_test::H;
using tier_test::PutOne;

std::unique_ptr<Tier> MakeHost(int64_t blocks, size_t bytes = 256, const Clock* clock = nullptr,
                               const EvictionPolicy* policy = nullptr) {
  auto t = MakeHostTier({.bytes_per_block = bytes, .capacity_blocks = blocks, .policy = policy, .clock = clock});
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

TEST(HostTierTest, RejectsBadOptions) {
  EXPECT_EQ(MakeHostTier({.bytes_per_block = 0, .capacity_blocks = 4}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeHostTier({.bytes_per_block = 8, .capacity_blocks = 0}).status().code(), StatusCode::kInvalidArgument);
}

TEST(HostTierTest, PutThenGetReturnsTheSameBytes) {
  auto t = MakeHost(4);
  EXPECT_TRUE(PutOne(*t, 1));
  EXPECT_TRUE(t->Contains(H(1)));
  EXPECT_FALSE(t->Contains(H(2)));
  auto got = GetOne(*t, 1);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, Bytes(256, 1));
  EXPECT_FALSE(GetOne(*t, 2).has_value());
  const TierMetrics m = t->Metrics();
  EXPECT_EQ(m.name, "host");
  EXPECT_EQ(m.blocks, 1);
  EXPECT_EQ(m.capacity_blocks, 4);
  EXPECT_EQ(m.stored, 1u);
  EXPECT_EQ(m.hits, 1u);
  EXPECT_EQ(m.misses, 1u);
  EXPECT_EQ(m.bytes_in, 256u);
  EXPECT_EQ(m.bytes_out, 256u);
  EXPECT_EQ(m.get_latency_us.count(), 2u);
  EXPECT_EQ(m.put_latency_us.count(), 1u);
}

TEST(HostTierTest, EvictsLowestPriorityThenLeastRecentlyUsed) {
  ManualClock clock(1000);
  auto t = MakeHost(3, 64, &clock);
  ASSERT_TRUE(PutOne(*t, 1, 0, 80));
  clock.Advance(1);
  ASSERT_TRUE(PutOne(*t, 2, 0, 35));
  clock.Advance(1);
  ASSERT_TRUE(PutOne(*t, 3, 0, 35));
  clock.Advance(1);
  ASSERT_TRUE(GetOne(*t, 2).has_value());  // 2 is now more recent than 3
  clock.Advance(1);
  ASSERT_TRUE(PutOne(*t, 4));  // evicts 3: lowest priority, least recently used
  EXPECT_FALSE(t->Contains(H(3)));
  clock.Advance(1);
  ASSERT_TRUE(PutOne(*t, 5));  // then 2
  EXPECT_FALSE(t->Contains(H(2)));
  EXPECT_TRUE(t->Contains(H(1)));  // priority 80 outlives them
  EXPECT_EQ(t->Metrics().evictions, 2u);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

TEST(HostTierTest, RePutKeepsTheBlockAndRemoveForgetsIt) {
  auto t = MakeHost(2, 64);
  ASSERT_TRUE(PutOne(*t, 1));
  ASSERT_TRUE(PutOne(*t, 1));
  EXPECT_EQ(t->Metrics().blocks, 1);
  EXPECT_EQ(t->Metrics().stored, 1u);  // the second put found it held
  t->Remove(H(1));
  t->Remove(H(9));  // absent: no-op
  EXPECT_FALSE(t->Contains(H(1)));
  EXPECT_FALSE(GetOne(*t, 1).has_value());
  EXPECT_EQ(t->Metrics().blocks, 0);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

TEST(HostTierTest, RefusesBlocksOfTheWrongSize) {
  auto t = MakeHost(2, 64);
  std::vector<std::byte> small(63);
  TierPut p{{H(1)}, small};
  TierFuture f = t->Put(std::span<const TierPut>(&p, 1));
  ASSERT_TRUE(f.IsReady());
  EXPECT_FALSE(f.ok(0));
  EXPECT_EQ(t->Metrics().not_stored, 1u);
  TierGet g{H(1), small};
  TierFuture gf = t->Get(std::span<const TierGet>(&g, 1));
  EXPECT_FALSE(gf.ok(0));
}

TEST(HostTierTest, BatchLookupAndGet) {
  auto t = MakeHost(8, 32);
  for (uint64_t k = 0; k < 4; ++k) ASSERT_TRUE(PutOne(*t, k));
  std::vector<BlockHash> hs = {H(0), H(5), H(3)};
  TierFuture lf = t->Lookup(hs);
  ASSERT_TRUE(lf.IsReady());
  EXPECT_TRUE(lf.ok(0));
  EXPECT_FALSE(lf.ok(1));
  EXPECT_TRUE(lf.ok(2));
  std::vector<std::vector<std::byte>> out(3, std::vector<std::byte>(32));
  std::vector<TierGet> gets = {{H(0), out[0]}, {H(5), out[1]}, {H(3), out[2]}};
  TierFuture gf = t->Get(gets);
  EXPECT_EQ(gf.size(), 3u);
  EXPECT_EQ(gf.num_ok(), 2u);
  EXPECT_EQ(out[2], Bytes(32, 3));
}

TEST(HostTierTest, LfuPolicyKeepsTheBlocksWithMoreHits) {
  auto lfu = MakeLfuPolicy();
  ManualClock clock(10);
  auto t = MakeHost(2, 16, &clock, lfu.get());
  auto b1 = Bytes(16, 1), b2 = Bytes(16, 2), b3 = Bytes(16, 3);
  std::vector<TierPut> puts = {{{H(1), kDefaultPriority, 9}, b1}, {{H(2), kDefaultPriority, 0}, b2}};
  t->Put(puts).Wait();
  clock.Advance(1);
  TierPut p3{{H(3), kDefaultPriority, 0}, b3};
  t->Put(std::span<const TierPut>(&p3, 1)).Wait();
  EXPECT_TRUE(t->Contains(H(1)));  // 9 device hits carried into the tier
  EXPECT_FALSE(t->Contains(H(2)));
}

TEST(HostTierTest, RandomizedAgainstAReferenceModel) {
  auto t = MakeHost(37, 48);
  tier_test::RandomModelCheck(*t, 20000, 7, 120);
}

}  // namespace
}  // namespace kvstack
