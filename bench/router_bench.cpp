// The router's overhead on one core: index updates per second (events
// applied, decoded from the wire or not) and routing decisions per second,
// against bare maps (std::unordered_map, and the index's own
// absl::flat_hash_map) doing the same inserts and erases: the baselines every
// figure in BENCHMARKS.md is a ratio to.
#include <random>
#include <unordered_map>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <benchmark/benchmark.h>

#include "kvstack/kv_event_wire.h"
#include "kvstack/router.h"
#include "kvstack/router_index.h"

namespace kvstack {
namespace {

constexpr int kWorkers = 4;
constexpr int kBatch = 64;        // events per batch (half stored, half removed)
constexpr int kLiveBlocks = 1 << 16;  // per worker

std::vector<BlockHash> Keys(size_t n) {
  std::mt19937_64 rng(7);
  std::vector<BlockHash> k(n);
  for (auto& h : k) h = BlockHash{rng(), rng()};
  return k;
}

// Store block i, remove block i - kLiveBlocks: a steady state of kLiveBlocks
// per worker, as a worker's pool turning over.
std::vector<IndexEvent> Stream(const std::vector<BlockHash>& keys, size_t begin) {
  std::vector<IndexEvent> out;
  for (size_t i = begin; i < begin + kBatch / 2; ++i) {
    out.push_back({KvEventKind::kBlockStored, StorageTier::kDevice, keys[i % keys.size()], kDefaultPriority});
    out.push_back({KvEventKind::kBlockRemoved, StorageTier::kDevice, keys[(i + keys.size() - kLiveBlocks) % keys.size()],
                   kDefaultPriority});
  }
  return out;
}

// The baselines: a bare map per worker doing what the index does to its
// tables, every worker seeing every batch (kLiveBlocks live in each).
template <typename Map>
void BaselineMap(benchmark::State& state) {
  const auto keys = Keys(4 * kLiveBlocks);
  Map map[kWorkers];
  size_t b = 0;
  for (auto _ : state) {
    for (int w = 0; w < kWorkers; ++w) {
      for (size_t i = b; i < b + kBatch / 2; ++i) {
        map[w][keys[i % keys.size()]] = 1;
        map[w].erase(keys[(i + keys.size() - kLiveBlocks) % keys.size()]);
      }
    }
    b = (b + kBatch / 2) % keys.size();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kWorkers * kBatch);
}
void BM_BaselineUnorderedMap(benchmark::State& state) { BaselineMap<std::unordered_map<BlockHash, uint8_t>>(state); }
BENCHMARK(BM_BaselineUnorderedMap);
void BM_BaselineFlatHashMap(benchmark::State& state) {
  BaselineMap<absl::flat_hash_map<BlockHash, uint8_t, std::hash<BlockHash>>>(state);
}
BENCHMARK(BM_BaselineFlatHashMap);

void BM_IndexApplyBatch(benchmark::State& state) {
  const auto keys = Keys(4 * kLiveBlocks);
  BlockIndex index(BlockIndex::Options{});
  for (int w = 0; w < kWorkers; ++w) index.AddWorker();
  std::vector<std::vector<IndexEvent>> batches;
  for (size_t b = 0; b < keys.size(); b += kBatch / 2) batches.push_back(Stream(keys, b));
  int64_t seq = 0;
  size_t b = 0;
  for (auto _ : state) {
    for (int w = 0; w < kWorkers; ++w) index.ApplyBatch(w, seq, batches[b]);
    ++seq;
    b = (b + 1) % batches.size();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kWorkers * kBatch);
}
BENCHMARK(BM_IndexApplyBatch);

// The router's real path: msgpack payload off the wire, decoded and applied.
void BM_IndexDecodeAndApply(benchmark::State& state) {
  const auto keys = Keys(4 * kLiveBlocks);
  BlockIndex index(BlockIndex::Options{});
  for (int w = 0; w < kWorkers; ++w) index.AddWorker();
  std::vector<std::string> payloads;
  for (size_t b = 0; b < keys.size(); b += kBatch / 2) {
    KvEventLog log(kBatch);
    const std::vector<Token> tokens(16, 1);
    for (const IndexEvent& e : Stream(keys, b)) {
      if (e.kind == KvEventKind::kBlockStored) log.BlockStored(e.hash, {}, tokens, StorageTier::kDevice);
      else log.BlockRemoved(e.hash, StorageTier::kDevice);
    }
    payloads.push_back(EncodeKvEventBatch(log.Drain(), 16, 0));
  }
  int64_t seq = 0;
  size_t b = 0;
  for (auto _ : state) {
    for (int w = 0; w < kWorkers; ++w) {
      auto batch = DecodeWireBatch(payloads[b]);
      index.ApplyWireBatch(w, seq, *batch);
    }
    ++seq;
    b = (b + 1) % payloads.size();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kWorkers * kBatch);
}
BENCHMARK(BM_IndexDecodeAndApply);

// One kv-aware decision over 4 workers for a 32-block prompt held by one.
void BM_RouteKvAware(benchmark::State& state) {
  BlockIndex index(BlockIndex::Options{});
  for (int w = 0; w < kWorkers; ++w) index.AddWorker();
  const auto keys = Keys(32);
  std::vector<IndexEvent> stored;
  for (const auto& k : keys) stored.push_back({KvEventKind::kBlockStored, StorageTier::kDevice, k, kDefaultPriority});
  index.ApplyEvents(2, stored);
  ManualClock clock;
  RouterOptions o;
  o.prediction_ttl = 0;  // no predictions pile up
  Router router(o, &index, &clock);
  std::vector<WorkerLoad> loads(kWorkers);
  for (auto _ : state) {
    benchmark::DoNotOptimize(router.Route(RouteQuery{.keys = keys, .prompt_blocks = 32}, loads));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RouteKvAware);

}  // namespace
}  // namespace kvstack

BENCHMARK_MAIN();
