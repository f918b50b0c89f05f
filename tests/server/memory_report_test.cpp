// /v1/memory's parts without a network: the sliding-window percentiles, the
// hot-prefix tracker, the workload recorder (hit shares, timeline) and the
// report JSON, plus a randomized check of the stateful pieces against a
// brute-force reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "server/hot_prefixes.h"
#include "server/memory_report.h"
#include "server/sliding_window.h"
#include "server/workload_recorder.h"

namespace kvstack::server {
namespace {

constexpr Micros kSecond = 1'000'000;

BlockHash Key(uint64_t n) { return BlockHash{.lo = n, .hi = n * 7 + 1}; }

TEST(SlidingWindowTest, NearestRankPercentiles) {
  SlidingWindow w(100 * kSecond, 1000);
  for (int v = 100; v >= 1; --v) w.Add(kSecond, v);  // order must not matter
  const Percentiles p = w.Get(kSecond);
  EXPECT_EQ(p.count, 100u);
  EXPECT_EQ(p.p50, 50);
  EXPECT_EQ(p.p95, 95);
  EXPECT_EQ(p.p99, 99);
  EXPECT_EQ(p.max, 100);
}

TEST(SlidingWindowTest, OneSampleIsEveryPercentile) {
  SlidingWindow w(kSecond, 10);
  w.Add(0, 7.5);
  const Percentiles p = w.Get(0);
  EXPECT_EQ(p.count, 1u);
  EXPECT_EQ(p.p50, 7.5);
  EXPECT_EQ(p.p99, 7.5);
}

TEST(SlidingWindowTest, ForgetsSamplesOlderThanTheWindow) {
  SlidingWindow w(10 * kSecond, 1000);
  w.Add(0, 1000);
  w.Add(5 * kSecond, 1);
  EXPECT_EQ(w.Get(5 * kSecond).count, 2u);
  const Percentiles later = w.Get(12 * kSecond);  // the first is 12 s old
  EXPECT_EQ(later.count, 1u);
  EXPECT_EQ(later.max, 1);
  EXPECT_EQ(w.Get(100 * kSecond).count, 0u);
  EXPECT_EQ(w.Get(100 * kSecond).p99, 0);
}

TEST(SlidingWindowTest, KeepsTheNewestWhenFull) {
  SlidingWindow w(100 * kSecond, 3);
  for (int v = 1; v <= 5; ++v) w.Add(v, v);
  const Percentiles p = w.Get(10);
  EXPECT_EQ(p.count, 3u);
  EXPECT_EQ(p.p50, 4);
  EXPECT_EQ(p.max, 5);
}

TEST(HotPrefixesTest, RanksByHitsThenLength) {
  HotPrefixes hot(10);
  hot.Record(Key(1), 32, "a", 1);
  hot.Record(Key(2), 64, "b", 2);
  hot.Record(Key(2), 48, "b", 3);
  hot.Record(Key(3), 96, "a", 4);
  const auto top = hot.Top(10);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].key, Key(2));
  EXPECT_EQ(top[0].hits, 2u);
  EXPECT_EQ(top[0].tokens, 64);  // the longest hit seen
  EXPECT_EQ(top[0].tenant, "b");
  EXPECT_EQ(top[0].last_hit, 3);
  EXPECT_EQ(top[1].key, Key(3));  // one hit each: the longer first
  EXPECT_EQ(top[2].key, Key(1));
  EXPECT_EQ(hot.Top(1).size(), 1u);
}

TEST(HotPrefixesTest, IgnoresTheZeroKey) {
  HotPrefixes hot(4);
  hot.Record(BlockHash{}, 16, "", 1);
  EXPECT_EQ(hot.size(), 0u);
}

TEST(HotPrefixesTest, AtCapacityDropsTheColdestNotTheHottest) {
  HotPrefixes hot(2);
  for (int i = 0; i < 5; ++i) hot.Record(Key(1), 16, "", i);
  hot.Record(Key(2), 16, "", 10);
  hot.Record(Key(3), 16, "", 11);  // drops key 2 (one hit), keeps key 1 (five)
  EXPECT_EQ(hot.size(), 2u);
  const auto top = hot.Top(2);
  EXPECT_EQ(top[0].key, Key(1));
  EXPECT_EQ(top[1].key, Key(3));
}

TEST(WorkloadRecorderTest, HitShareBoundaries) {
  EXPECT_EQ(HitShareOf(100, 0), HitShare::kNone);
  EXPECT_EQ(HitShareOf(100, 49), HitShare::kUnderHalf);
  EXPECT_EQ(HitShareOf(100, 50), HitShare::kHalfOrMore);
  EXPECT_EQ(HitShareOf(101, 50), HitShare::kUnderHalf);
  EXPECT_EQ(HitShareOf(100, 100), HitShare::kHalfOrMore);
  EXPECT_EQ(HitShareName(HitShare::kUnderHalf), "under_half");
}

