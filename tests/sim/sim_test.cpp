// The replay on hand-built traces whose hit rates are known exactly, a
// capacity sweep, tiers, routing, and a randomized invariant check.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "kvstack/sim.h"
#include "sim/fixed_cost.h"

namespace kvstack::sim {
namespace {

using testing::FixedCost;

// Requests of `ids.size()` blocks of 4 tokens each, one second apart, one
// output token each (so each finishes in its prefill step, one at a time).
Trace Sequential(const std::vector<std::vector<uint64_t>>& requests) {
  Trace t;
  t.source = "test";
  t.block_tokens = 4;
  Micros at = 0;
  for (const auto& ids : requests) {
    TraceRequest r;
    r.arrival_us = at;
    at += 1'000'000;
    r.block_ids = ids;
    r.input_tokens = static_cast<int32_t>(ids.size()) * 4;
    r.output_tokens = 1;
    t.requests.push_back(r);
  }
  return t;
}

SimOptions Options(const std::string& policy, int64_t blocks) {
  SimOptions o;
  o.policy = policy;
  o.block_size = 4;
  o.device_tokens = blocks * 4;
  return o;
}

// Prefixes P=1, Q=2, R=3, each followed by a unique block (100+). A request
// of 8 tokens can hit only its first block (the block holding the last
// prompt token is always computed).
Trace SevenRequests() {
  return Sequential({{1, 101}, {2, 102}, {1, 103}, {3, 104}, {2, 105}, {3, 106}, {1, 107}});
}

TEST(SimTest, LruHitRateOnAHandBuiltTrace) {
  // 4 blocks. Walk (queue = eviction order after each request):
  //  P,a miss: a P | Q,b miss: a P b Q | P,c hit P, evict a: b Q c P
  //  R,d miss, evict b Q: c P d R | Q,e miss, evict c P: d R e Q
  //  R,f hit R, evict d: e Q f R | P,g miss (P gone)
  FixedCost cost;
  auto r = Simulate(SevenRequests(), cost, Options("lru", 4));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->requests, 7);
  EXPECT_EQ(r->query_tokens, 56u);
  EXPECT_EQ(r->query_blocks, 14u);
  EXPECT_EQ(r->tiers[0].hit_tokens, 8u);
  EXPECT_EQ(r->tiers[0].hit_blocks, 2u);
  EXPECT_DOUBLE_EQ(r->TokenHitRate(Tier::kDevice), 8.0 / 56.0);
}

TEST(SimTest, PriorityLruKeepsTheDurablePrefix) {
  // The same trace with P's block at priority 90: P outlives the default
  // blocks, so the last request hits it too (3 hits, as LFU below).
  Trace t = SevenRequests();
  for (TraceRequest& r : t.requests) {
    if (r.block_ids[0] == 1) r.ranges.push_back({0, 4, 90});
  }
  t.has_priorities = true;
  FixedCost cost;
  auto prio = Simulate(t, cost, Options("priority-lru", 4));
  ASSERT_TRUE(prio.ok()) << prio.status().ToString();
  EXPECT_EQ(prio->tiers[0].hit_tokens, 12u);
  // Durable: P's 3 blocks (12 tokens), 2 of them hits; one-off: the rest.
  EXPECT_EQ(prio->durable_tokens, 12u);
  EXPECT_EQ(prio->durable_hit_tokens, 8u);
  EXPECT_EQ(prio->oneoff_tokens, 44u);
  EXPECT_EQ(prio->oneoff_hit_tokens, 4u);
  // Plain LRU ignores the priorities.
  auto lru = Simulate(t, cost, Options("lru", 4));
  ASSERT_TRUE(lru.ok());
  EXPECT_EQ(lru->tiers[0].hit_tokens, 8u);
}

TEST(SimTest, LfuKeepsTheReusedPrefix) {
  FixedCost cost;
  auto r = Simulate(SevenRequests(), cost, Options("lfu", 4));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tiers[0].hit_tokens, 12u);
}

