// Helpers shared by the tier tests: block keys, recognizable block bytes,
// and a randomized model check of any Tier against a reference map.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <unordered_map>
#include <vector>

#include "kvstack/tier.h"

namespace kvstack::tier_test {

inline BlockHash H(uint64_t x) { return BlockHash{x * 0x9E3779B97F4A7C15ull + 1, x + 17}; }

// Bytes that name their key and a version: a get that returns another
// block's bytes (or a stale version) shows up as a mismatch.
inline std::vector<std::byte> Bytes(size_t n, uint64_t key, uint64_t version = 0) {
  std::vector<std::byte> b(n);
  uint64_t x = key * 0x100000001B3ull ^ (version + 0x9E37);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = static_cast<std::byte>(x & 0xff);
  }
  return b;
}

inline bool PutOne(Tier& t, uint64_t key, uint64_t version = 0, Priority prio = kDefaultPriority) {
  auto b = Bytes(t.bytes_per_block(), key, version);
  TierPut p{{H(key), prio, 0}, b};
  TierFuture f = t.Put(std::span<const TierPut>(&p, 1));
  f.Wait();
  return f.num_ok() == 1;
}

// Reads one block; nullopt on a miss.
inline std::optional<std::vector<std::byte>> GetOne(Tier& t, uint64_t key) {
  std::vector<std::byte> out(t.bytes_per_block());
  TierGet g{H(key), out};
  TierFuture f = t.Get(std::span<const TierGet>(&g, 1));
  f.Wait();
  if (f.num_ok() != 1) return std::nullopt;
  return out;
}

// Random put / get / remove / lookup against a reference of what was put
// (key -> version). Checks after each step: a get that hits returns exactly
// the bytes last put for that key; a removed key misses; the tier never holds
// more than its capacity; CheckInvariants() holds. A tier may miss a key the
// reference has (it evicts), never the other way round.
inline void RandomModelCheck(Tier& tier, int ops, uint64_t seed, int keys) {
  std::mt19937_64 rng(seed);
  std::unordered_map<uint64_t, uint64_t> version;  // what was put last
  uint64_t next_version = 1;
  const size_t n = tier.bytes_per_block();
  for (int op = 0; op < ops; ++op) {
    const uint64_t key = rng() % static_cast<uint64_t>(keys);
    const int what = static_cast<int>(rng() % 10);
    if (what < 4) {  // put a batch of up to 4
      const int batch = 1 + static_cast<int>(rng() % 4);
      std::vector<std::vector<std::byte>> bytes;
      std::vector<TierPut> puts;
      std::vector<uint64_t> ks;
      for (int b = 0; b < batch; ++b) {
        const uint64_t k = (key + static_cast<uint64_t>(b) * 7) % static_cast<uint64_t>(keys);
        if (std::find(ks.begin(), ks.end(), k) != ks.end()) continue;
        // A held key keeps its bytes (a tier does not rewrite a held block),
        // so a re-put uses the same version as the reference's.
        uint64_t v = version.count(k) ? version[k] : next_version++;
        ks.push_back(k);
        bytes.push_back(Bytes(n, k, v));
        version[k] = v;
      }
      for (size_t b = 0; b < ks.size(); ++b) {
        puts.push_back({{H(ks[b]), static_cast<Priority>(rng() % 101), static_cast<uint32_t>(rng() % 5)}, bytes[b]});
      }
      TierFuture f = tier.Put(puts);
      f.Wait();
    } else if (what < 8) {  // get a batch of up to 3
      std::vector<std::vector<std::byte>> out(3, std::vector<std::byte>(n));
      std::vector<TierGet> gets;
      std::vector<uint64_t> ks;
      for (int b = 0; b < 3; ++b) {
        const uint64_t k = (key + static_cast<uint64_t>(b)) % static_cast<uint64_t>(keys);
        ks.push_back(k);
        gets.push_back({H(k), out[static_cast<size_t>(b)]});
      }
      TierFuture f = tier.Get(gets);
      f.Wait();
      for (size_t b = 0; b < ks.size(); ++b) {
        if (!f.ok(b)) continue;
        auto it = version.find(ks[b]);
        ASSERT_NE(it, version.end()) << "op " << op << ": key " << ks[b] << " hit but was never put (or removed)";
        ASSERT_TRUE(out[b] == Bytes(n, ks[b], it->second)) << "op " << op << ": key " << ks[b] << " wrong bytes";
      }
    } else if (what == 8) {
      tier.Remove(H(key));
      version.erase(key);
      ASSERT_FALSE(GetOne(tier, key).has_value()) << "op " << op << ": removed key " << key << " still hits";
    } else {
      const BlockHash h = H(key);
      TierFuture f = tier.Lookup(std::span<const BlockHash>(&h, 1));
      f.Wait();
      if (f.ok(0)) {
        ASSERT_TRUE(version.count(key)) << "op " << op << ": lookup found key " << key << " never put";
      }
    }
    const TierMetrics m = tier.Metrics();
    ASSERT_LE(m.blocks, tier.capacity_blocks()) << "op " << op;
    if (op % 64 == 0) {
      Status s = tier.CheckInvariants();
      ASSERT_TRUE(s.ok()) << "op " << op << ": " << s.ToString();
    }
  }
  Status s = tier.CheckInvariants();
  ASSERT_TRUE(s.ok()) << s.ToString();
}

}  // namespace kvstack::tier_test

#include <unistd.h>

#include <filesystem>
#include <string>

namespace kvstack::tier_test {

// A fresh folder per test under `base` (default: the system temp dir),
// removed at the end.
class TempDir {
 public:
  explicit TempDir(const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = base / ("kvstack_tiers_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
                    std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path_.string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace kvstack::tier_test