RequestMetrics Finished(Micros at, int32_t prompt, int32_t cached, Micros ttft, uint64_t key = 0) {
  RequestMetrics m;
  m.prompt_tokens = prompt;
  m.cached_tokens = cached;
  m.generated_tokens = 4;
  m.queued_at = at - ttft - 1000;
  m.first_token_at = at - 1000;
  m.finished_at = at;
  if (cached > 0) m.hit_prefix = Key(key);
  return m;
}

TEST(WorkloadRecorderTest, SplitsTtftByHitShareAndBucketsTheTimeline) {
  WorkloadRecorder r(WorkloadOptions{.window = 60 * kSecond, .bucket = 5 * kSecond, .max_buckets = 3});
  r.Record(Finished(1 * kSecond, 100, 0, 400'000), "");
  r.Record(Finished(2 * kSecond, 100, 16, 300'000, 9), "t");
  r.Record(Finished(6 * kSecond, 100, 96, 100'000, 9), "t");
  r.Record(Finished(7 * kSecond, 200, 0, 500'000), "");
  const auto s = r.Get(8 * kSecond, 10);
  EXPECT_EQ(s.recorded, 4u);
  EXPECT_EQ(s.prompt_tokens.count, 4u);
  EXPECT_EQ(s.prompt_tokens.max, 200);
  EXPECT_EQ(s.ttft_s[0].count, 2u);
  EXPECT_DOUBLE_EQ(s.ttft_s[0].p50, 0.4);
  EXPECT_DOUBLE_EQ(s.ttft_s[0].p99, 0.5);
  EXPECT_EQ(s.ttft_s[1].count, 1u);
  EXPECT_DOUBLE_EQ(s.ttft_s[1].p50, 0.3);
  EXPECT_EQ(s.ttft_s[2].count, 1u);
  EXPECT_DOUBLE_EQ(s.ttft_s[2].p50, 0.1);
  ASSERT_EQ(s.hot_prefixes.size(), 1u);
  EXPECT_EQ(s.hot_prefixes[0].hits, 2u);
  EXPECT_EQ(s.hot_prefixes[0].tokens, 96);
  EXPECT_EQ(s.hot_prefixes[0].tenant, "t");
  ASSERT_EQ(s.timeline.size(), 2u);
  EXPECT_EQ(s.timeline[0].start, 0);
  EXPECT_EQ(s.timeline[0].requests, 2u);
  EXPECT_EQ(s.timeline[0].cached_tokens, 16u);
  EXPECT_EQ(s.timeline[1].start, 5 * kSecond);
  EXPECT_EQ(s.timeline[1].prompt_tokens, 300u);
  EXPECT_EQ(s.timeline[1].cached_tokens, 96u);

  for (int i = 0; i < 5; ++i) r.Record(Finished((20 + 5 * i) * kSecond, 10, 0, 1000), "");
  EXPECT_EQ(r.Get(45 * kSecond, 10).timeline.size(), 3u);  // max_buckets
}

TEST(WorkloadRecorderTest, ARequestWithoutAFirstTokenAddsNoTtft) {
  WorkloadRecorder r;
  RequestMetrics m;
  m.prompt_tokens = 10;
  m.queued_at = 5;
  m.finished_at = 10;
  r.Record(m, "");
  const auto s = r.Get(10, 5);
  EXPECT_EQ(s.prompt_tokens.count, 1u);
  for (const Percentiles& p : s.ttft_s) EXPECT_EQ(p.count, 0u);
}

TEST(MemoryReportTest, SplitsMemoryAndNamesPrefixesWithoutText) {
  MemoryReportInputs in;
  in.model_name = "demo";
  in.random_weights = true;
  in.info.weight_bytes = 1000;
  in.info.architecture = "llama";
  in.cache.block_size = 16;
  in.cache.total_blocks = 10;
  in.cache.in_use_blocks = 2;
  in.cache.cached_blocks = 3;
  in.cache.pinned_blocks = 1;
  in.cache.free_blocks = 4;
  in.cache.kv_bytes_per_block = 100;
  in.cache.prefix.query_tokens = 200;
  in.cache.prefix.hit_tokens = 50;
  in.cache.by_tenant["a"] = PrefixCounters{.query_tokens = 100, .hit_tokens = 50};
  in.cache.evictions = 7;
  in.cache.evictions_by_priority[10] = 5;
  in.cache.evictions_by_priority[kDefaultPriority] = 2;
  in.workspace_bytes = 64;
  WorkloadRecorder r;
  r.Record(Finished(kSecond, 40, 32, 1000, 3), "a");
  in.workload = r.Get(2 * kSecond, 5);

  const nlohmann::json j = MemoryReport(in);
  const auto& b = j["memory"]["bytes"];
  EXPECT_EQ(b["weights"], 1000);
  EXPECT_EQ(b["kv_in_use"], 200);
  EXPECT_EQ(b["kv_cached"], 300);
  EXPECT_EQ(b["kv_pinned"], 100);
  EXPECT_EQ(b["kv_free"], 400);
  EXPECT_EQ(b["workspace"], 64);
  EXPECT_EQ(j["memory"]["total_bytes"], 1000 + 1000 + 64);
  EXPECT_TRUE(j["model"]["random_weights"]);
  EXPECT_NE(j["model"]["note"].get<std::string>().find("random weights"), std::string::npos);
  EXPECT_DOUBLE_EQ(j["prefix_cache"]["hit_rate"], 0.25);
  EXPECT_EQ(j["prefix_cache"]["by_tenant"][0]["tenant"], "a");
  EXPECT_DOUBLE_EQ(j["prefix_cache"]["by_tenant"][0]["hit_rate"], 0.5);
  EXPECT_EQ(j["prefix_cache"]["by_priority_class"].size(), size_t(kNumPriorityClasses));
  EXPECT_EQ(j["evictions"]["total"], 7);
  EXPECT_EQ(j["evictions"]["by_priority_class"]["one-off"], 5);
  EXPECT_EQ(j["evictions"]["by_priority_class"]["default"], 2);
  EXPECT_EQ(j["evictions"]["by_priority"].size(), 2u);
  ASSERT_EQ(j["hot_prefixes"].size(), 1u);
  EXPECT_EQ(j["hot_prefixes"][0]["hash"], Key(3).ToHex());
  EXPECT_EQ(j["hot_prefixes"][0]["tokens"], 32);
  EXPECT_EQ(j["hot_prefixes"][0]["tenant"], "a");
  EXPECT_DOUBLE_EQ(j["hot_prefixes"][0]["last_hit_s_ago"], 1.0);
  EXPECT_EQ(j["ttft_s"]["by_hit_share"]["half_or_more"]["count"], 1);
  EXPECT_EQ(j["timeline"]["buckets"].size(), 1u);
  EXPECT_DOUBLE_EQ(j["timeline"]["buckets"][0]["hit_rate"], 0.8);
  EXPECT_DOUBLE_EQ(j["timeline"]["bucket_s"], 5.0);
}

// Random records against brute force: the window's percentiles equal a sort
// of the in-window samples, and while under capacity the hot-prefix ranking
// equals counting every hit.
TEST(WorkloadRecorderRandomTest, AgreesWithBruteForce) {
  std::mt19937_64 rng(20261127);
  for (int round = 0; round < 20; ++round) {
    const Micros window = (1 + rng() % 20) * kSecond;
    SlidingWindow w(window, 100000);
    HotPrefixes hot(1000);
    std::vector<std::pair<Micros, double>> samples;
    std::map<uint64_t, std::pair<uint64_t, int32_t>> hits;  // key -> (hits, max tokens)
    Micros now = 0;
    for (int i = 0; i < 2000; ++i) {
      now += static_cast<Micros>(rng() % 50'000);
      const double v = double(rng() % 1000);
      w.Add(now, v);
      samples.emplace_back(now, v);
      const uint64_t key = 1 + rng() % 40;
      const int32_t tokens = 16 * static_cast<int32_t>(1 + rng() % 8);
      hot.Record(Key(key), tokens, "", now);
      hits[key].first += 1;
      hits[key].second = std::max(hits[key].second, tokens);

      if (i % 97 != 0) continue;
      std::vector<double> in;
      for (const auto& [at, value] : samples) if (at >= now - window) in.push_back(value);
      std::sort(in.begin(), in.end());
      const Percentiles p = w.Get(now);
      ASSERT_EQ(p.count, in.size());
      auto rank = [&](double q) { return in[std::max<size_t>(1, size_t(std::ceil(q * in.size()))) - 1]; };
      ASSERT_EQ(p.p50, rank(0.5));
      ASSERT_EQ(p.p95, rank(0.95));
      ASSERT_EQ(p.p99, rank(0.99));
      ASSERT_EQ(p.max, in.back());

      const auto top = hot.Top(5);
      ASSERT_EQ(top.size(), std::min<size_t>(5, hits.size()));
      for (size_t k = 0; k < top.size(); ++k) {
        const auto& [count, longest] = hits.at(top[k].key.lo);
        ASSERT_EQ(top[k].hits, count);
        ASSERT_EQ(top[k].tokens, longest);
        for (const auto& [key_lo, h] : hits) {
          const auto other = key_lo;  // a lambda may not capture a structured binding before clang 16
          const bool listed = std::any_of(top.begin(), top.end(), [&](const HotPrefix& t) { return t.key.lo == other; });
          if (!listed) {
            ASSERT_LE(h.first, top.back().hits) << "a prefix with more hits was left out";
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvstack::server
