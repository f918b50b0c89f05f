// The Redis tier on a real Redis Cluster (3 masters, 3 replicas on 127.0.0.1,
// ports picked at run time): key slots as Redis computes them, blocks spread
// over the masters, reads from replicas, a master killed (misses, then hits
// again once its replica is promoted), a live reshard of a third of the slots
// while blocks are read and written (every block still found and correct),
// and the randomized model check. Slot-map parsing and redirection parsing
// are tested without a cluster.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "common/requirement.h"
#include "kvstack/tiers.h"
#include "redis_cluster.h"
#include "tier_test_util.h"
#include "tiers/redis_slot_map.h"
#include "tiers/redis_topology.h"

namespace kvstack {
namespace {

using tier_test::Bytes;
using tier_test::GetOne;
using tier_test::H;
using tier_test::PutOne;
using tier_test::RedisCluster;
using tiers_internal::ParseRedirect;
using tiers_internal::RedisKeySlot;

constexpr size_t kBlock = 1000;

TEST(RedisKeySlotTest, MatchesRedisClusterSpecification) {
  // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
  EXPECT_EQ(RedisKeySlot("123456789"), 0x31C3 & 16383);  // the CRC16 check value
  EXPECT_EQ(RedisKeySlot("foo"), 12182);
  EXPECT_EQ(RedisKeySlot("bar"), 5061);
  EXPECT_EQ(RedisKeySlot("{user1000}.following"), RedisKeySlot("user1000"));
  EXPECT_EQ(RedisKeySlot("foo{}{bar}"), RedisKeySlot("foo{}{bar}"));  // empty tag: the whole key
  EXPECT_NE(RedisKeySlot("foo{}{bar}"), RedisKeySlot("bar"));
  EXPECT_EQ(RedisKeySlot("foo{{bar}}zap"), RedisKeySlot("{bar"));
}

TEST(RedisRedirectTest, ParsesMovedAndAsk) {
  auto moved = ParseRedirect("MOVED 3999 127.0.0.1:6381", "10.0.0.1");
  ASSERT_TRUE(moved.has_value());
  EXPECT_FALSE(moved->ask);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->to.host, "127.0.0.1");
  EXPECT_EQ(moved->to.port, 6381);
  auto ask = ParseRedirect("ASK 12 ::1:7000", "x");
  ASSERT_TRUE(ask.has_value());
  EXPECT_TRUE(ask->ask);
  EXPECT_EQ(ask->to.host, "::1");
  auto self = ParseRedirect("MOVED 1 :7001", "127.0.0.9");  // an empty host: the node that answered
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->to.host, "127.0.0.9");
  EXPECT_FALSE(ParseRedirect("ERR wrong", "h").has_value());
  EXPECT_FALSE(ParseRedirect("MOVED 16384 h:1", "h").has_value());
  EXPECT_FALSE(ParseRedirect("MOVED 1 h:0", "h").has_value());
  EXPECT_FALSE(ParseRedirect("MOVED x h:1", "h").has_value());
}

TEST(ClusterTopologyTest, RefusesMapsWithHolesOrOverlapsAndLearnsMoves) {
  auto t = tiers_internal::MakeClusterTopology({.seeds = {{"127.0.0.1", 7000}}});
  const BlockHash h = H(1);
  EXPECT_FALSE(t->NodeFor("k", h, false).has_value());  // no map yet
  EXPECT_TRUE(t->WantsRefresh());
  EXPECT_FALSE(t->WantsRefresh());  // one refresher at a time
  std::vector<tiers_internal::RedisSlotRange> holes = {{0, 100, {"127.0.0.1", 7000}, {}}};
  EXPECT_FALSE(t->Refresh(holes));
  std::vector<tiers_internal::RedisSlotRange> overlap = {{0, 9000, {"127.0.0.1", 7000}, {}},
                                                         {8000, 16383, {"127.0.0.1", 7001}, {}}};
  EXPECT_FALSE(t->Refresh(overlap));
  std::vector<tiers_internal::RedisSlotRange> whole = {{0, 8191, {"127.0.0.1", 7000}, {{"127.0.0.1", 7003}}},
                                                       {8192, 16383, {"127.0.0.1", 7001}, {{"127.0.0.1", 7004}}}};
  EXPECT_TRUE(t->Refresh(whole));
  EXPECT_EQ(t->refreshes(), 1u);
  const auto foo = t->NodeFor("foo", h, false);  // slot 12182: the second master
  ASSERT_TRUE(foo.has_value());
  EXPECT_EQ(t->node(*foo).port, 7001);
  auto moved = t->Moved(RedisKeySlot("foo"), {"127.0.0.1", 7002});
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(t->node(*t->NodeFor("foo", h, false)).port, 7002);
  EXPECT_EQ(t->node(*t->NodeFor("bar", h, false)).port, 7000);  // other slots stay
}