// P, Q, R cycled three times: LRU with room for two requests misses every
// time; with room for five blocks or more, every request after the first
// round hits its prefix.
Trace Cyclic() {
  std::vector<std::vector<uint64_t>> reqs;
  for (uint64_t i = 0; i < 9; ++i) reqs.push_back({1 + i % 3, 100 + i});
  return Sequential(reqs);
}

TEST(SimTest, CapacitySweepOfACyclicTrace) {
  FixedCost cost;
  auto sweep = SweepCapacity(Cyclic(), cost, Options("lru", 4), {"lru"}, 16, 128, 4);
  ASSERT_TRUE(sweep.ok()) << sweep.status().ToString();
  ASSERT_EQ(sweep->size(), 4u);
  const int64_t caps[] = {16, 32, 64, 128};
  const double rates[] = {0, 1.0 / 3, 1.0 / 3, 1.0 / 3};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ((*sweep)[i].device_tokens, caps[i]);
    EXPECT_DOUBLE_EQ((*sweep)[i].token_hit_rate, rates[i]) << "at " << caps[i] << " tokens";
  }
  auto five = Simulate(Cyclic(), cost, Options("lru", 5));
  ASSERT_TRUE(five.ok());
  EXPECT_EQ(five->tiers[0].hit_tokens, 24u);
  EXPECT_EQ(DistinctPromptTokens(Cyclic(), 4), 12 * 4);
}

TEST(SimTest, HostTierServesWhatTheDeviceEvicted) {
  // The cyclic trace misses entirely on 4 device blocks; a host tier of 64
  // blocks keeps every evicted block (the gate lets all through), so rounds
  // 2 and 3 hit there.
  FixedCost cost;
  SimOptions o = Options("lru", 4);
  o.host_tokens = 64 * 4;
  o.offload_min_hits = 0;
  auto r = Simulate(Cyclic(), cost, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tiers[0].hit_tokens, 0u);
  EXPECT_EQ(r->tiers[1].hit_tokens, 24u);
  EXPECT_DOUBLE_EQ(r->TotalTokenHitRate(), 1.0 / 3);
}

TEST(SimTest, TimingFollowsTheCostModel) {
  // One request of 8 tokens and 3 output tokens: prefill 8 ms gives the
  // first token; two decode steps of 10 ms follow.
  Trace t = Sequential({{1, 2}});
  t.requests[0].output_tokens = 3;
  FixedCost cost;
  auto r = Simulate(t, cost, Options("lru", 8));
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->ttft_s.p50, 0.008, 1e-9);
  EXPECT_NEAR(r->tpot_s.p50, 0.010, 1e-9);
  EXPECT_NEAR(r->makespan_s, 0.028, 1e-9);
  EXPECT_EQ(r->output_tokens, 3u);
}

