// KvCache: admission (plan, then apply), prefix hits, tenant isolation,
// append and copy-on-write, release order, retention, pins, events, metrics.
// A pool of 11 blocks of 4 tokens keeps every assertion exact.
#include "kvstack/kv_cache.h"

#include <cstring>
#include <numeric>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kvstack {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<Token> Range(Token from, int n) {
  std::vector<Token> t(n);
  std::iota(t.begin(), t.end(), from);
  return t;
}

std::vector<int32_t> Ids(std::span<const BlockId> blocks) {
  std::vector<int32_t> out;
  for (BlockId b : blocks) out.push_back(ToIndex(b));
  return out;
}

class KvCacheTest : public ::testing::Test {
 protected:
  void Make(int32_t blocks = 11, int32_t block_size = 4, std::string policy = "priority-lru",
            KvStorageMode storage = KvStorageMode::kAllocate) {
    KvCacheConfig c;
    c.num_blocks = blocks;
    c.shape = KvShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .block_size = block_size,
                      .dtype = KvDType::kF32};
    c.storage = storage;
    c.eviction_policy = policy;
    c.event_buffer_limit = 1000;
    c.clock = &clock_;
    auto r = KvCache::Create(c);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    cache_ = std::move(r).value();
  }
  void SetUp() override { Make(); }
  void TearDown() override {
    if (cache_) {
      EXPECT_TRUE(cache_->CheckInvariants().ok()) << cache_->CheckInvariants().ToString();
    }
  }

  Result<SequenceId> Admit(const std::vector<Token>& tokens, std::string salt = "", RetentionSpec retention = {}) {
    AdmissionRequest r;
    r.tokens = tokens;
    r.keys.model_id = "test-model";
    r.keys.cache_salt = std::move(salt);
    r.retention = std::move(retention);
    return cache_->Admit(r, cache_->PlanAdmission(r));
  }

  // Admits, marks the whole prompt computed, releases; returns the block table.
  std::vector<int32_t> Run(const std::vector<Token>& tokens, std::string salt = "", RetentionSpec retention = {}) {
    auto id = Admit(tokens, std::move(salt), std::move(retention));
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (!id.ok()) return {};
    std::vector<int32_t> table = Ids(cache_->BlockTable(*id));
    EXPECT_TRUE(cache_->MarkComputed(*id, static_cast<int32_t>(tokens.size())).ok());
    clock_.Advance(10);
    EXPECT_TRUE(cache_->Release(*id).ok());
    return table;
  }

  int32_t HitTokens(const std::vector<Token>& tokens, std::string salt = "") {
    auto id = Admit(tokens, std::move(salt));
    EXPECT_TRUE(id.ok());
    int32_t hits = cache_->Info(*id)->hit_tokens;
    EXPECT_TRUE(cache_->Release(*id).ok());
    return hits;
  }

  ManualClock clock_{1'000'000};
  std::unique_ptr<KvCache> cache_;
};

TEST_F(KvCacheTest, RejectsBadConfigWithNamedField) {
  KvCacheConfig c;
  c.num_blocks = 8;
  c.shape.block_size = 24;
  c.storage = KvStorageMode::kMetadataOnly;
  auto r = KvCache::Create(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "block_size 24: must be a power of two from 1 to 512");
  c.shape.block_size = 1024;
  EXPECT_FALSE(KvCache::Create(c).ok());
  c.shape.block_size = 16;
  c.eviction_policy = "fifo";
  EXPECT_THAT(KvCache::Create(c).status().message(), HasSubstr("unknown eviction policy 'fifo'"));
  c.eviction_policy = "lru";
  c.max_pinned_fraction = 1.5;
  EXPECT_THAT(KvCache::Create(c).status().message(), HasSubstr("max_pinned_fraction"));
  for (int bs : {1, 2, 16, 32, 512}) {
    c.max_pinned_fraction = 0.5;
    c.shape.block_size = bs;
    EXPECT_TRUE(KvCache::Create(c).ok()) << bs;
  }
}

TEST_F(KvCacheTest, MissThenHitReusesTheSameBlocks) {
  const auto prompt = Range(100, 10);  // blocks [100..103] [104..107] [108 109]
  EXPECT_THAT(Run(prompt), ElementsAre(0, 1, 2));
  auto id = Admit(prompt);
  ASSERT_TRUE(id.ok());
  // The two full blocks hit. The first run's partial tail was private, so it
  // was freed, and its slot (the most recently freed) holds the new tail.
  EXPECT_THAT(Ids(cache_->BlockTable(*id)), ElementsAre(0, 1, 2));
  EXPECT_EQ(cache_->DescribeBlock(BlockId{2}).hash, BlockHash{});
  EXPECT_EQ(cache_->Info(*id)->hit_tokens, 8);
  EXPECT_EQ(cache_->Info(*id)->num_computed_tokens, 8);
  ASSERT_TRUE(cache_->Release(*id).ok());
}

// A released sequence's id names nothing from then on, also after other
// sequences were admitted; live ids are distinct, and ids never issued
// (0, the largest) name nothing.
TEST_F(KvCacheTest, AReleasedSequenceIdStaysDead) {
  auto a = Admit(Range(100, 5));
  auto b = Admit(Range(200, 5));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(*a == *b);
  ASSERT_TRUE(cache_->Release(*a).ok());
  auto c = Admit(Range(300, 5));
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(*c == *a);
  EXPECT_EQ(cache_->Info(*a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(cache_->Release(*a).code(), StatusCode::kNotFound);
  EXPECT_EQ(cache_->Append(*a, Range(1, 1)).code(), StatusCode::kNotFound);
  EXPECT_EQ(cache_->Info(*c)->num_tokens, 5);
  EXPECT_EQ(cache_->Info(*b)->num_tokens, 5);
  EXPECT_EQ(cache_->Info(SequenceId{0}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(cache_->Info(SequenceId{~uint64_t{0}}).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(cache_->Release(*b).ok());
  ASSERT_TRUE(cache_->Release(*c).ok());
  EXPECT_TRUE(cache_->CheckInvariants().ok());
}

TEST_F(KvCacheTest, SkipPrefixHitsComputesEveryTokenAndKeepsOneCachedCopy) {
  const auto prompt = Range(100, 10);  // two full blocks, a partial third
  Run(prompt);
  AdmissionRequest r;
  r.tokens = prompt;
  r.keys.model_id = "test-model";
  r.skip_prefix_hits = true;
  const AdmissionPlan plan = cache_->PlanAdmission(r);
  EXPECT_EQ(plan.hit_blocks, 0);
  EXPECT_EQ(plan.new_blocks, 3);
  auto id = cache_->Admit(r, plan);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(cache_->Info(*id)->hit_tokens, 0);
  EXPECT_EQ(cache_->Info(*id)->num_computed_tokens, 0);
  EXPECT_THAT(Ids(cache_->BlockTable(*id)), ::testing::Each(::testing::Not(::testing::AnyOf(0, 1))))
      << "fresh blocks, not the cached ones";
  // Computing it again stores duplicates of cached keys: counted, one copy kept.
  ASSERT_TRUE(cache_->MarkComputed(*id, 10).ok());
  ASSERT_TRUE(cache_->Release(*id).ok());
  EXPECT_EQ(cache_->Metrics().duplicate_blocks, 2u);
  EXPECT_EQ(HitTokens(prompt), 8) << "a later request still hits";
}

TEST_F(KvCacheTest, LastPromptTokenIsNeverAHit) {
  const auto prompt = Range(0, 8);  // exactly two blocks
  Run(prompt);
  EXPECT_EQ(HitTokens(prompt), 4);  // the block holding the last token is recomputed
  EXPECT_EQ(cache_->Lookup(prompt, {.model_id = "test-model"}).matched_tokens, 8);
}

TEST_F(KvCacheTest, PlanChangesNothingAndApplyRechecks) {
  const auto prompt = Range(0, 9);
  Run(prompt);
  AdmissionRequest r;
  r.tokens = prompt;
  r.keys.model_id = "test-model";
  const AdmissionPlan plan = cache_->PlanAdmission(r);
  EXPECT_EQ(plan.hit_blocks, 2);
  EXPECT_EQ(plan.new_blocks, 1);
  EXPECT_TRUE(plan.fits);
  const CacheMetrics before = cache_->Metrics();
  EXPECT_EQ(cache_->PlanAdmission(r).hit_blocks, 2);
  EXPECT_EQ(cache_->Metrics().prefix.query_tokens, before.prefix.query_tokens);
  EXPECT_EQ(cache_->Metrics().cached_blocks, 2);
  // The pool changes between plan and apply: the cached prefix is evicted.
  ASSERT_TRUE(cache_->ResetPrefixCache().ok());
  auto id = cache_->Admit(r, plan);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(cache_->Info(*id)->hit_tokens, 0);
  ASSERT_TRUE(cache_->Release(*id).ok());
}

TEST_F(KvCacheTest, NotEnoughBlocksLeavesNoTrace) {
  auto holder = Admit(Range(0, 36));  // 9 of 11 blocks
  ASSERT_TRUE(holder.ok());
  cache_->DrainEvents();
  const CacheMetrics before = cache_->Metrics();
  auto refused = Admit(Range(500, 12));  // needs 3
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.status().message(), "admission: needs 3 new blocks, 2 available");
  const CacheMetrics after = cache_->Metrics();
  EXPECT_EQ(after.free_blocks, before.free_blocks);
  EXPECT_EQ(after.prefix.query_tokens, before.prefix.query_tokens);
  EXPECT_EQ(after.admissions_refused, 1u);
  EXPECT_TRUE(cache_->DrainEvents().events.empty());
  ASSERT_TRUE(cache_->Release(*holder).ok());
}

TEST_F(KvCacheTest, RejectsMalformedRequests) {
  EXPECT_EQ(Admit({}).status().message(), "admission: the prompt has no tokens");
  RetentionSpec bad;
  bad.ranges.push_back({{2, 20}, 50, std::nullopt});
  EXPECT_THAT(Admit(Range(0, 10), "", bad).status().message(), HasSubstr("retention.ranges[0]: tokens [2, 20)"));
  bad.ranges[0] = {{0, 4}, 101, std::nullopt};
  EXPECT_THAT(Admit(Range(0, 10), "", bad).status().message(), HasSubstr("priority 101 must be 0 to 100"));
  const std::vector<Token> five = Range(0, 5);
  const std::vector<Token> other = Range(0, 9);
  AdmissionRequest a{.tokens = five};
  AdmissionRequest b{.tokens = other};
  EXPECT_THAT(cache_->Admit(b, cache_->PlanAdmission(a)).status().message(), HasSubstr("made for another request"));
}

TEST_F(KvCacheTest, TenantsAndModelsNeverSharePrefixes) {
  const auto prompt = Range(7, 13);
  Run(prompt, "tenant-a");
  EXPECT_EQ(HitTokens(prompt, "tenant-b"), 0);
  EXPECT_EQ(HitTokens(prompt, ""), 0);
  EXPECT_EQ(HitTokens(prompt, "tenant-a"), 12);
  EXPECT_EQ(cache_->Lookup(prompt, {.model_id = "other-model", .cache_salt = "tenant-a"}).matched_blocks, 0);
  EXPECT_EQ(cache_->Lookup(prompt, {.model_id = "test-model", .cache_salt = "tenant-a", .adapter_id = "lora1"})
                .matched_blocks,
            0);
  const CacheMetrics m = cache_->Metrics();
  EXPECT_EQ(m.by_tenant.at("tenant-a").hit_tokens, 12u);
  EXPECT_EQ(m.by_tenant.at("tenant-b").hit_tokens, 0u);
  EXPECT_EQ(m.by_tenant.at("tenant-b").query_tokens, 13u);
}

TEST_F(KvCacheTest, ReleaseFreesTailFirstSoSharedPrefixOutlivesIt) {
  // Two prompts share one block; the second's tail blocks go first.
  EXPECT_THAT(Run(Range(0, 13)), ElementsAre(0, 1, 2, 3));
  std::vector<Token> b = Range(0, 4);
  const auto tail = Range(900, 9);
  b.insert(b.end(), tail.begin(), tail.end());
  // Block 0 hits; 3 (the first prompt's private tail, freed last) and then
  // fresh 4 and 5 hold the rest.
  EXPECT_THAT(Run(b), ElementsAre(0, 3, 4, 5));
  // Eviction order: first prompt tail->head (2, 1), then the second prompt's
  // tail->head (4, 3; 5 was a private partial block), then the shared block 0.
  EXPECT_THAT(Ids(cache_->EvictionOrder()), ElementsAre(2, 1, 4, 3, 0));
}

TEST_F(KvCacheTest, AppendTakesBlocksAllOrNothing) {
  auto id = Admit(Range(0, 3));
  ASSERT_TRUE(id.ok());
  EXPECT_THAT(Ids(cache_->BlockTable(*id)), ElementsAre(0));
  ASSERT_TRUE(cache_->Append(*id, Range(3, 1)).ok());  // fills block 0
  EXPECT_THAT(Ids(cache_->BlockTable(*id)), ElementsAre(0));
  ASSERT_TRUE(cache_->Append(*id, Range(4, 5)).ok());  // 9 tokens: 3 blocks
  EXPECT_THAT(Ids(cache_->BlockTable(*id)), ElementsAre(0, 1, 2));
  Status too_much = cache_->Append(*id, Range(9, 40));
  EXPECT_EQ(too_much.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(cache_->Info(*id)->num_tokens, 9);
  EXPECT_EQ(cache_->Info(*id)->num_blocks, 3);
  // Decode tokens commit as their blocks fill and are computed.
  ASSERT_TRUE(cache_->MarkComputed(*id, 9).ok());
  EXPECT_EQ(cache_->Info(*id)->committed_blocks, 2);
  EXPECT_EQ(cache_->MarkComputed(*id, 8).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_->MarkComputed(*id, 10).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(cache_->Release(*id).ok());
  EXPECT_EQ(cache_->Append(*id, Range(0, 1)).code(), StatusCode::kNotFound);
}

TEST_F(KvCacheTest, ForkSharesBlocksAndCopiesASharedPartialTailOnWrite) {
  auto parent = Admit(Range(0, 6));  // blocks 0 (full), 1 (2 of 4 slots)
  ASSERT_TRUE(parent.ok());
  ASSERT_TRUE(cache_->MarkComputed(*parent, 6).ok());
  // Write recognisable KV into the tail block.
  KvArena& arena = cache_->arena();
  std::memset(arena.Block(1), 0x5a, arena.block_bytes());
  auto child = cache_->Fork(*parent);
  ASSERT_TRUE(child.ok());
  EXPECT_THAT(Ids(cache_->BlockTable(*child)), ElementsAre(0, 1));
  EXPECT_EQ(cache_->DescribeBlock(BlockId{1}).ref_count, 2u);
  ASSERT_TRUE(cache_->Append(*child, Range(100, 1)).ok());
  // The child got a copy of the tail; the parent keeps the original.
  EXPECT_THAT(Ids(cache_->BlockTable(*child)), ElementsAre(0, 2));
  EXPECT_THAT(Ids(cache_->BlockTable(*parent)), ElementsAre(0, 1));
  EXPECT_EQ(std::memcmp(arena.Block(1), arena.Block(2), arena.block_bytes()), 0);
  // The parent now owns its tail alone and writes in place.
  ASSERT_TRUE(cache_->Append(*parent, Range(200, 1)).ok());
  EXPECT_THAT(Ids(cache_->BlockTable(*parent)), ElementsAre(0, 1));
  EXPECT_EQ(cache_->Metrics().copy_on_write, 1u);
  ASSERT_TRUE(cache_->Release(*parent).ok());
  ASSERT_TRUE(cache_->Release(*child).ok());
}

// BlocksToAppend says what Append will take, a copied shared tail included,
// and changes nothing.
TEST_F(KvCacheTest, BlocksToAppendIsWhatAppendTakes) {
  auto parent = Admit(Range(0, 6));  // blocks 0 (full), 1 (2 of 4 slots)
  ASSERT_TRUE(parent.ok());
  EXPECT_EQ(cache_->BlocksToAppend(*parent, 0), 0);
  EXPECT_EQ(cache_->BlocksToAppend(*parent, 2), 0);  // fills block 1
  EXPECT_EQ(cache_->BlocksToAppend(*parent, 3), 1);
  EXPECT_EQ(cache_->BlocksToAppend(*parent, 10), 2);  // 16 tokens: 4 blocks
  EXPECT_EQ(cache_->Info(*parent)->num_blocks, 2);
  ASSERT_TRUE(cache_->MarkComputed(*parent, 6).ok());
  auto child = cache_->Fork(*parent);
  ASSERT_TRUE(child.ok());
  // The shared partial tail is copied before the first write.
  EXPECT_EQ(cache_->BlocksToAppend(*child, 1), 1);
  EXPECT_EQ(cache_->BlocksToAppend(*child, 3), 2);
  const int32_t before = cache_->Metrics().free_blocks;
  ASSERT_TRUE(cache_->Append(*child, Range(100, 3)).ok());
  EXPECT_EQ(before - cache_->Metrics().free_blocks, 2);
  EXPECT_EQ(cache_->BlocksToAppend(*child, 1), 0);  // its own tail now, with room
  EXPECT_EQ(cache_->BlocksToAppend(SequenceId{999}, 4), 0);  // unknown
  ASSERT_TRUE(cache_->Release(*parent).ok());
  ASSERT_TRUE(cache_->Release(*child).ok());
}

TEST_F(KvCacheTest, DurablePrefixSurvivesAOneOffFlood) {
  // A system prompt with priority 90; one-off prompts at priority 5 overflow
  // the pool many times over.
  const auto system = Range(1000, 8);
  RetentionSpec durable;
  durable.ranges.push_back({{0, 8}, 90, std::nullopt});
  std::vector<Token> first = system;
  first.push_back(1);
  Run(first, "", durable);
  RetentionSpec one_off;
  for (int i = 0; i < 50; ++i) {
    auto p = Range(10'000 + i * 100, 9);
    one_off.ranges = {{{0, 9}, 5, std::nullopt}};
    Run(p, "", one_off);
  }
  std::vector<Token> again = system;
  again.push_back(2);
  EXPECT_EQ(HitTokens(again), 8);
  EXPECT_GT(cache_->Metrics().evictions_by_priority[5], 0u);
  EXPECT_EQ(cache_->Metrics().evictions_by_priority[90], 0u);
}

TEST_F(KvCacheTest, WithoutRetentionTheSamePrefixIsEvicted) {
  const auto system = Range(1000, 8);
  std::vector<Token> first = system;
  first.push_back(1);
  Run(first);
  for (int i = 0; i < 50; ++i) Run(Range(10'000 + i * 100, 9));
  std::vector<Token> again = system;
  again.push_back(2);
  EXPECT_EQ(HitTokens(again), 0);
}

TEST_F(KvCacheTest, RetentionDurationExpires) {
  const auto system = Range(1000, 8);
  RetentionSpec durable;
  durable.ranges.push_back({{0, 8}, 90, Micros{1'000}});
  std::vector<Token> first = system;
  first.push_back(1);
  Run(first, "", durable);
  EXPECT_EQ(cache_->DescribeBlock(BlockId{0}).priority, 90);
  clock_.Advance(1'000);
  EXPECT_EQ(cache_->DescribeBlock(BlockId{0}).priority, kDefaultPriority);
  for (int i = 0; i < 50; ++i) Run(Range(10'000 + i * 100, 9));
  std::vector<Token> again = system;
  again.push_back(2);
  EXPECT_EQ(HitTokens(again), 0);
}

TEST_F(KvCacheTest, PinnedPromptSurvivesFloodAndPinsAreCapped) {
  const auto system = Range(1000, 8);
  std::vector<Token> first = system;
  first.push_back(1);
  // Pinning needs the blocks cached.
  EXPECT_EQ(cache_->Pin(system, {.model_id = "test-model"}).status().code(), StatusCode::kNotFound);
  Run(first);
  auto pin = cache_->Pin(system, {.model_id = "test-model"});
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  EXPECT_EQ(pin->num_blocks(), 2);
  EXPECT_EQ(cache_->Metrics().pinned_blocks, 2);
  for (int i = 0; i < 50; ++i) Run(Range(10'000 + i * 100, 9));
  std::vector<Token> again = system;
  again.push_back(2);
  EXPECT_EQ(HitTokens(again), 8);
  // Cap: 50% of 11 blocks = 5; 2 pinned, a 4-block pin is refused whole.
  const auto big = Range(5000, 16);
  Run(big);
  auto refused = cache_->Pin(big, {.model_id = "test-model"});
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(cache_->Metrics().pinned_blocks, 2);
  EXPECT_EQ(cache_->ResetPrefixCache().code(), StatusCode::kFailedPrecondition);
  pin->Release();
  EXPECT_EQ(cache_->Metrics().pinned_blocks, 0);
  EXPECT_EQ(cache_->Metrics().live_pins, 0);
}

TEST_F(KvCacheTest, EventsCarryKeysTokensAndSequenceNumbers) {
  const auto prompt = Range(50, 9);
  Run(prompt);
  KvEventBatch batch = cache_->DrainEvents();
  ASSERT_EQ(batch.events.size(), 2u);
  const BlockHasher& h = cache_->hasher();
  const BlockHash root = h.Root({.model_id = "test-model"});
  const BlockHash k0 = h.Chain(root, std::span<const Token>(prompt).subspan(0, 4));
  const BlockHash k1 = h.Chain(k0, std::span<const Token>(prompt).subspan(4, 4));
  EXPECT_EQ(batch.events[0].kind, KvEventKind::kBlockStored);
  EXPECT_EQ(batch.events[0].hash, k0);
  EXPECT_TRUE(batch.events[0].parent.IsZero());
  EXPECT_THAT(batch.TokensOf(batch.events[0]), ElementsAre(50, 51, 52, 53));
  EXPECT_EQ(batch.events[1].hash, k1);
  EXPECT_EQ(batch.events[1].parent, k0);
  EXPECT_EQ(batch.events[1].seq, batch.events[0].seq + 1);
  ASSERT_TRUE(cache_->ResetPrefixCache().ok());
  batch = cache_->DrainEvents();
  ASSERT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.events[0].kind, KvEventKind::kAllCleared);
  EXPECT_EQ(batch.events[0].seq, 3u);
  // Evictions publish BlockRemoved.
  for (int i = 0; i < 6; ++i) Run(Range(i * 100, 9));
  batch = cache_->DrainEvents();
  int removed = 0;
  for (const KvEvent& e : batch.events) removed += e.kind == KvEventKind::kBlockRemoved;
  EXPECT_EQ(removed, 2);  // 12 stored into 11 slots minus private tails
}

TEST(KvEventLogTest, OverflowLeavesAVisibleGap) {
  KvEventLog log(2);
  for (uint64_t i = 1; i <= 3; ++i) log.BlockRemoved({i, i}, StorageTier::kDevice);
  KvEventBatch b = log.Drain();
  ASSERT_EQ(b.events.size(), 2u);
  EXPECT_EQ(log.dropped(), 1u);
  log.AllCleared(StorageTier::kHost);
  b = log.Drain();
  ASSERT_EQ(b.events.size(), 1u);
  EXPECT_EQ(b.events[0].seq, 4u);  // 3 was dropped: the consumer sees the gap
  KvEventLog off(0);
  off.AllCleared(StorageTier::kDevice);
  EXPECT_TRUE(off.Drain().events.empty());
}

TEST_F(KvCacheTest, MetricsCountTokensBlocksClassesAndEvictions) {
  RetentionSpec durable;
  durable.ranges.push_back({{0, 8}, 80, std::nullopt});
  const auto p = Range(0, 10);
  Run(p, "t", durable);
  auto id = Admit(p, "t", durable);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(cache_->Release(*id).ok());
  const CacheMetrics m = cache_->Metrics();
  EXPECT_EQ(m.admissions, 2u);
  EXPECT_EQ(m.prefix.query_tokens, 20u);
  EXPECT_EQ(m.prefix.hit_tokens, 8u);
  EXPECT_EQ(m.prefix.query_blocks, 4u);
  EXPECT_EQ(m.prefix.hit_blocks, 2u);
  const auto& durable_c = m.by_priority_class[static_cast<int>(PriorityClass::kDurable)];
  EXPECT_EQ(durable_c.query_tokens, 16u);
  EXPECT_EQ(durable_c.hit_tokens, 8u);
  EXPECT_EQ(m.by_priority_class[static_cast<int>(PriorityClass::kDefault)].query_tokens, 4u);
  EXPECT_EQ(m.hit_blocks_by_block_class[static_cast<int>(PriorityClass::kDurable)], 2u);
  EXPECT_EQ(m.reuse_gap_us.count(), 2u);
  // 11 blocks of 64 bytes, queue links of 8 bytes for them and 101 queue
  // sentinels, a 32-slot index of 8 bytes and an 11-entry free stack: 1,900
  // bytes, 172 per block in so tiny a pool.
  EXPECT_EQ(m.metadata_bytes_per_block, (11u * 64 + 112 * 8 + 32 * 8 + 11 * 4) / 11);
  EXPECT_EQ(m.kv_bytes_per_block, 2u * 2 * 2 * 4 * 4 * 4);
  EXPECT_EQ(m.free_blocks + m.cached_blocks + m.in_use_blocks + m.pinned_blocks, 11);
}

TEST_F(KvCacheTest, MetadataOnlyModeHasNoBytes) {
  Make(11, 16, "lru", KvStorageMode::kMetadataOnly);
  EXPECT_FALSE(cache_->arena().has_storage());
  EXPECT_EQ(cache_->Metrics().kv_bytes_per_block, 0u);
  Run(Range(0, 40));
  EXPECT_EQ(HitTokens(Range(0, 40)), 32);
}

TEST_F(KvCacheTest, LookupChangesNothing) {
  Run(Range(0, 12));
  const auto order = cache_->EvictionOrder();
  EXPECT_EQ(cache_->Lookup(Range(0, 12), {.model_id = "test-model"}).matched_blocks, 3);
  EXPECT_EQ(cache_->Lookup(Range(0, 11), {.model_id = "test-model"}).matched_blocks, 2);
  EXPECT_EQ(cache_->EvictionOrder(), order);
  EXPECT_EQ(cache_->Metrics().prefix.query_tokens, 12u);
}

TEST_F(KvCacheTest, ConcurrentComputeOfTheSamePrefixKeepsOneCopy) {
  const auto p = Range(0, 9);
  auto a = Admit(p);
  auto b = Admit(p);  // both miss: neither is computed yet
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(cache_->MarkComputed(*a, 9).ok());
  ASSERT_TRUE(cache_->MarkComputed(*b, 9).ok());
  EXPECT_EQ(cache_->Metrics().duplicate_blocks, 2u);
  ASSERT_TRUE(cache_->Release(*a).ok());
  ASSERT_TRUE(cache_->Release(*b).ok());
  EXPECT_EQ(cache_->Metrics().cached_blocks, 2);
}

using KvCacheDeathTest = KvCacheTest;
TEST_F(KvCacheDeathTest, BlockTableOfAReleasedSequenceAborts) {
  auto id = Admit(Range(0, 3));
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(cache_->Release(*id).ok());
  EXPECT_DEATH(cache_->BlockTable(*id), "sequence 1 is not live");
}

}  // namespace
}  // namespace kvstack
