// Redis tier against real redis-server processes on 127.0.0.1 (ports picked
// at run time): round trips, key format and TTL, two servers by consistent
// hashing, a server killed mid-run (misses, no failures), a paused (slow)
// server, reconnection with backoff after a restart, corrupt values, several
// connections per server (per-key order, one backoff for a failure every
// connection sees), and a randomized model check. Skips when redis-server is not installed.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "kvstack/tiers.h"
#include "redis_server.h"
#include "tier_test_util.h"
#include "tiers/consistent_hash.h"
#include "common/requirement.h"

namespace kvstack {
namespace {

using tier_test::Bytes;
using tier_test::GetOne;
using tier_test::H;
using tier_test::PutOne;
using tier_test::RedisServer;

constexpr size_t kBlock = 1000;

class RedisTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!tier_test::RedisServerInstalled()) {
      KVSTACK_SKIP_MISSING() << tier_test::kRedisServerBinary << " is not installed (apt-get install redis-server)";
    }
    ASSERT_TRUE(server_.Start()) << "redis-server did not start";
  }

  std::unique_ptr<Tier> Make(std::vector<int> ports, const Clock* clock = nullptr, int connections = 4) {
    RedisTierOptions o;
    for (int p : ports) o.servers.push_back({"127.0.0.1", p});
    o.model_id = "test-model";
    o.bytes_per_block = kBlock;
    o.ttl_seconds = 600;
    o.op_timeout = 200'000;
    o.connect_timeout = 200'000;
    o.backoff_initial = 100'000;
    o.backoff_max = 1'000'000;
    o.index_blocks = 4096;
    o.connections = connections;
    o.clock = clock;
    o.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.emplace_back(line);
    };
    auto t = MakeRedisTier(o);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return std::move(t).value();
  }

  long long Command(RedisServer& s, const std::string& cmd, const std::string& key) {
    redisContext* c = s.Connect();
    auto* r = static_cast<redisReply*>(redisCommand(c, "%s %b", cmd.c_str(), key.data(), key.size()));
    long long v = r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r != nullptr && r->type == REDIS_REPLY_STRING ? static_cast<long long>(r->len)
                                                                 : -1;
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return v;
  }
  long long DbSize(RedisServer& s) {
    redisContext* c = s.Connect();
    auto* r = static_cast<redisReply*>(redisCommand(c, "DBSIZE"));
    long long v = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
  }

  RedisServer server_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST(RedisTierOptionsTest, RejectsBadOptions) {
  RedisTierOptions o;
  o.model_id = "m";
  o.bytes_per_block = 8;
  EXPECT_EQ(MakeRedisTier(o).status().code(), StatusCode::kInvalidArgument);  // no server
  o.servers.push_back({"127.0.0.1", 0});
  EXPECT_EQ(MakeRedisTier(o).status().code(), StatusCode::kInvalidArgument);  // bad port
  o.servers[0].port = 6379;
  o.model_id = "";
  EXPECT_EQ(MakeRedisTier(o).status().code(), StatusCode::kInvalidArgument);  // no model id
}

TEST(ConsistentHashTest, AddingAServerMovesAboutItsShare) {
  tiers_internal::ConsistentHashRing three({"a:1", "b:2", "c:3"});
  tiers_internal::ConsistentHashRing four({"a:1", "b:2", "c:3", "d:4"});
  int moved = 0, to_new = 0;
  std::vector<int> share(3, 0);
  for (uint64_t k = 0; k < 20000; ++k) {
    const int a = three.ServerFor(H(k)), b = four.ServerFor(H(k));
    ++share[static_cast<size_t>(a)];
    if (a != b) ++moved;
    if (b == 3) ++to_new;
  }
  EXPECT_EQ(moved, to_new);  // keys only move to the new server
  EXPECT_GT(moved, 20000 / 8);
  EXPECT_LT(moved, 20000 / 2);
  for (int s : share) EXPECT_GT(s, 20000 / 6);
}

