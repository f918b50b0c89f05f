// BlockIndex against a reference model under a randomized stream of events
// (stored, removed, cleared per tier and whole, batches out of order and
// past gaps, snapshots, predictions and their expiry): after every
// operation the index's matches and counters equal the model's.
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "kvstack/router_index.h"

namespace kvstack {
namespace {

// The simplest possible index: a map per (worker, key).
struct Model {
  struct Entry {
    uint8_t tiers = 0;
    Priority priority = kDefaultPriority;
    Micros predicted_until = 0;
  };
  std::vector<std::map<std::pair<uint64_t, uint64_t>, Entry>> workers;
  std::vector<int64_t> next_seq;

  static std::pair<uint64_t, uint64_t> K(const BlockHash& h) { return {h.lo, h.hi}; }
  void Tidy(int w, std::pair<uint64_t, uint64_t> k) {
    auto it = workers[w].find(k);
    if (it != workers[w].end() && it->second.tiers == 0 && it->second.predicted_until == 0) workers[w].erase(it);
  }
  void Apply(int w, const IndexEvent& e) {
    const uint8_t bit = static_cast<uint8_t>(1u << static_cast<int>(e.tier.value_or(StorageTier::kDevice)));
    switch (e.kind) {
      case KvEventKind::kBlockStored: {
        Entry& x = workers[w][K(e.hash)];
        x.tiers |= bit;
        x.priority = e.priority;
        if (bit == 1) x.predicted_until = 0;
        break;
      }
      case KvEventKind::kBlockRemoved: {
        auto it = workers[w].find(K(e.hash));
        if (it == workers[w].end()) break;
        it->second.tiers &= static_cast<uint8_t>(~bit);
        Tidy(w, K(e.hash));
        break;
      }
      case KvEventKind::kAllCleared: {
        const uint8_t mask = e.tier ? bit : 0xF;
        std::vector<std::pair<uint64_t, uint64_t>> keys;
        for (auto& [k, x] : workers[w]) x.tiers &= static_cast<uint8_t>(~mask), keys.push_back(k);
        for (auto& k : keys) Tidy(w, k);
        break;
      }
    }
  }
  IndexMatch Match(int w, const std::vector<BlockHash>& keys, Micros now) const {
    IndexMatch m;
    for (const BlockHash& h : keys) {
      auto it = workers[w].find(K(h));
      if (it == workers[w].end()) break;
      const Entry& x = it->second;
      if (x.tiers) {
        int t = 0;
        while (!(x.tiers & (1u << t))) ++t;
        ++m.by_tier[t];
        if (x.priority >= 50) ++m.durable;
      } else if (x.predicted_until > now) {
        ++m.predicted;
      } else {
        break;
      }
      ++m.blocks;
    }
    return m;
  }
};

TEST(BlockIndexRandomTest, MatchesReferenceModelOver100kEvents) {
  constexpr int kWorkers = 4;
  constexpr int kKeys = 64;  // few keys: many collisions, long held chains
  std::mt19937_64 rng(20261204);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  std::vector<BlockHash> keys;
  for (int i = 0; i < kKeys; ++i) keys.push_back(BlockHash{static_cast<uint64_t>(i) * 7919 + 1, 0x5eed});

  BlockIndex index(BlockIndex::Options{});
  Model model;
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_EQ(index.AddWorker(), w);
    model.workers.emplace_back();
    model.next_seq.push_back(0);
  }
  Micros now = 1;
  constexpr Micros kTtl = 1000;
  int64_t events = 0;
  int64_t gaps = 0, duplicates = 0, snapshots = 0, expired = 0;

  auto random_event = [&]() {
    IndexEvent e;
    const int r = pick(100);
    e.kind = r < 60 ? KvEventKind::kBlockStored : r < 97 ? KvEventKind::kBlockRemoved : KvEventKind::kAllCleared;
    e.tier = static_cast<StorageTier>(pick(kNumStorageTiers));
    if (e.kind == KvEventKind::kAllCleared && pick(2) == 0) e.tier.reset();
    e.hash = keys[static_cast<size_t>(pick(kKeys))];
    e.priority = static_cast<Priority>(pick(101));
    return e;
  };