// Closed loop (SimOptions::clients): the trace's times are ignored and each
// client sends the next request once its last one completed, so at most
// `clients` requests are ever in flight; open loop, six requests arriving
// together all run at once.
TEST(SimTest, ClosedLoopClientsSendTheNextRequestWhenTheirLastCompletes) {
  Trace t = Sequential({{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}, {11, 12}});
  for (TraceRequest& r : t.requests) {
    r.arrival_us = 0;
    r.output_tokens = 3;
  }
  FixedCost cost;
  SimOptions o = Options("lru", 64);
  o.record_requests = true;
  const auto most_in_flight = [](const SimResult& r) {
    int most = 0;
    for (const SimRequestRecord& a : r.records) {
      int overlapping = 0;
      for (const SimRequestRecord& b : r.records) {
        if (b.admitted_s <= a.admitted_s + 1e-12 && a.admitted_s < b.finished_s - 1e-12) ++overlapping;
      }
      most = std::max(most, overlapping);
    }
    return most;
  };
  auto open = Simulate(t, cost, o);
  ASSERT_TRUE(open.ok()) << open.status().ToString();
  ASSERT_EQ(open->records.size(), 6u);
  EXPECT_EQ(most_in_flight(*open), 6);
  for (int32_t clients : {1, 2}) {
    o.clients = clients;
    auto closed = Simulate(t, cost, o);
    ASSERT_TRUE(closed.ok()) << closed.status().ToString();
    ASSERT_EQ(closed->records.size(), 6u);
    EXPECT_EQ(most_in_flight(*closed), clients);
    EXPECT_GT(closed->makespan_s, open->makespan_s) << clients << " clients";
    if (clients == 1) {
      std::vector<SimRequestRecord> by_index = closed->records;
      std::sort(by_index.begin(), by_index.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
      for (size_t i = 1; i < by_index.size(); ++i) {
        EXPECT_GE(by_index[i].admitted_s, by_index[i - 1].finished_s - 1e-12) << "request " << i;
      }
    }
  }
}

TEST(SimTest, MeasuredTtftFromTheTraceIsReportedBesideThePrediction) {
  // Three lone requests of 8 unique tokens: each is predicted at 8 ms (1 ms
  // per prefilled token). The server measured 4, 16 and 10 ms (p50 10 ms),
  // and served 4 of the second's prompt tokens from its cache; the third
  // carries no cached count.
  Trace t = Sequential({{1, 2}, {3, 4}, {5, 6}});
  t.requests[0].measured_ttft_us = 4'000;
  t.requests[1].measured_ttft_us = 16'000;
  t.requests[2].measured_ttft_us = 10'000;
  t.requests[0].measured_cached_tokens = 0;
  t.requests[1].measured_cached_tokens = 4;
  FixedCost cost;
  auto r = Simulate(t, cost, Options("lru", 8));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->ttft_s.p50, 0.008, 1e-9);
  EXPECT_EQ(r->measured_requests, 3);
  EXPECT_NEAR(r->measured_ttft_s.p50, 0.010, 1e-9);
  EXPECT_NEAR(r->measured_ttft_s.p95, 0.016, 1e-9);
  EXPECT_EQ(r->measured_ttft_samples_s, (std::vector<double>{0.004, 0.010, 0.016}));
  EXPECT_EQ(r->measured_query_tokens, 16u);
  EXPECT_EQ(r->measured_cached_tokens, 4u);
  const std::string text = FormatSimResult(*r);
  EXPECT_NE(text.find("TTFT measured p50    10.0 ms  p95    16.0 ms  p99    16.0 ms"), std::string::npos) << text;
  EXPECT_NE(text.find("TTFT p50 predicted / measured = 0.80"), std::string::npos) << text;
  EXPECT_NE(text.find("25.0%     (4 of 16 prompt tokens; from the trace"), std::string::npos) << text;
  HtmlReportInput in{"calibration", "hand-made", &*r, nullptr, nullptr};
  EXPECT_NE(RenderHtmlReport(in).find("measured by the server"), std::string::npos);

  // A trace without measurements prints no measured line.
  auto plain = Simulate(Sequential({{1, 2}}), cost, Options("lru", 8));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->measured_requests, 0);
  EXPECT_EQ(FormatSimResult(*plain).find("measured"), std::string::npos);
}