TEST_F(RedisTierTest, RoundTripsWithKeyPrefixAndTtl) {
  auto t = Make({server_.port()});
  for (uint64_t k = 0; k < 20; ++k) ASSERT_TRUE(PutOne(*t, k));
  for (uint64_t k = 0; k < 20; ++k) {
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k));
    EXPECT_TRUE(t->Contains(H(k)));
  }
  EXPECT_FALSE(GetOne(*t, 999).has_value());
  const std::string key = RedisBlockKey("test-model", H(3));
  EXPECT_EQ(key, "kvstack:test-model:" + H(3).ToHex());
  EXPECT_EQ(Command(server_, "STRLEN", key), static_cast<long long>(kBlock + 8));
  const long long ttl = Command(server_, "TTL", key);
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 600);

  std::vector<BlockHash> hs = {H(1), H(500)};
  TierFuture lf = t->Lookup(hs);
  lf.Wait();
  EXPECT_TRUE(lf.ok(0));
  EXPECT_FALSE(lf.ok(1));

  t->Remove(H(1));
  EXPECT_FALSE(t->Contains(H(1)));
  EXPECT_FALSE(GetOne(*t, 1).has_value());
  const TierMetrics m = t->Metrics();
  EXPECT_EQ(m.name, "redis");
  EXPECT_EQ(m.stored, 20u);
  EXPECT_EQ(m.bytes_in, 20 * kBlock);
  EXPECT_EQ(m.bytes_out, 20 * kBlock);
  EXPECT_EQ(m.faults, 0u);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

TEST_F(RedisTierTest, PipelinedBatchesSpreadOverTwoServers) {
  RedisServer second;
  ASSERT_TRUE(second.Start());
  auto t = Make({server_.port(), second.port()});
  std::vector<std::vector<std::byte>> bytes;
  std::vector<TierPut> puts;
  for (uint64_t k = 0; k < 64; ++k) bytes.push_back(Bytes(kBlock, k));
  for (uint64_t k = 0; k < 64; ++k) puts.push_back({{H(k)}, bytes[k]});
  TierFuture pf = t->Put(puts);
  pf.Wait();
  EXPECT_EQ(pf.num_ok(), 64u);
  EXPECT_GT(DbSize(server_), 0);
  EXPECT_GT(DbSize(second), 0);
  EXPECT_EQ(DbSize(server_) + DbSize(second), 64);
  std::vector<std::vector<std::byte>> out(64, std::vector<std::byte>(kBlock));
  std::vector<TierGet> gets;
  for (uint64_t k = 0; k < 64; ++k) gets.push_back({H(k), out[k]});
  TierFuture gf = t->Get(gets);
  gf.Wait();
  EXPECT_EQ(gf.num_ok(), 64u);
  for (uint64_t k = 0; k < 64; ++k) EXPECT_EQ(out[k], Bytes(kBlock, k));
}

TEST_F(RedisTierTest, KilledServerGivesMissesThenReconnectsWithBackoff) {
  ManualClock clock(1'000'000);
  auto t = Make({server_.port()}, &clock);
  ASSERT_TRUE(PutOne(*t, 1));
  server_.Kill();
  EXPECT_FALSE(GetOne(*t, 1).has_value());  // the connection breaks: a miss
  EXPECT_FALSE(PutOne(*t, 2));              // down: stored nowhere, no exception
  const TierMetrics down = t->Metrics();
  EXPECT_GE(down.faults, 2u);
  ASSERT_TRUE(server_.Restart());  // same port, empty (no persistence)
  // Still inside the backoff window: fails fast without connecting.
  EXPECT_FALSE(PutOne(*t, 3));
  clock.Advance(1'000'001);  // past the longest backoff
  EXPECT_TRUE(PutOne(*t, 4));
  auto got = GetOne(*t, 4);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, Bytes(kBlock, 4));
  std::lock_guard<std::mutex> lock(log_mu_);
  EXPECT_GE(log_.size(), 2u);  // the failure, then the reconnection
  EXPECT_NE(log_.back().find("reconnected"), std::string::npos) << log_.back();
}

TEST_F(RedisTierTest, ASlowServerTimesOutToMisses) {
  ManualClock clock(1'000'000);
  auto t = Make({server_.port()}, &clock);
  ASSERT_TRUE(PutOne(*t, 1));
  server_.Pause();  // accepts nothing, answers nothing: op_timeout (200 ms)
  EXPECT_FALSE(GetOne(*t, 1).has_value());
  EXPECT_GE(t->Metrics().faults, 1u);
  server_.Resume();
  clock.Advance(1'000'001);
  auto got = GetOne(*t, 1);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, Bytes(kBlock, 1));
}

