// HashIndex: lookups survive backward-shift deletion across wrapped probe runs.
#include "cache/hash_index.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>

namespace kvstack {
namespace {

TEST(HashIndexTest, RandomInsertEraseAgreesWithAMap) {
  // Keys share their low bits, so probe runs are long and wrap the table.
  constexpr int32_t kBlocks = 64;
  std::vector<BlockMeta> meta(kBlocks);
  HashIndex index(kBlocks);
  std::unordered_map<int32_t, BlockHash> live;
  std::mt19937_64 rng(7);
  for (int step = 0; step < 20000; ++step) {
    const int32_t id = static_cast<int32_t>(rng() % kBlocks);
    if (live.count(id)) {
      index.Erase(meta[id].hash, id);
      meta[id].hash = {};
      live.erase(id);
    } else {
      BlockHash h{(rng() % 16) | (rng() << 40), rng() | 1};
      if (index.Find(h, meta)) continue;
      meta[id].hash = h;
      index.Insert(h, id);
      live[id] = h;
    }
    ASSERT_EQ(index.size(), static_cast<int32_t>(live.size()));
    if (step % 97 == 0) {
      for (auto& [lid, h] : live) ASSERT_EQ(index.Find(h, meta), lid) << "step " << step;
    }
  }
}

}  // namespace
}  // namespace kvstack