TEST(SimTest, TokenBudgetChunksPromptsAsTheEngineDoes) {
  // A (8 tokens, 3 output) and B (8 tokens, 1 output) arrive together. With a
  // budget of 6 tokens a step: step 1 computes A[0,6) (6 ms); step 2 A[6,8)
  // and B[0,4) (6 ms): A's first token at 12 ms; step 3 decodes A (10 ms,
  // first in the budget) and computes B[4,8) (4 ms): B's first token at 26 ms.
  // Without a budget both prompts go in step 1: 16 ms each.
  Trace t = Sequential({{1, 2}, {3, 4}});
  t.requests[1].arrival_us = 0;
  t.requests[0].output_tokens = 3;
  FixedCost cost;
  SimOptions o = Options("lru", 16);
  auto whole = Simulate(t, cost, o);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->ttft_samples_s, (std::vector<double>{0.016, 0.016}));
  o.max_batch_tokens = 6;
  auto chunked = Simulate(t, cost, o);
  ASSERT_TRUE(chunked.ok()) << chunked.status().ToString();
  ASSERT_EQ(chunked->ttft_samples_s.size(), 2u);
  EXPECT_NEAR(chunked->ttft_samples_s[0], 0.012, 1e-9);
  EXPECT_NEAR(chunked->ttft_samples_s[1], 0.026, 1e-9);
  EXPECT_EQ(chunked->requests, 2);
  EXPECT_EQ(chunked->output_tokens, 4u);
  // A decodes its third token in step 4 (10 ms): done at 36 ms.
  EXPECT_NEAR(chunked->makespan_s, 0.036, 1e-9);
}

TEST(SimTest, ProfileStepFitCostsTokensAndAttendedPositions) {
  const std::string profile = R"({"format": "kvstack-bench-engine/1", "cost_models": [{"model_path": "m.gguf",
      "threads": 1, "prefill": [{"sequences": 1, "tokens": 32, "ms_per_token": 0.05}],
      "decode": [{"batch": 1, "ms_per_step": 0.1, "mean_context": 40}],
      "decode_step_ms_fit": {"base_ms": 0, "per_sequence_ms": 0.1},
      "step_ms_fit": {"base_ms": 0.01, "per_token_ms": 0.03, "per_attended_ms": 0.0005}}]})";
  auto cost = MakeProfileCostModel(profile, "p.json");
  ASSERT_TRUE(cost.ok()) << cost.status().ToString();
  // 10 prompt tokens at positions 100..109 attend over 101..110: 1055 in all;
  // 2 decoding sequences over contexts summing to 300.
  StepWork w;
  w.prefill_tokens = 10;
  w.prefill_context = 110;
  w.prefill_attended = 1055;
  w.decode_batch = 2;
  w.decode_context = 300;
  EXPECT_NEAR((*cost)->StepSeconds(w), (0.01 + 0.03 * 12 + 0.0005 * 1355) / 1e3, 1e-12);
  EXPECT_NEAR((*cost)->DecodeStepSeconds(2, 300), (0.01 + 0.03 * 2 + 0.0005 * 300) / 1e3, 1e-12);
  EXPECT_NEAR((*cost)->PrefillSeconds(10, 110), (0.01 + 0.03 * 10 + 0.0005 * 1055) / 1e3, 1e-12);
  EXPECT_NE((*cost)->Describe()[1].find("0.03000 ms x tokens"), std::string::npos) << (*cost)->Describe()[1];

  std::string bad = profile;
  bad.replace(bad.find("\"per_token_ms\": 0.03"), 20, "\"per_token_ms\": -1.0");
  auto rejected = MakeProfileCostModel(bad, "p.json");
  ASSERT_FALSE(rejected.ok());
  EXPECT_NE(rejected.status().message().find("per_token_ms must be positive"), std::string::npos)
      << rejected.status().message();
}

TEST(SimTest, RejectsRequestsLargerThanTheCache) {
  Trace t = Sequential({{1, 2, 3, 4, 5}, {1, 2}});
  FixedCost cost;
  auto r = Simulate(t, cost, Options("lru", 4));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rejected, 1);
  EXPECT_EQ(r->requests, 1);
}

TEST(SimTest, BadOptionsAreErrors) {
  FixedCost cost;
  EXPECT_EQ(Simulate(Cyclic(), cost, Options("nope", 4)).status().code(), StatusCode::kInvalidArgument);
  SimOptions o = Options("lru", 4);
  o.block_size = 24;
  EXPECT_EQ(Simulate(Cyclic(), cost, o).status().code(), StatusCode::kInvalidArgument);
  o = Options("lru", 0);
  EXPECT_EQ(Simulate(Cyclic(), cost, o).status().code(), StatusCode::kInvalidArgument);
}

