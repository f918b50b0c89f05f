// Router's policies over a small index: a repeated prefix goes to its holder,
// tenants are never credited with each other's blocks, predictions keep
// siblings together and expire, session affinity, durable over one-off
// context, tier weights, unhealthy workers; and a foreign (vLLM) worker's
// token-id events keyed by kvstack's own chain.
#include "kvstack/router.h"

#include <set>

#include <gtest/gtest.h>

namespace kvstack {
namespace {

constexpr size_t kBlock = 4;

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() : index_(BlockIndex::Options{.hash_seed = 0, .model_id = "m", .durable_priority = 50}) {
    for (int i = 0; i < 4; ++i) index_.AddWorker();
    loads_.resize(4);
  }

  std::vector<BlockHash> Keys(const std::vector<Token>& tokens, const std::string& salt = "") const {
    std::vector<BlockHash> out;
    const BlockHasher& h = index_.hasher();
    h.ChainBlocks(h.Root(ExtraKeys{.model_id = "m", .cache_salt = salt, .adapter_id = ""}), tokens, kBlock, &out);
    return out;
  }
  void Store(WorkerId w, const std::vector<BlockHash>& keys, StorageTier tier = StorageTier::kDevice,
             Priority priority = kDefaultPriority) {
    std::vector<IndexEvent> events;
    for (const BlockHash& k : keys) events.push_back({KvEventKind::kBlockStored, tier, k, priority});
    ASSERT_EQ(index_.ApplyBatch(w, index_.Stats(w).next_seq, events).kind, BatchOutcome::Kind::kApplied);
  }
  RouteDecision Route(Router& r, const std::vector<BlockHash>& keys, const std::string& session = "") {
    return r.Route(RouteQuery{.keys = keys, .prompt_blocks = static_cast<int32_t>(keys.size()), .session_id = session},
                   loads_);
  }