TEST(ClusterTopologyTest, ReadsGoToAReplicaWhenAsked) {
  auto t = tiers_internal::MakeClusterTopology({.seeds = {{"127.0.0.1", 7000}}, .read_from_replicas = true});
  ASSERT_TRUE(t->WantsRefresh());
  ASSERT_TRUE(t->Refresh({{0, 16383, {"127.0.0.1", 7000}, {{"127.0.0.1", 7003}}}}));
  const auto w = t->NodeFor("foo", H(1), false), r = t->NodeFor("foo", H(1), true);
  EXPECT_EQ(t->node(*w).port, 7000);
  EXPECT_EQ(t->node(*r).port, 7003);
  EXPECT_TRUE(t->is_replica(*r));
  EXPECT_FALSE(t->is_replica(*w));
}

class RedisClusterTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RedisCluster::Installed()) {
      KVSTACK_SKIP_MISSING() << "redis-server or redis-cli is not installed (apt-get install redis-server redis-tools)";
    }
    std::string error;
    ASSERT_TRUE(cluster_.Start(&error)) << error;
  }

  std::unique_ptr<Tier> Make(bool read_from_replicas = false, const Clock* clock = nullptr) {
    RedisTierOptions o;
    o.cluster_seeds.push_back({"127.0.0.1", cluster_.node(0).port()});
    o.read_from_replicas = read_from_replicas;
    o.model_id = "test-model";
    o.bytes_per_block = kBlock;
    o.ttl_seconds = 600;
    o.op_timeout = 500'000;
    o.connect_timeout = 200'000;
    o.backoff_initial = 50'000;
    o.backoff_max = 200'000;
    o.index_blocks = 4096;
    o.clock = clock;
    o.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.emplace_back(line);
    };
    auto t = MakeRedisTier(o);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return std::move(t).value();
  }

  RedisCluster cluster_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(RedisClusterTierTest, BlocksGoToTheMasterOfTheirSlot) {
  auto t = Make();
  for (uint64_t k = 0; k < 60; ++k) ASSERT_TRUE(PutOne(*t, k)) << k;
  for (uint64_t k = 0; k < 60; ++k) {
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k));
  }
  const TierMetrics m = t->Metrics();
  EXPECT_EQ(m.stored, 60u);
  EXPECT_EQ(m.faults, 0u);
  EXPECT_EQ(m.redirections, 0u) << "the slot map sent a block to a node that does not serve its slot";
  EXPECT_GE(m.slot_map_refreshes, 1u);
  // Every node of the cluster is known (seeded with one); the three masters
  // stored blocks, the replicas none.
  ASSERT_EQ(m.nodes.size(), 6u);
  int masters_storing = 0;
  uint64_t stored = 0;
  for (const TierNodeMetrics& n : m.nodes) {
    stored += n.stored;
    if (n.role == "master" && n.stored > 0) ++masters_storing;
    if (n.role == "replica") {
      EXPECT_EQ(n.stored, 0u) << n.node;
    }
  }
  EXPECT_EQ(masters_storing, 3);
  EXPECT_EQ(stored, 60u);
  // The key is where Redis itself says its slot lives.
  const std::string key = RedisBlockKey("test-model", H(7));
  const int master = cluster_.MasterOf(RedisKeySlot(key));
  ASSERT_GT(master, 0);
  redisContext* c = cluster_.node(static_cast<size_t>(cluster_.IndexOf(master))).Connect();
  auto* r = static_cast<redisReply*>(redisCommand(c, "STRLEN %b", key.data(), key.size()));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->integer, static_cast<long long>(kBlock + 8));
  freeReplyObject(r);
  redisFree(c);
}