TEST(SimTest, KvAwareRouterSendsAPrefixWhereItIsCached) {
  // Two instances; requests alternate between prefixes P and Q. Round robin
  // sends P to both instances (hits only from the third P on); kv-aware keeps
  // each prefix on one instance once it is cached there.
  std::vector<std::vector<uint64_t>> reqs;
  for (uint64_t i = 0; i < 8; ++i) reqs.push_back({1 + (i / 2) % 2, 100 + i});
  FixedCost cost;
  SimOptions o = Options("lru", 16);
  o.instances = 2;
  o.router = RouterKind::kKvAware;
  auto aware = Simulate(Sequential(reqs), cost, o);
  ASSERT_TRUE(aware.ok());
  o.router = RouterKind::kRoundRobin;
  auto rr = Simulate(Sequential(reqs), cost, o);
  ASSERT_TRUE(rr.ok());
  EXPECT_GT(aware->tiers[0].hit_tokens, rr->tiers[0].hit_tokens);
  EXPECT_EQ(aware->tiers[0].hit_tokens, 6u * 4);  // every request but the first P and the first Q
}

TEST(SimTest, PinCandidatesAndContextPercentiles) {
  // Prefix [1,2] is shared by four requests; [3] by two.
  Trace t = Sequential({{1, 2, 10}, {1, 2, 11}, {1, 2, 12}, {1, 2, 13}, {3, 14}, {3, 15}});
  auto pins = FindPinCandidates(t, 100, 10);
  ASSERT_EQ(pins.size(), 2u);
  EXPECT_EQ(pins[0].tokens, 8);
  EXPECT_EQ(pins[0].reuses, 3);
  EXPECT_EQ(pins[0].score, 24);
  EXPECT_EQ(pins[0].kv_bytes, 800);
  EXPECT_EQ(pins[1].tokens, 4);
  EXPECT_EQ(pins[1].reuses, 1);
  auto ctx = ContextPercentiles(t);
  ASSERT_EQ(ctx.size(), 1u);
  EXPECT_EQ(ctx[0].input_tokens.p50, 12);
  EXPECT_EQ(ctx[0].input_tokens.p99, 12);
  EXPECT_EQ(ctx[0].total_tokens.p50, 13);
}

TEST(SimTest, ReviewFindsTheHalvedHitRate) {
  FixedCost cost;
  ReviewOptions ro;
  ro.sweep_points = 3;
  auto v = RunReview(Cyclic(), cost, Options("lru", 8), ro);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->policies.size(), 3u);
  EXPECT_DOUBLE_EQ(v->baseline.TotalTokenHitRate(), 1.0 / 3);
  // Below 5 blocks the cyclic trace misses everything: 4 blocks is the
  // largest capacity at or under half the hit rate.
  EXPECT_EQ(v->halved_device_tokens, 16);
  EXPECT_EQ(v->halved.TotalTokenHitRate(), 0);
  EXPECT_GT(v->halved.ttft_s.p50, v->baseline.ttft_s.p50);
  EXPECT_FALSE(v->sweep.empty());
  EXPECT_NE(FormatReview(*v).find("6. TTFT when the hit rate halves"), std::string::npos);
}

