// TierChain over two host tiers (a small fast one above a larger one): the
// offload gate, write-through to the lower tier, prefix lookup across tiers,
// fetches split by tier with promotion, and a randomized model check.
#include "kvstack/tier_chain.h"

#include <gtest/gtest.h>

#include <mutex>
#include <random>
#include <unordered_map>

#include "kvstack/tiers.h"
#include "tier_test_util.h"

namespace kvstack {
namespace {

using tier_test::Bytes;
using tier_test::H;

constexpr size_t kBytes = 128;

std::unique_ptr<Tier> Host(int64_t blocks, size_t bytes = kBytes) {
  return MakeHostTier({.bytes_per_block = bytes, .capacity_blocks = blocks}).value();
}

std::unique_ptr<TierChain> MakeChain(int64_t top, int64_t bottom) {
  TierChainOptions o;
  o.tiers.push_back(Host(top));
  o.tiers.push_back(Host(bottom));
  o.min_priority = 50;
  o.min_hits = 2;
  auto c = TierChain::Create(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::move(c).value();
}

TEST(TierChainTest, RejectsNoTiersAndMixedBlockSizes) {
  EXPECT_EQ(TierChain::Create(TierChainOptions{}).status().code(), StatusCode::kInvalidArgument);
  TierChainOptions o;
  o.tiers.push_back(Host(2, 64));
  o.tiers.push_back(Host(2, 128));
  auto c = TierChain::Create(std::move(o));
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("bytes_per_block"), std::string::npos);
}

TEST(TierChainTest, OffloadKeepsOnlyBlocksWorthKeeping) {
  auto c = MakeChain(4, 16);
  auto b = Bytes(kBytes, 1);
  EXPECT_EQ(c->Offload(H(1), 35, 1, b), OffloadOutcome::kSkipped);  // low priority, one hit
  EXPECT_EQ(c->Offload(H(2), 50, 0, b), OffloadOutcome::kStored);   // priority
  EXPECT_EQ(c->Offload(H(3), 10, 2, b), OffloadOutcome::kStored);   // reused twice
  c->Flush();
  EXPECT_FALSE(c->tier(0).Contains(H(1)));
  EXPECT_TRUE(c->tier(0).Contains(H(2)));
  EXPECT_TRUE(c->tier(1).Contains(H(2)));  // written through
  EXPECT_TRUE(c->tier(1).Contains(H(3)));
  const TierChainMetrics m = c->Metrics();
  EXPECT_EQ(m.offloads, 3u);
  EXPECT_EQ(m.offload_skipped, 1u);
  EXPECT_EQ(m.writes_done, 2u);
  ASSERT_EQ(m.tiers.size(), 2u);
  EXPECT_EQ(m.tiers[1].stored, 2u);
}

TEST(TierChainTest, LookupPrefixStopsAtTheFirstMissAndNamesTheFastestTier) {
  auto c = MakeChain(2, 16);
  for (uint64_t k = 1; k <= 4; ++k) {
    auto b = Bytes(kBytes, k);
    ASSERT_EQ(c->Offload(H(k), 90, 0, b), OffloadOutcome::kStored);
  }
  c->Flush();
  // Tier 0 holds 2 blocks: 1 and 2 were evicted from it, 3 and 4 are there.
  std::vector<BlockHash> q = {H(1), H(3), H(4), H(9), H(2)};
  PrefixLocation loc = c->LookupPrefix(q);
  EXPECT_EQ(loc.blocks, 3);
  EXPECT_EQ(loc.tier, (std::vector<int8_t>{1, 0, 0}));
}

TEST(TierChainTest, FetchReadsFromEachTierAndPromotes) {
  auto c = MakeChain(2, 16);
  for (uint64_t k = 1; k <= 4; ++k) {
    auto b = Bytes(kBytes, k);
    ASSERT_EQ(c->Offload(H(k), 90, 0, b), OffloadOutcome::kStored);
  }
  c->Flush();
  std::vector<BlockHash> q = {H(4), H(1), H(7), H(2)};
  std::vector<std::vector<std::byte>> out(4, std::vector<std::byte>(kBytes));
  std::vector<std::span<std::byte>> dests(out.begin(), out.end());
  FetchHandle h = c->StartFetch(q, dests);
  c->Wait(h);
  EXPECT_TRUE(c->Poll(h));
  EXPECT_EQ(h.blocks_requested(), 4);
  EXPECT_EQ(h.blocks_ready(), 2);  // 7 is nowhere: the prefix ends there
  EXPECT_EQ(out[0], Bytes(kBytes, 4));
  EXPECT_EQ(out[1], Bytes(kBytes, 1));
  EXPECT_TRUE(c->tier(0).Contains(H(1)));  // promoted from tier 1
  const TierChainMetrics m = c->Metrics();
  EXPECT_EQ(m.fetched_blocks, 2u);
  EXPECT_EQ(m.promoted, 1u);
}

TEST(TierChainTest, AFullQueueStoresInTierZeroOnly) {
  TierChainOptions o;
  o.tiers.push_back(Host(8));
  o.tiers.push_back(Host(8));
  o.max_queued_bytes = 0;  // nothing may wait for the lower tier
  auto c = TierChain::Create(std::move(o)).value();
  auto b = Bytes(kBytes, 1);
  EXPECT_EQ(c->Offload(H(1), 90, 0, b), OffloadOutcome::kStored);
  c->Flush();
  EXPECT_TRUE(c->tier(0).Contains(H(1)));
  EXPECT_FALSE(c->tier(1).Contains(H(1)));
  EXPECT_EQ(c->Metrics().writes_dropped, 1u);
}

// What a listener heard, per tier: it must equal what each tier holds.
class RecordingListener final : public TierChainListener {
 public:
  void OnTierStored(int tier, const BlockHash& hash, Priority) override {
    std::lock_guard<std::mutex> lock(mu);
    held[tier][hash] = true;
    ++stored;
  }
  void OnTierRemoved(int tier, const BlockHash& hash) override {
    std::lock_guard<std::mutex> lock(mu);
    held[tier].erase(hash);
    ++removed;
  }
  std::mutex mu;
  std::unordered_map<BlockHash, bool> held[2];
  int stored = 0, removed = 0;
};

TEST(TierChainTest, ListenerHearsEveryStoreAndEvictionOfEveryTier) {
  TierChainOptions o;
  o.tiers.push_back(Host(3));
  o.tiers.push_back(Host(7));
  o.min_priority = 0;
  o.write_batch = 16;  // batches larger than the lower tier: a block can be evicted by its own batch
  auto c = TierChain::Create(std::move(o)).value();
  auto listener = std::make_shared<RecordingListener>();
  c->SetListener(listener);
  std::mt19937_64 rng(11);
  std::vector<std::byte> dest(kBytes);
  for (int step = 0; step < 3000; ++step) {
    const uint64_t k = 1 + rng() % 24;
    switch (rng() % 4) {
      case 0:
      case 1: {
        auto b = Bytes(kBytes, k);
        c->Offload(H(k), static_cast<Priority>(rng() % 100), 0, b);
        break;
      }
      case 2: {  // a fetch from the lower tier promotes into tier 0
        const BlockHash h = H(k);
        std::span<std::byte> d(dest);
        FetchHandle f = c->StartFetch(std::span<const BlockHash>(&h, 1), std::span<const std::span<std::byte>>(&d, 1));
        c->Wait(f);
        break;
      }
      default:
        // Settled first: a removal racing the writer's put of the same block
        // may be heard before the store (a stale entry, documented).
        c->Flush();
        c->tier(static_cast<int>(rng() % 2)).Remove(H(k));
    }
    if (step % 100 == 99) {
      c->Flush();
      // A copy, then the tiers: the tiers call the listener under their own
      // lock, so holding the listener's while asking a tier inverts the order.
      std::vector<std::unordered_map<BlockHash, bool>> held;
      {
        std::lock_guard<std::mutex> lock(listener->mu);
        held.assign(std::begin(listener->held), std::end(listener->held));
      }
      for (int t = 0; t < 2; ++t) {
        for (uint64_t j = 1; j <= 24; ++j) {
          EXPECT_EQ(c->tier(t).Contains(H(j)), held[static_cast<size_t>(t)].count(H(j)) == 1)
              << "tier " << t << " block " << j << " at step " << step;
        }
      }
    }
  }
  EXPECT_GT(listener->stored, 100);
  EXPECT_GT(listener->removed, 100);
  // A listener attached late (a restarted subscriber) is first told what the
  // tiers hold now.
  c->Flush();
  auto late = std::make_shared<RecordingListener>();
  c->SetListener(late);
  for (int t = 0; t < 2; ++t) {
    EXPECT_FALSE(late->held[t].empty()) << "tier " << t;
    for (uint64_t j = 1; j <= 24; ++j) {
      EXPECT_EQ(c->tier(t).Contains(H(j)), late->held[t].count(H(j)) == 1) << "late listener, tier " << t << " block " << j;
    }
  }
  c->SetListener(nullptr);
  const int stored = listener->stored;
  auto b = Bytes(kBytes, 99);
  c->Offload(H(99), 90, 0, b);
  c->Flush();
  EXPECT_EQ(listener->stored, stored);  // detached: hears nothing
}

TEST(TierChainTest, RandomizedOffloadAndFetchNeverReturnWrongBytes) {
  auto c = MakeChain(5, 23);
  std::mt19937_64 rng(11);
  std::unordered_map<uint64_t, uint64_t> version;  // key -> bytes version offloaded
  for (int op = 0; op < 4000; ++op) {
    const uint64_t key = rng() % 60;
    if (rng() % 2 == 0) {
      // A key keeps its version once stored anywhere (tiers never rewrite a
      // held key), so the reference uses one version per key.
      const uint64_t v = version.count(key) ? version[key] : static_cast<uint64_t>(op);
      auto b = Bytes(kBytes, key, v);
      if (c->Offload(H(key), static_cast<Priority>(rng() % 101), static_cast<uint32_t>(rng() % 3), b) ==
          OffloadOutcome::kStored) {
        version[key] = v;
      }
    } else {
      std::vector<BlockHash> q;
      std::vector<uint64_t> keys;
      for (int i = 0; i < 4; ++i) {
        keys.push_back((key + static_cast<uint64_t>(i)) % 60);
        q.push_back(H(keys.back()));
      }
      std::vector<std::vector<std::byte>> out(4, std::vector<std::byte>(kBytes));
      std::vector<std::span<std::byte>> dests(out.begin(), out.end());
      // A lookup is a snapshot: a lower tier's write still in flight can land
      // between it and the fetch, which then finds more. Half the fetches
      // settle the writes first and hold the fetch to the lookup; the other
      // half race the writes and are held to the bytes only.
      const bool settled = op % 2 == 0;
      if (settled) c->Flush();
      const PrefixLocation loc = c->LookupPrefix(q);
      FetchHandle h = c->StartFetch(q, dests);
      c->Wait(h);
      if (settled) {
        ASSERT_LE(h.blocks_ready(), loc.blocks) << "op " << op;
      }
      for (int i = 0; i < h.blocks_ready(); ++i) {
        auto it = version.find(keys[static_cast<size_t>(i)]);
        ASSERT_NE(it, version.end()) << "op " << op;
        ASSERT_EQ(out[static_cast<size_t>(i)], Bytes(kBytes, it->first, it->second)) << "op " << op;
      }
    }
    if (op % 100 == 0) {
      c->Flush();
      for (int t = 0; t < c->num_tiers(); ++t) {
        ASSERT_TRUE(c->tier(t).CheckInvariants().ok());
        ASSERT_LE(c->tier(t).Metrics().blocks, c->tier(t).capacity_blocks());
      }
    }
  }
}

}  // namespace
}  // namespace kvstack
