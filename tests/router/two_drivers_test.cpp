// One routing policy, two drivers: the same events from three real
// (metadata-only) caches reach one index the way `kvstack router` gets them
// (msgpack on the wire, sequence-checked) and another the way `kvstack sim`
// gets them (drained batches); both make the same decisions for the same
// requests, and both indexes agree with every cache's own prefix lookup.
#include <random>

#include <gtest/gtest.h>

#include "kvstack/kv_cache.h"
#include "kvstack/kv_event_wire.h"
#include "kvstack/router.h"

namespace kvstack {
namespace {

TEST(TwoDriversTest, WireAndSimulatorDriversDecideAlike) {
  constexpr int kCaches = 3;
  constexpr int kBlock = 4;
  std::vector<std::unique_ptr<KvCache>> caches;
  for (int i = 0; i < kCaches; ++i) {
    KvCacheConfig c;
    c.num_blocks = 24;
    c.shape.block_size = kBlock;
    c.storage = KvStorageMode::kMetadataOnly;
    c.event_buffer_limit = 4096;
    auto cache = KvCache::Create(c);
    ASSERT_TRUE(cache.ok()) << cache.status().ToString();
    caches.push_back(std::move(cache).value());
  }
  BlockIndex wire_index(BlockIndex::Options{}), sim_index(BlockIndex::Options{});
  for (int i = 0; i < kCaches; ++i) wire_index.AddWorker(), sim_index.AddWorker();
  ManualClock clock(1);
  // No predictions: each index then holds exactly what its caches hold.
  RouterOptions ro;
  ro.prediction_ttl = 0;
  Router wire_router(ro, &wire_index, &clock), sim_router(ro, &sim_index, &clock);
  std::vector<int64_t> seq(kCaches, 0);

  std::mt19937_64 rng(11);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  // Prompts share a few prefixes, under two tenants.
  auto prompt = [&] {
    std::vector<Token> p;
    const int prefix = pick(4);
    for (int i = 0; i < 4 * kBlock; ++i) p.push_back(prefix * 100 + i);
    for (int i = 0, n = pick(3 * kBlock); i < n; ++i) p.push_back(1000 + pick(50));
    return p;
  };
  const std::vector<ExtraKeys> tenants = {ExtraKeys{.cache_salt = "a"}, ExtraKeys{.cache_salt = "b"}};

  int decisions = 0, hits = 0;
  for (int step = 0; step < 2000; ++step) {
    // A request runs on a random cache (some stay to hold blocks in use).
    const int c = pick(kCaches);
    const std::vector<Token> p = prompt();
    AdmissionRequest req{.tokens = p, .keys = tenants[static_cast<size_t>(pick(2))]};
    AdmissionPlan plan = caches[static_cast<size_t>(c)]->PlanAdmission(req);
    auto id = caches[static_cast<size_t>(c)]->Admit(req, std::move(plan));
    if (id.ok()) {
      ASSERT_TRUE(caches[static_cast<size_t>(c)]->MarkComputed(*id, static_cast<int32_t>(p.size())).ok());
      ASSERT_TRUE(caches[static_cast<size_t>(c)]->Release(*id).ok());
    }
    // Both drivers take every cache's new events.
    for (int i = 0; i < kCaches; ++i) {
      const KvEventBatch batch = caches[static_cast<size_t>(i)]->DrainEvents();
      if (batch.events.empty()) continue;
      auto wire = DecodeWireBatch(EncodeKvEventBatch(batch, kBlock, 0));
      ASSERT_TRUE(wire.ok());
      ASSERT_EQ(wire_index.ApplyWireBatch(i, seq[static_cast<size_t>(i)]++, *wire).kind,
                BatchOutcome::Kind::kApplied);
      sim_index.ApplyEvents(i, ToIndexEvents(batch));
    }
    // The same request to both routers.
    const std::vector<Token> q = prompt();
    const ExtraKeys& keys = tenants[static_cast<size_t>(pick(2))];
    std::vector<BlockHash> k;
    wire_index.hasher().ChainBlocks(wire_index.hasher().Root(keys), q, kBlock, &k);
    std::vector<WorkerLoad> loads(kCaches);
    for (auto& l : loads) l.running = pick(3);
    const RouteQuery query{.keys = k, .prompt_blocks = static_cast<int32_t>(k.size())};
    // Both indexes agree with each cache's own lookup.
    for (int i = 0; i < kCaches; ++i) {
      const int32_t held = caches[static_cast<size_t>(i)]->Lookup(q, keys).matched_blocks;
      ASSERT_EQ(wire_index.Match(i, k, clock.Now()).blocks, held);
      ASSERT_EQ(sim_index.Match(i, k, clock.Now()).blocks, held);
    }
    const RouteDecision a = wire_router.Route(query, loads);
    const RouteDecision b = sim_router.Route(query, loads);
    ASSERT_EQ(a.worker, b.worker) << "step " << step;
    ASSERT_EQ(a.cost, b.cost);
    ASSERT_EQ(a.match.blocks, b.match.blocks);
    ++decisions;
    hits += a.reason == RouteReason::kKvHit;
    clock.Advance(pick(3'000'000));
    wire_index.ExpirePredictions(clock.Now());
    sim_index.ExpirePredictions(clock.Now());
  }
  EXPECT_EQ(decisions, 2000);
  EXPECT_GT(hits, 200);  // the stream exercised kv hits, not only cold picks
  EXPECT_TRUE(wire_index.CheckInvariants().ok());
  EXPECT_TRUE(sim_index.CheckInvariants().ok());
}

}  // namespace
}  // namespace kvstack