// Random traces and options: accounting adds up and replays are deterministic.
TEST(SimRandomTest, InvariantsHoldOnRandomTraces) {
  std::mt19937_64 rng(7);
  FixedCost cost;
  const char* policies[] = {"lru", "priority-lru", "lfu"};
  for (int iter = 0; iter < 60; ++iter) {
    Trace t;
    t.block_tokens = 8;
    const int n = 1 + static_cast<int>(rng() % 60);
    Micros at = 0;
    for (int i = 0; i < n; ++i) {
      TraceRequest r;
      at += static_cast<Micros>(rng() % 50'000);
      r.arrival_us = at;
      r.input_tokens = 1 + static_cast<int32_t>(rng() % 60);
      r.output_tokens = static_cast<int32_t>(rng() % 20);
      const int blocks = (r.input_tokens + 7) / 8;
      for (int b = 0; b < blocks; ++b) r.block_ids.push_back(rng() % 3 == 0 ? 1000 + rng() : b * 10 + rng() % 3);
      if (rng() % 4 == 0) r.ranges.push_back({0, std::min(8, r.input_tokens), static_cast<Priority>(rng() % 101)});
      t.requests.push_back(r);
    }
    SimOptions o;
    o.policy = policies[rng() % 3];
    o.block_size = 1 << (rng() % 4);
    o.device_tokens = o.block_size * static_cast<int64_t>(4 + rng() % 40);
    o.host_tokens = rng() % 2 ? o.device_tokens * 4 : 0;
    o.disk_tokens = rng() % 2 ? o.device_tokens * 8 : 0;
    o.instances = 1 + static_cast<int32_t>(rng() % 3);
    o.router = static_cast<RouterKind>(rng() % 3);
    o.max_batch = 1 + static_cast<int32_t>(rng() % 8);
    auto a = Simulate(t, cost, o);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auto b = Simulate(t, cost, o);
    ASSERT_TRUE(b.ok());
    SCOPED_TRACE(::testing::Message() << "iteration " << iter << " policy " << o.policy << " B " << o.block_size);
    EXPECT_EQ(a->requests + a->rejected, n);
    EXPECT_LE(a->HitTokens(), a->query_tokens);
    uint64_t hit_blocks = 0;
    for (const TierHits& h : a->tiers) {
      EXPECT_EQ(h.hit_tokens, h.hit_blocks * static_cast<uint64_t>(o.block_size));
      hit_blocks += h.hit_blocks;
    }
    EXPECT_LE(hit_blocks, a->query_blocks);
    if (o.host_tokens == 0) EXPECT_EQ(a->tiers[1].hit_tokens, 0u);
    EXPECT_LE(a->durable_hit_tokens + a->oneoff_hit_tokens, a->tiers[0].hit_tokens);
    EXPECT_GE(a->ttft_s.p50, 0);
    EXPECT_LE(a->peak_in_use_blocks, o.device_tokens / o.block_size);
    // Deterministic.
    EXPECT_EQ(a->HitTokens(), b->HitTokens());
    EXPECT_EQ(a->ttft_samples_s, b->ttft_samples_s);
    EXPECT_EQ(a->makespan_s, b->makespan_s);
    EXPECT_EQ(a->preemptions, b->preemptions);
    EXPECT_EQ(a->offloaded_blocks, b->offloaded_blocks);
    EXPECT_EQ(a->onboarded_blocks, b->onboarded_blocks);
    if (o.host_tokens == 0 && o.disk_tokens == 0) EXPECT_EQ(a->offloaded_blocks + a->onboarded_blocks, 0u);
    EXPECT_GE(a->load.busy_seconds, 0);
  }
}

// The replay's defaults are the server's, and a departure is named.
TEST(SimTest, DefaultsAreServesAndDeparturesAreListed) {
  EXPECT_TRUE(ServeDifferences(SimOptions{}).empty());
  SimOptions o;
  o.policy = "lru";
  o.max_batch_tokens = 8192;
  const std::vector<std::string> d = ServeDifferences(o);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], "--policy lru (serve: priority-lru)");
  EXPECT_EQ(d[1], "--max-batch-tokens 8192 (serve: 256)");
}

Trace Stream(int n, Micros every, int32_t input, int32_t output) {
  Trace t;
  t.source = "stream";
  for (int i = 0; i < n; ++i) {
    TraceRequest r;
    r.arrival_us = every * i;
    r.input_tokens = input;
    r.output_tokens = output;
    t.requests.push_back(r);  // no content: every prompt unique
  }
  return t;
}