TEST_F(RedisClusterTierTest, ReadsFromReplicas) {
  auto writer = Make();
  for (uint64_t k = 0; k < 30; ++k) ASSERT_TRUE(PutOne(*writer, k));
  auto reader = Make(/*read_from_replicas=*/true);
  // Replication is asynchronous: wait (bounded) until the replicas have them.
  int found = 0;
  for (int attempt = 0; attempt < 100 && found < 30; ++attempt) {
    found = 0;
    for (uint64_t k = 0; k < 30; ++k) {
      auto got = GetOne(*reader, k);
      if (got.has_value()) {
        EXPECT_EQ(*got, Bytes(kBlock, k));
        ++found;
      }
    }
    if (found < 30) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(found, 30);
  uint64_t replica_hits = 0, master_hits = 0;
  for (const TierNodeMetrics& n : reader->Metrics().nodes) (n.role == "replica" ? replica_hits : master_hits) += n.hits;
  EXPECT_GT(replica_hits, 0u);
  EXPECT_EQ(master_hits, 0u);
}

// A master killed: its blocks miss (never an error, never a wrong block)
// until its replica is promoted and the re-read slot map says so; then the
// replicated blocks are hits again.
TEST_F(RedisClusterTierTest, AKilledMasterMissesThenItsReplicaServes) {
  auto t = Make();
  for (uint64_t k = 0; k < 60; ++k) ASSERT_TRUE(PutOne(*t, k));
  const std::string key = RedisBlockKey("test-model", H(0));
  const int master = cluster_.MasterOf(RedisKeySlot(key));
  ASSERT_GT(master, 0);
  // Replication is asynchronous: wait for the replica of key 0's master to
  // have it (WAIT on the master: one replica acknowledged everything).
  {
    redisContext* c = cluster_.node(static_cast<size_t>(cluster_.IndexOf(master))).Connect();
    auto* r = static_cast<redisReply*>(redisCommand(c, "WAIT 1 5000"));
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);
  }
  cluster_.node(static_cast<size_t>(cluster_.IndexOf(master))).Kill();
  EXPECT_FALSE(GetOne(*t, 0).has_value());  // a miss while the cluster fails over
  // Bounded wait for the failover (cluster-node-timeout is 1 s).
  bool back = false;
  for (int attempt = 0; attempt < 300 && !back; ++attempt) {
    auto got = GetOne(*t, 0);
    if (got.has_value()) {
      EXPECT_EQ(*got, Bytes(kBlock, 0));
      back = true;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ASSERT_TRUE(back) << "block 0 never came back after its master's replica took over";
  EXPECT_NE(cluster_.MasterOf(RedisKeySlot(key)), master);
  // The new master answers before every other node has heard of it: until
  // each live node says cluster_state:ok, some still answer CLUSTERDOWN (a
  // miss, by design). A busy machine stretches that window.
  ASSERT_TRUE(cluster_.WaitReady(std::chrono::seconds(30))) << "the cluster never recovered from the failover";
  // Every block is served again, by a live master.
  for (uint64_t k = 0; k < 60; ++k) {
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k));
  }
  EXPECT_GE(t->Metrics().slot_map_refreshes, 2u);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

// A third of the slots move from one master to another while blocks are
// written and read: every read finds its block, correct; the tier follows
// ASK and MOVED redirections instead of failing.
TEST_F(RedisClusterTierTest, ALiveReshardLosesNoBlock) {
  auto t = Make();
  constexpr uint64_t kKeys = 400;
  for (uint64_t k = 0; k < kKeys; ++k) ASSERT_TRUE(PutOne(*t, k));
  const int from = cluster_.MasterOf(0), to = cluster_.MasterOf(16383);
  ASSERT_GT(from, 0);
  ASSERT_GT(to, 0);
  ASSERT_NE(from, to);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0}, wrong{0}, missing{0}, failed_puts{0};
  std::thread client([&] {
    uint64_t round = 0;
    while (!done.load()) {
      for (uint64_t k = 0; k < kKeys; k += 7) {
        auto got = GetOne(*t, k);
        reads.fetch_add(1);
        if (!got.has_value()) {
          missing.fetch_add(1);
        } else if (*got != Bytes(kBlock, k)) {
          wrong.fetch_add(1);
        }
      }
      // New blocks while slots migrate.
      const uint64_t k = kKeys + round++;
      if (!PutOne(*t, k)) failed_puts.fetch_add(1);
    }
  });
  std::string error;
  const bool resharded = cluster_.Reshard(from, to, 16384 / 3, &error);
  done.store(true);
  client.join();
  ASSERT_TRUE(resharded) << error;
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(missing.load(), 0u) << "of " << reads.load() << " reads during the reshard";
  EXPECT_EQ(failed_puts.load(), 0u);
  for (uint64_t k = 0; k < kKeys; ++k) {
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k));
  }
  EXPECT_GT(t->Metrics().redirections, 0u) << "no redirection was seen: was anything moved?";
  EXPECT_EQ(cluster_.MasterOf(0), to);
}

TEST_F(RedisClusterTierTest, RandomizedAgainstAReferenceModel) {
  auto t = Make();
  tier_test::RandomModelCheck(*t, 1500, 5, 80);
}

TEST(RedisClusterTierOptionsTest, RejectsServersAndSeedsTogether) {
  RedisTierOptions o;
  o.model_id = "m";
  o.bytes_per_block = 8;
  o.servers.push_back({"127.0.0.1", 6379});
  o.cluster_seeds.push_back({"127.0.0.1", 7000});
  EXPECT_EQ(MakeRedisTier(o).status().code(), StatusCode::kInvalidArgument);
  o.cluster_seeds.clear();
  o.read_from_replicas = true;
  EXPECT_EQ(MakeRedisTier(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstack
