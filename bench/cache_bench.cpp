// Cache-core benchmarks. Each figure is read against a baseline from the same
// run: admission against hashing the same tokens with xxh3 alone, allocation
// against nothing (ns per block), pool construction against the 100 ms target.
// Run through scripts/bench-cache, which prints the ratios.
#include <benchmark/benchmark.h>

#include <numeric>
#include <random>

#include "cache/block_pool.h"
#include "kvstack/kv_cache.h"

namespace kvstack {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kPromptTokens = 131072;  // 8,192 blocks of 16

std::vector<Token> Prompt(uint64_t seed) {
  std::vector<Token> t(kPromptTokens);
  std::mt19937_64 rng(seed);
  for (Token& x : t) x = static_cast<Token>(rng() % 128000);
  return t;
}

std::unique_ptr<KvCache> MakeCache(int32_t blocks, const Clock* clock) {
  KvCacheConfig c;
  c.num_blocks = blocks;
  c.shape.block_size = kBlockSize;
  c.storage = KvStorageMode::kMetadataOnly;
  c.clock = clock;
  return std::move(KvCache::Create(c)).value();
}

// Baseline: the chained xxh3-128 keys of every full block, nothing else.
void BM_HashPromptXxh3(benchmark::State& state) {
  const std::vector<Token> prompt = Prompt(1);
  BlockHasher hasher(0);
  const BlockHash root = hasher.Root({.model_id = "bench"});
  std::vector<BlockHash> keys;
  for (auto _ : state) {
    keys.clear();
    hasher.ChainBlocks(root, prompt, kBlockSize, &keys);
    benchmark::DoNotOptimize(keys.data());
  }
  state.SetItemsProcessed(state.iterations() * (kPromptTokens / kBlockSize));
}
BENCHMARK(BM_HashPromptXxh3)->Unit(benchmark::kMicrosecond);

// Plan (hash + longest-prefix lookup, a miss), admit (reserve 8,192 blocks),
// release: the scheduler's cost for a new 131,072-token prompt.
void BM_AdmitRelease(benchmark::State& state) {
  ManualClock clock;
  auto cache = MakeCache(2 * kPromptTokens / kBlockSize, &clock);
  const std::vector<Token> prompt = Prompt(2);
  AdmissionRequest req{.tokens = prompt, .keys = {.model_id = "bench"}};
  for (auto _ : state) {
    auto id = cache->Admit(req, cache->PlanAdmission(req));
    benchmark::DoNotOptimize(cache->Release(*id));
  }
  state.SetItemsProcessed(state.iterations() * (kPromptTokens / kBlockSize));
}
BENCHMARK(BM_AdmitRelease)->Unit(benchmark::kMicrosecond);

// The full life of a miss in a full cache: admit (evicting 8,192 cached
// blocks of earlier prompts), commit every block to the prefix cache, release.
void BM_AdmitCommitReleaseEvicting(benchmark::State& state) {
  ManualClock clock;
  auto cache = MakeCache(2 * kPromptTokens / kBlockSize, &clock);
  const std::vector<Token> prompt = Prompt(3);
  uint64_t tenant = 0;
  for (auto _ : state) {
    // A new salt each time: never a hit, and from the third round on every
    // block comes from evicting another prompt's cached block.
    AdmissionRequest req{.tokens = prompt, .keys = {.model_id = "bench", .cache_salt = std::to_string(tenant++)}};
    auto id = cache->Admit(req, cache->PlanAdmission(req));
    benchmark::DoNotOptimize(cache->MarkComputed(*id, kPromptTokens));
    benchmark::DoNotOptimize(cache->Release(*id));
    clock.Advance(1);
  }
  state.SetItemsProcessed(state.iterations() * (kPromptTokens / kBlockSize));
  state.counters["evictions_per_iter"] =
      static_cast<double>(cache->Metrics().evictions) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_AdmitCommitReleaseEvicting)->Unit(benchmark::kMicrosecond);

// A prompt whose whole prefix is cached: plan (hash + 8,191 hits), admit
// (take the hits off the queues), release.
void BM_AdmitFullHitRelease(benchmark::State& state) {
  ManualClock clock;
  auto cache = MakeCache(2 * kPromptTokens / kBlockSize, &clock);
  const std::vector<Token> prompt = Prompt(4);
  AdmissionRequest req{.tokens = prompt, .keys = {.model_id = "bench"}};
  {
    auto id = cache->Admit(req, cache->PlanAdmission(req));
    benchmark::DoNotOptimize(cache->MarkComputed(*id, kPromptTokens));
    benchmark::DoNotOptimize(cache->Release(*id));
  }
  for (auto _ : state) {
    auto id = cache->Admit(req, cache->PlanAdmission(req));
    benchmark::DoNotOptimize(cache->Release(*id));
  }
  state.counters["hit_blocks"] = static_cast<double>(cache->Metrics().prefix.hit_blocks) /
                                 static_cast<double>(cache->Metrics().admissions);
  state.SetItemsProcessed(state.iterations() * (kPromptTokens / kBlockSize));
}
BENCHMARK(BM_AdmitFullHitRelease)->Unit(benchmark::kMicrosecond);

// A router-style lookup (no side effects) that matches all 8,192 blocks.
void BM_LookupFullHit(benchmark::State& state) {
  ManualClock clock;
  auto cache = MakeCache(2 * kPromptTokens / kBlockSize, &clock);
  const std::vector<Token> prompt = Prompt(5);
  AdmissionRequest req{.tokens = prompt, .keys = {.model_id = "bench"}};
  auto id = cache->Admit(req, cache->PlanAdmission(req));
  benchmark::DoNotOptimize(cache->MarkComputed(*id, kPromptTokens));
  benchmark::DoNotOptimize(cache->Release(*id));
  int32_t matched = 0;
  for (auto _ : state) {
    matched = cache->Lookup(prompt, req.keys).matched_blocks;
    benchmark::DoNotOptimize(matched);
  }
  state.counters["matched_blocks"] = matched;
  state.SetItemsProcessed(state.iterations() * (kPromptTokens / kBlockSize));
}
BENCHMARK(BM_LookupFullHit)->Unit(benchmark::kMicrosecond);

// Allocate + free of one block, in batches of 1,024 (items = blocks).
void BM_AllocateFree(benchmark::State& state) {
  ManualClock clock;
  auto policy = MakePriorityLruPolicy();
  BlockPoolOptions o{.num_blocks = 65536, .policy = policy.get(), .clock = &clock};
  auto pool = std::move(BlockPool::Create(o)).value();
  std::vector<int32_t> ids(1024);
  for (auto _ : state) {
    for (int32_t& id : ids) id = *pool->Allocate();
    for (int32_t id : ids) pool->Release(id);
  }
  state.SetItemsProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_AllocateFree);

// Allocate that must evict a cached block + commit + release, per block.
void BM_AllocateEvictCommitRelease(benchmark::State& state) {
  ManualClock clock;
  auto policy = MakePriorityLruPolicy();
  BlockPoolOptions o{.num_blocks = 65536, .policy = policy.get(), .clock = &clock};
  auto pool = std::move(BlockPool::Create(o)).value();
  uint64_t key = 1;
  std::vector<int32_t> ids(1024);
  for (auto _ : state) {
    for (int32_t& id : ids) {
      id = *pool->Allocate();
      pool->Commit(id, BlockHash{key * 0x9E3779B97F4A7C15ull, key}, -1, kDefaultPriority, kNoExpiry);
      ++key;
    }
    for (int32_t id : ids) pool->Release(id);
  }
  state.SetItemsProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_AllocateEvictCommitRelease);

// Building a pool of 1,000,000 blocks (metadata, index, lists).
void BM_BuildPool1M(benchmark::State& state) {
  ManualClock clock;
  size_t meta_bytes = 0;
  for (auto _ : state) {
    auto cache = MakeCache(1'000'000, &clock);
    meta_bytes = cache->Metrics().metadata_bytes_per_block;
    benchmark::DoNotOptimize(cache.get());
  }
  state.counters["metadata_bytes_per_block"] = static_cast<double>(meta_bytes);
  state.counters["block_meta_bytes"] = sizeof(BlockMeta);
}
BENCHMARK(BM_BuildPool1M)->Unit(benchmark::kMillisecond)->Iterations(10);

}  // namespace
}  // namespace kvstack

BENCHMARK_MAIN();