// Arrivals that bring ten times the work one instance can do are reported as
// such, with the instances that would keep up; a light stream is not.
TEST(SimTest, AnOverloadedReplaySaysByHowMuch) {
  FixedCost cost;  // 1 ms per prompt token: a 100-token prompt is 100 ms of work
  SimOptions o;
  o.device_tokens = 1 << 16;
  auto heavy = Simulate(Stream(50, 10'000, 100, 1), cost, o);  // one every 10 ms
  ASSERT_TRUE(heavy.ok()) << heavy.status().ToString();
  EXPECT_TRUE(heavy->load.overloaded);
  EXPECT_NEAR(heavy->load.busy_seconds, 5.0, 1e-6);
  EXPECT_NEAR(heavy->load.utilization, 5.0 / 0.49, 1e-6);
  EXPECT_EQ(heavy->load.instances_to_keep_up, 11);
  EXPECT_GT(heavy->load.waiting_at_last_arrival, 0);
  EXPECT_NE(FormatSimResult(*heavy).find("OVERLOADED"), std::string::npos);
  o.instances = 11;
  auto enough = Simulate(Stream(50, 10'000, 100, 1), cost, o);
  ASSERT_TRUE(enough.ok());
  EXPECT_FALSE(enough->load.overloaded);
  EXPECT_LE(enough->load.utilization, 1.0);
  o.instances = 1;
  auto light = Simulate(Stream(50, 1'000'000, 100, 1), cost, o);  // one a second
  ASSERT_TRUE(light.ok());
  EXPECT_FALSE(light->load.overloaded);
  EXPECT_NEAR(light->load.utilization, 5.0 / 49, 1e-6);
  EXPECT_EQ(FormatSimResult(*light).find("OVERLOADED"), std::string::npos);
}

// Instances that are never idle yet admit every arrival at once are not
// overloaded: a decode step costs the same at any batch (10 ms here), so
// busy time runs past the arrivals' span while nothing queues.
TEST(SimTest, BusyInstancesThatKeepUpAreNotOverloaded) {
  FixedCost cost;
  SimOptions o;
  o.device_tokens = 1 << 16;
  // One every 20 ms, each 50 decode steps: about 25 decoding at once.
  auto busy = Simulate(Stream(200, 20'000, 1, 50), cost, o);
  ASSERT_TRUE(busy.ok()) << busy.status().ToString();
  EXPECT_GT(busy->load.utilization, 1.0);  // busy from the first arrival past the last
  EXPECT_LE(busy->load.waiting_at_last_arrival, 1);
  EXPECT_FALSE(busy->load.overloaded);
  EXPECT_EQ(FormatSimResult(*busy).find("OVERLOADED"), std::string::npos);
  EXPECT_LT(busy->queue_s.p99, 0.05);
}

// A pool too small for every running request's output preempts (the
// engine's scheduler), and the tier chain's gate decides what goes down: by
// default blocks of default priority hit fewer than twice stay out.
TEST(SimTest, PressurePreemptsAndTheOffloadGateIsTheServers) {
  FixedCost cost;
  SimOptions o;
  o.block_size = 4;
  o.device_tokens = 24 * 4;
  o.max_batch = 4;
  o.host_tokens = 64 * 4;
  const Trace t = Stream(12, 0, 16, 30);  // all at once: 4 running, each growing to 12 blocks
  auto gated = Simulate(t, cost, o);
  ASSERT_TRUE(gated.ok()) << gated.status().ToString();
  EXPECT_EQ(gated->requests, 12);
  EXPECT_GT(gated->preemptions, 0u);
  EXPECT_EQ(gated->offloaded_blocks, 0u);  // unique prompts, never hit: not worth keeping
  o.offload_min_hits = 0;
  auto all = Simulate(t, cost, o);
  ASSERT_TRUE(all.ok());
  EXPECT_GT(all->offloaded_blocks, 0u);
}

// Jumping over stretches of alike steps is a shortcut, not a model: a
// replay must come out as stepping through every step does, request by
// request (instance, admission, first token, completion, hits,
// preemptions), with and without memory pressure and tiers, under each
// router.
TEST(SimTest, StretchesComeOutAsSteppingThroughEveryStep) {
  struct Case {
    SyntheticKind kind;
    RouterKind router;
    int64_t device_tokens;
    int64_t host_tokens = 0, disk_tokens = 0;
  };
  for (const Case& c : {Case{SyntheticKind::kChat, RouterKind::kLeastLoaded, int64_t{1} << 22},
                        Case{SyntheticKind::kChat, RouterKind::kKvAware, int64_t{1} << 22},
                        Case{SyntheticKind::kAgent, RouterKind::kRoundRobin, int64_t{1} << 22},
                        Case{SyntheticKind::kRag, RouterKind::kKvAware, int64_t{1} << 22},
                        Case{SyntheticKind::kChat, RouterKind::kLeastLoaded, int64_t{1} << 15},
                        Case{SyntheticKind::kAgent, RouterKind::kKvAware, int64_t{1} << 15},
                        Case{SyntheticKind::kAgent, RouterKind::kLeastLoaded, int64_t{1} << 15, int64_t{1} << 16,
                             int64_t{1} << 18}}) {
    SCOPED_TRACE(::testing::Message() << "kind " << int(c.kind) << ", router " << RouterName(c.router)
                                      << ", device tokens " << c.device_tokens);
    SyntheticOptions so;
    so.kind = c.kind;
    so.requests = 600;
    so.requests_per_second = 40;
    so.block_tokens = 16;
    auto trace = GenerateTrace(so);
    ASSERT_TRUE(trace.ok());
    SimOptions o;
    o.block_size = 16;
    o.device_tokens = c.device_tokens;
    o.host_tokens = c.host_tokens;
    o.disk_tokens = c.disk_tokens;
    o.instances = 3;
    o.router = c.router;
    o.record_requests = true;
    FixedCost cost;
    auto jumped = Simulate(*trace, cost, o);
    o.stretches = false;
    auto stepped = Simulate(*trace, cost, o);
    ASSERT_TRUE(jumped.ok() && stepped.ok());
    ASSERT_EQ(jumped->records.size(), stepped->records.size());
    std::map<int64_t, SimRequestRecord> by_index;
    for (const SimRequestRecord& r : stepped->records) by_index[r.index] = r;
    int differ = 0;
    for (const SimRequestRecord& a : jumped->records) {
      const SimRequestRecord& b = by_index.at(a.index);
      const bool same = a.instance == b.instance && std::abs(a.admitted_s - b.admitted_s) < 1e-6 &&
                        std::abs(a.first_token_s - b.first_token_s) < 1e-6 &&
                        std::abs(a.finished_s - b.finished_s) < 1e-6 && a.cached_tokens == b.cached_tokens &&
                        a.preemptions == b.preemptions;
      if (!same && differ++ < 5) {
        ADD_FAILURE() << "request " << a.index << ": jumped (instance " << a.instance << ", admitted " << a.admitted_s
                      << ", first token " << a.first_token_s << ", finished " << a.finished_s << ", cached "
                      << a.cached_tokens << ") stepped (instance " << b.instance << ", admitted " << b.admitted_s
                      << ", first token " << b.first_token_s << ", finished " << b.finished_s << ", cached "
                      << b.cached_tokens << ")";
      }
    }
    EXPECT_EQ(differ, 0);
    EXPECT_EQ(jumped->evictions, stepped->evictions);
    EXPECT_EQ(jumped->preemptions, stepped->preemptions);
    EXPECT_EQ(jumped->onboarded_blocks, stepped->onboarded_blocks);
    EXPECT_EQ(jumped->offloaded_blocks, stepped->offloaded_blocks);
    std::cerr << RouterName(c.router) << ", " << c.device_tokens << " tokens: " << jumped->evictions << " evictions, "
              << jumped->preemptions << " preemptions, " << jumped->onboarded_blocks << " blocks onboarded\n";
  }
}

}  // namespace
}  // namespace kvstack::sim