  ManualClock clock_{1'000'000};
  BlockIndex index_;
  std::vector<WorkerLoad> loads_;
  const std::vector<Token> prompt_ = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
};

TEST_F(RouterTest, RepeatedPrefixGoesToItsHolder) {
  Router r(RouterOptions{}, &index_, &clock_);
  const auto keys = Keys(prompt_);
  Store(2, keys);
  const RouteDecision d = Route(r, keys);
  EXPECT_EQ(d.worker, 2);
  EXPECT_EQ(d.reason, RouteReason::kKvHit);
  EXPECT_EQ(d.match.blocks, 4);
  EXPECT_EQ(d.match.by_tier[0], 4);
}

TEST_F(RouterTest, TenantsAreNeverCreditedWithEachOthersBlocks) {
  Router r(RouterOptions{}, &index_, &clock_);
  Store(1, Keys(prompt_, "tenant-a"));
  const auto b = Keys(prompt_, "tenant-b");
  for (int w = 0; w < 4; ++w) EXPECT_EQ(index_.Match(w, b, clock_.Now()).blocks, 0);
  const RouteDecision d = Route(r, b);
  EXPECT_EQ(d.match.blocks, 0);
  EXPECT_EQ(d.reason, RouteReason::kLoad);
}

TEST_F(RouterTest, SiblingsFollowThePredictionUntilItExpires) {
  RouterOptions o;
  o.prediction_ttl = 500'000;
  Router r(o, &index_, &clock_);
  const auto keys = Keys(prompt_);
  const RouteDecision first = Route(r, keys);
  ASSERT_GE(first.worker, 0);
  for (int i = 0; i < 9; ++i) {
    const RouteDecision d = Route(r, keys);
    EXPECT_EQ(d.worker, first.worker);
    EXPECT_EQ(d.match.predicted, 4);
  }
  EXPECT_EQ(index_.Stats(first.worker).predicted, 4);
  clock_.Advance(600'000);
  EXPECT_EQ(index_.ExpirePredictions(clock_.Now()), 4);
  EXPECT_EQ(index_.Match(first.worker, keys, clock_.Now()).blocks, 0);
  // Confirmed by the worker's event before expiry: held, prediction gone.
  Route(r, keys);
  const WorkerId w = Route(r, keys).worker;
  Store(w, keys);
  EXPECT_EQ(index_.Stats(w).predicted, 0);
  EXPECT_TRUE(index_.CheckInvariants().ok());
}

TEST_F(RouterTest, LoadOutweighsASmallHit) {
  Router r(RouterOptions{}, &index_, &clock_);
  const auto keys = Keys(prompt_);
  Store(0, {keys[0]});
  loads_[0].queued_prefill_blocks = 10;
  EXPECT_NE(Route(r, keys).worker, 0);
}

TEST_F(RouterTest, FasterTiersAndDurableBlocksWin) {
  Router r(RouterOptions{}, &index_, &clock_);
  const auto keys = Keys(prompt_);
  Store(0, keys, StorageTier::kDisk);
  Store(1, keys, StorageTier::kHost);
  EXPECT_EQ(Route(r, keys).worker, 1);
  index_.ExpirePredictions(clock_.Now() + 10'000'000);
  // Same tier, one-off vs durable.
  const std::vector<Token> other = {21, 22, 23, 24, 25, 26, 27, 28};
  const auto k2 = Keys(other);
  Store(2, k2, StorageTier::kDevice, 35);
  Store(3, k2, StorageTier::kDevice, 90);
  const RouteDecision d = Route(r, k2);
  EXPECT_EQ(d.worker, 3);
  EXPECT_EQ(d.match.durable, 2);
}

TEST_F(RouterTest, SessionAffinityHoldsUntilOverloadedOrDown) {
  RouterOptions o;
  o.policy = RoutingPolicy::kKvAware;
  o.prediction_ttl = 0;  // no blocks held anywhere: only the session keeps it on one worker
  o.overload_in_flight = 3;
  Router r(o, &index_, &clock_);
  const auto keys = Keys(prompt_);
  const WorkerId w = Route(r, keys, "s1").worker;
  for (int i = 0; i < 5; ++i) {
    const RouteDecision d = Route(r, keys, "s1");
    EXPECT_EQ(d.worker, w);
    EXPECT_EQ(d.reason, RouteReason::kAffinity);
  }
  loads_[static_cast<size_t>(w)].running = 3;
  EXPECT_NE(Route(r, keys, "s1").worker, w);
  loads_[static_cast<size_t>(w)].running = 0;
  const WorkerId w2 = Route(r, keys, "s1").worker;
  loads_[static_cast<size_t>(w2)].healthy = false;
  EXPECT_NE(Route(r, keys, "s1").worker, w2);
  EXPECT_EQ(r.sessions(), 1u);
  clock_.Advance(o.affinity_ttl);
  r.ForgetExpiredSessions();
  EXPECT_EQ(r.sessions(), 0u);
}

// The baselines are what their names say: a session_id does not make them
// sticky (that would be routing to a warm cache, what they are measured
// against).
TEST_F(RouterTest, BaselinePoliciesIgnoreSessions) {
  for (RoutingPolicy p : {RoutingPolicy::kRoundRobin, RoutingPolicy::kLeastLoaded, RoutingPolicy::kRandom}) {
    RouterOptions o;
    o.policy = p;
    Router r(o, &index_, &clock_);
    loads_ = std::vector<WorkerLoad>(4);
    std::set<WorkerId> picked;
    for (int i = 0; i < 40; ++i) {
      const RouteDecision d = Route(r, Keys(prompt_), "s1");
      EXPECT_NE(d.reason, RouteReason::kAffinity) << RoutingPolicyName(p);
      picked.insert(d.worker);
    }
    EXPECT_GT(picked.size(), 1u) << RoutingPolicyName(p);
    EXPECT_EQ(r.sessions(), 0u) << RoutingPolicyName(p);
  }
}

TEST_F(RouterTest, PoliciesSkipUnhealthyWorkers) {
  for (RoutingPolicy p : {RoutingPolicy::kKvAware, RoutingPolicy::kRoundRobin, RoutingPolicy::kLeastLoaded,
                          RoutingPolicy::kRandom}) {
    RouterOptions o;
    o.policy = p;
    Router r(o, &index_, &clock_);
    loads_ = std::vector<WorkerLoad>(4);
    loads_[0].healthy = loads_[2].healthy = false;
    for (int i = 0; i < 20; ++i) {
      const WorkerId w = Route(r, Keys(prompt_)).worker;
      EXPECT_TRUE(w == 1 || w == 3) << RoutingPolicyName(p);
    }
    for (auto& l : loads_) l.healthy = false;
    EXPECT_EQ(Route(r, Keys(prompt_)).worker, -1);
  }
}

TEST_F(RouterTest, RoundRobinAndLeastLoaded) {
  RouterOptions o;
  o.policy = RoutingPolicy::kRoundRobin;
  Router rr(o, &index_, &clock_);
  std::vector<WorkerId> seen;
  for (int i = 0; i < 8; ++i) seen.push_back(Route(rr, Keys(prompt_)).worker);
  EXPECT_EQ(seen, (std::vector<WorkerId>{0, 1, 2, 3, 0, 1, 2, 3}));
  o.policy = RoutingPolicy::kLeastLoaded;
  Router ll(o, &index_, &clock_);
  loads_ = {{.running = 3}, {.running = 1}, {.running = 2}, {.running = 5}};
  EXPECT_EQ(Route(ll, Keys(prompt_)).worker, 1);
  EXPECT_FALSE(ParseRoutingPolicy("fastest").ok());
  EXPECT_EQ(*ParseRoutingPolicy("least-loaded"), RoutingPolicy::kLeastLoaded);
}

// Another engine (vLLM) publishes its own hashes with token ids; the index
// keys them by kvstack's chain from the model's root, so a request's keys
// match them.
TEST_F(RouterTest, ForeignWorkerIsKeyedByItsTokenIds) {
  BlockIndex index(BlockIndex::Options{.hash_seed = 0, .model_id = "m", .durable_priority = 50});
  const WorkerId kv = index.AddWorker();
  const WorkerId vllm = index.AddWorker(/*foreign=*/true);
  WireBatch b1{.ts = 1, .events = {WireEvent{.kind = KvEventKind::kBlockStored,
                                             .block_hashes = {std::string(32, 'a'), std::string(32, 'b')},
                                             .token_ids = {1, 2, 3, 4, 5, 6, 7, 8},
                                             .block_size = 4,
                                             .medium = "GPU"}}};
  ASSERT_EQ(index.ApplyWireBatch(vllm, 0, b1).kind, BatchOutcome::Kind::kApplied);
  WireBatch b2{.ts = 2, .events = {WireEvent{.kind = KvEventKind::kBlockStored,
                                             .block_hashes = {std::string(32, 'c')},
                                             .parent = std::string(32, 'b'),
                                             .token_ids = {9, 10, 11, 12},
                                             .block_size = 4}}};
  ASSERT_EQ(index.ApplyWireBatch(vllm, 1, b2).kind, BatchOutcome::Kind::kApplied);
  const auto keys = Keys(prompt_);
  EXPECT_EQ(index.Match(vllm, keys, 0).blocks, 3);
  EXPECT_EQ(index.Match(kv, keys, 0).blocks, 0);
  Router r(RouterOptions{}, &index, &clock_);
  std::vector<WorkerLoad> loads(2);
  EXPECT_EQ(r.Route(RouteQuery{.keys = keys, .prompt_blocks = 4}, loads).worker, vllm);
  // Removing its middle block by its own hash cuts the prefix there.
  WireBatch b3{.ts = 3, .events = {WireEvent{.kind = KvEventKind::kBlockRemoved,
                                             .block_hashes = {std::string(32, 'b')},
                                             .medium = "GPU"}}};
  ASSERT_EQ(index.ApplyWireBatch(vllm, 2, b3).kind, BatchOutcome::Kind::kApplied);
  index.ExpirePredictions(clock_.Now() + 10'000'000);
  EXPECT_EQ(index.Match(vllm, keys, clock_.Now() + 10'000'000).blocks, 1);
  // A block whose parent was never seen cannot be keyed: counted, not guessed.
  WireBatch b4{.ts = 4, .events = {WireEvent{.kind = KvEventKind::kBlockStored,
                                             .block_hashes = {std::string(32, 'z')},
                                             .parent = std::string(32, 'y'),
                                             .token_ids = {1, 1, 1, 1},
                                             .block_size = 4}}};
  ASSERT_EQ(index.ApplyWireBatch(vllm, 3, b4).kind, BatchOutcome::Kind::kApplied);
  EXPECT_EQ(index.Stats(vllm).unusable, 1u);
  EXPECT_TRUE(index.CheckInvariants().ok());
}

}  // namespace
}  // namespace kvstack