  while (events < 120000) {
    const int w = pick(kWorkers);
    const int op = pick(100);
    if (op < 80) {
      std::vector<IndexEvent> batch(static_cast<size_t>(1 + pick(8)));
      for (IndexEvent& e : batch) e = random_event();
      const int kind = pick(20);
      int64_t seq = model.next_seq[w];
      if (kind == 0) seq += 1 + pick(3);                        // past a gap
      if (kind == 1 && seq > 0) seq -= 1 + pick(static_cast<int>(std::min<int64_t>(seq, 3)));  // a replayed one
      const BatchOutcome out = index.ApplyBatch(w, seq, batch);
      if (seq == model.next_seq[w]) {
        ASSERT_EQ(out.kind, BatchOutcome::Kind::kApplied);
        for (const IndexEvent& e : batch) model.Apply(w, e);
        ++model.next_seq[w];
        events += static_cast<int64_t>(batch.size());
      } else if (seq > model.next_seq[w]) {
        ASSERT_EQ(out.kind, BatchOutcome::Kind::kGap);
        ASSERT_EQ(out.expected, model.next_seq[w]);
        ++gaps;
      } else {
        ASSERT_EQ(out.kind, BatchOutcome::Kind::kDuplicate);
        ++duplicates;
      }
    } else if (op < 90) {
      std::vector<BlockHash> chain;
      for (int i = 0, n = 1 + pick(6); i < n; ++i) chain.push_back(keys[static_cast<size_t>(pick(kKeys))]);
      index.Predict(w, chain, now + kTtl);
      for (const BlockHash& h : chain) {
        Model::Entry& x = model.workers[w][Model::K(h)];
        if (!(x.tiers & 1)) x.predicted_until = std::max(x.predicted_until, now + kTtl);
      }
    } else if (op < 97) {
      now += pick(400);
      expired += index.ExpirePredictions(now);
      for (auto& m : model.workers) {
        std::vector<std::pair<uint64_t, uint64_t>> ks;
        for (auto& [k, x] : m) {
          if (x.predicted_until != 0 && x.predicted_until <= now) x.predicted_until = 0, ks.push_back(k);
        }
        for (auto& k : ks) {
          auto it = m.find(k);
          if (it->second.tiers == 0) m.erase(it);
        }
      }
    } else {
      // A snapshot of a random state: what a worker's GET /v1/cache/blocks says.
      std::vector<BlockIndex::SnapshotBlock> snap;
      for (int i = 0; i < kKeys; ++i) {
        if (pick(3) == 0) {
          snap.push_back({keys[static_cast<size_t>(i)], static_cast<StorageTier>(pick(kNumStorageTiers)),
                          static_cast<Priority>(pick(101))});
        }
      }
      const int64_t next = model.next_seq[w] + pick(5);
      index.ApplySnapshot(w, next, snap);
      model.Apply(w, IndexEvent{.kind = KvEventKind::kAllCleared, .tier = std::nullopt});
      for (const auto& b : snap) {
        model.Apply(w, IndexEvent{.kind = KvEventKind::kBlockStored, .tier = b.tier, .hash = b.hash,
                                  .priority = b.priority});
      }
      model.next_seq[w] = next;
      ++snapshots;
    }

    // Compare: a random chain on every worker, and the counters.
    std::vector<BlockHash> query;
    for (int i = 0, n = 1 + pick(5); i < n; ++i) query.push_back(keys[static_cast<size_t>(pick(kKeys))]);
    for (int v = 0; v < kWorkers; ++v) {
      const IndexMatch a = index.Match(v, query, now);
      const IndexMatch b = model.Match(v, query, now);
      ASSERT_EQ(a.blocks, b.blocks);
      ASSERT_EQ(a.predicted, b.predicted);
      ASSERT_EQ(a.durable, b.durable);
      for (int t = 0; t < kNumStorageTiers; ++t) ASSERT_EQ(a.by_tier[t], b.by_tier[t]);
      const WorkerIndexStats s = index.Stats(v);
      int64_t held[kNumStorageTiers] = {};
      for (const auto& [k, x] : model.workers[v]) {
        for (int t = 0; t < kNumStorageTiers; ++t) held[t] += (x.tiers >> t) & 1;
        ASSERT_EQ(index.TiersOf(v, BlockHash{k.first, k.second}), x.tiers);
      }
      for (int t = 0; t < kNumStorageTiers; ++t) ASSERT_EQ(s.blocks[t], held[t]) << "worker " << v << " tier " << t;
      ASSERT_EQ(s.next_seq, model.next_seq[v]);
    }
    ASSERT_EQ(index.TotalEntries(), [&] {
      int64_t n = 0;
      for (auto& m : model.workers) n += static_cast<int64_t>(m.size());
      return n;
    }());
    if (events % 97 == 0) {
      ASSERT_TRUE(index.CheckInvariants().ok()) << index.CheckInvariants().ToString();
    }
  }
  ASSERT_TRUE(index.CheckInvariants().ok()) << index.CheckInvariants().ToString();
  // The stream exercised every path.
  EXPECT_GT(gaps, 100);
  EXPECT_GT(duplicates, 100);
  EXPECT_GT(snapshots, 100);
  EXPECT_GT(expired, 100);
}

}  // namespace
}  // namespace kvstack