TEST_F(RedisTierTest, CorruptValuesAreMissesAndCounted) {
  auto t = Make({server_.port()});
  ASSERT_TRUE(PutOne(*t, 1));
  ASSERT_TRUE(PutOne(*t, 2));
  redisContext* c = server_.Connect();
  const std::string k1 = RedisBlockKey("test-model", H(1)), k2 = RedisBlockKey("test-model", H(2));
  freeReplyObject(redisCommand(c, "SETRANGE %b 10 X", k1.data(), k1.size()));  // a flipped byte
  freeReplyObject(redisCommand(c, "SET %b short", k2.data(), k2.size()));      // wrong length
  redisFree(c);
  EXPECT_FALSE(GetOne(*t, 1).has_value());
  EXPECT_FALSE(GetOne(*t, 2).has_value());
  EXPECT_EQ(t->Metrics().faults, 2u);
  EXPECT_FALSE(t->Contains(H(1)));
}

TEST_F(RedisTierTest, ModelIdsDoNotShareKeys) {
  auto a = Make({server_.port()});
  RedisTierOptions o;
  o.servers.push_back({"127.0.0.1", server_.port()});
  o.model_id = "other-model";
  o.bytes_per_block = kBlock;
  auto b = MakeRedisTier(o).value();
  ASSERT_TRUE(PutOne(*a, 1));
  EXPECT_FALSE(GetOne(*b, 1).has_value());
}

// Several connections (lanes) per server: calls on one key, made without
// waiting in between and from several threads at once, must still reach the
// server in call order (a key always travels in one lane).
TEST_F(RedisTierTest, EachKeysCallsStayInOrderAcrossConnections) {
  auto t = Make({server_.port()}, nullptr, 4);
  constexpr uint64_t kKeysPerThread = 50;
  std::vector<std::thread> callers;
  for (uint64_t th = 0; th < 4; ++th) {
    callers.emplace_back([&t, th] {
      std::vector<TierFuture> pending;
      for (uint64_t k = th * kKeysPerThread; k < (th + 1) * kKeysPerThread; ++k) {
        const auto v0 = Bytes(kBlock, k, 0), v1 = Bytes(kBlock, k, 1), v2 = Bytes(kBlock, k, 2);
        const TierPut p0{{H(k)}, v0}, p1{{H(k)}, v1}, p2{{H(k)}, v2};
        pending.push_back(t->Put(std::span(&p0, 1)));  // the bytes are copied before Put returns
        pending.push_back(t->Put(std::span(&p1, 1)));
        t->Remove(H(k));
        pending.push_back(t->Put(std::span(&p2, 1)));
      }
      for (auto& f : pending) f.Wait();
    });
  }
  for (auto& c : callers) c.join();
  for (uint64_t k = 0; k < 4 * kKeysPerThread; ++k) {
    auto got = GetOne(*t, k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(*got, Bytes(kBlock, k, 2)) << k;
  }
  EXPECT_EQ(t->Metrics().faults, 0u);
  EXPECT_TRUE(t->CheckInvariants().ok());
}

// Every connection breaks when the server dies, but the server is marked down
// once: the backoff is the first one (100 ms), not doubled per connection.
TEST_F(RedisTierTest, AFailureSeenByEveryConnectionBacksOffOnce) {
  ManualClock clock(1'000'000);
  auto t = Make({server_.port()}, &clock, 4);
  std::vector<std::vector<std::byte>> bytes;
  std::vector<TierPut> puts;
  for (uint64_t k = 0; k < 64; ++k) bytes.push_back(Bytes(kBlock, k));
  for (uint64_t k = 0; k < 64; ++k) puts.push_back({{H(k)}, bytes[k]});
  TierFuture before = t->Put(puts);  // every lane connects
  before.Wait();
  ASSERT_EQ(before.num_ok(), 64u);
  server_.Kill();
  std::vector<std::vector<std::byte>> out(64, std::vector<std::byte>(kBlock));
  std::vector<TierGet> gets;
  for (uint64_t k = 0; k < 64; ++k) gets.push_back({H(k), out[k]});
  TierFuture broken = t->Get(gets);
  broken.Wait();
  EXPECT_EQ(broken.num_ok(), 0u);
  ASSERT_TRUE(server_.Restart());
  clock.Advance(100'001);  // past the first backoff only
  TierFuture after = t->Put(puts);
  after.Wait();
  EXPECT_EQ(after.num_ok(), 64u);
}

TEST_F(RedisTierTest, RandomizedAgainstAReferenceModel) {
  auto t = Make({server_.port()});
  tier_test::RandomModelCheck(*t, 1500, 3, 80);
}

}  // namespace
}  // namespace kvstack
