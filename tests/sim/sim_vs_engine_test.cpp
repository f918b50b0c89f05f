// The simulator against the engine it models: one request stream through
// Engine (a tiny generated model, a clock that advances a fixed 10 ms per
// step) and through Simulate (a cost model of 10 ms per step), under a
// device pool small enough to preempt, with a host tier and a lower tier
// below it. Request by request, first tokens (admission order and timing),
// completions, preemptions, prefix hits and onboarded tokens must be equal,
// and so must the blocks offloaded and onboarded in all.
//
// The lower tier is a RAM tier standing in for the disk on both sides: the
// engine's disk tier completes its reads on I/O threads, a step sooner or
// later depending on the machine, which the simulator models as a transfer
// time; equality needs reads that finish the step they are issued.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "kvstack/engine.h"
#include "common/process_temp_file.h"
#include "kvstack/model_gen.h"
#include "kvstack/sim.h"
#include "kvstack/tier_chain.h"
#include "kvstack/tiers.h"

namespace kvstack::sim {
namespace {

namespace fs = std::filesystem;

constexpr double kStepSeconds = 0.010;
constexpr int32_t kBlock = 16;

// Every step costs 10 ms whatever it computes; a transfer from a RAM tier
// takes no time (the engine's RAM tiers finish their reads within the call).
class FixedStepCost final : public CostModel {
 public:
  double PrefillSeconds(int64_t tokens, int64_t) const override { return tokens > 0 ? kStepSeconds : 0; }
  double DecodeStepSeconds(int64_t batch, int64_t) const override { return batch > 0 ? kStepSeconds : 0; }
  double StepSeconds(const StepWork&) const override { return kStepSeconds; }
  double OnboardSeconds(sim::Tier, int64_t) const override { return 0; }
  int64_t KvBytesPerToken() const override { return 0; }
  std::vector<std::string> Describe() const override { return {"10 ms per step"}; }
};

const std::string& ModelPath() {
  static const kvstack::testing::ProcessTempFile file("kvstack-simvsengine", ".gguf");
  static const bool written = [] {
    GenModelSpec spec;
    spec.n_ctx = 1024;
    const Status s = WriteGenModel(spec, file.path());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return s.ok();
  }();
  (void)written;
  return file.path();
}

struct Arrival {
  int step = 0;  // arrives at step x 10 ms
  std::vector<Token> prompt;
  int32_t output = 1;
  Priority priority = kDefaultPriority;
};

// Long shared prefixes (a few system prompts) with short unique tails,
// arriving in bursts: the pool fills, decoding requests preempt, and evicted
// prefixes come back from the tiers.
std::vector<Arrival> Workload(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<Token>> prefixes(16);
  for (auto& p : prefixes) {
    p.resize(static_cast<size_t>(kBlock * (2 + rng() % 5)));
    for (Token& t : p) t = static_cast<Token>(3 + rng() % 240);
  }
  std::vector<Arrival> a;
  int step = 0;
  for (int i = 0; i < 64; ++i) {
    step += static_cast<int>(rng() % 4 == 0 ? rng() % 12 : 0);
    Arrival r;
    r.step = step;
    r.prompt = prefixes[rng() % prefixes.size()];
    for (int k = 1 + static_cast<int>(rng() % 20); k > 0; --k) r.prompt.push_back(static_cast<Token>(3 + rng() % 240));
    r.output = 1 + static_cast<int32_t>(rng() % 100);
    r.priority = rng() % 5 == 0 ? Priority{70} : kDefaultPriority;
    a.push_back(std::move(r));
  }
  return a;
}

// Prefetch on queueing, directed: two popular prefixes P and Q are pushed
// out of the device by a long prompt (P first, so the 4-block host tier
// keeps Q and only the lower tier keeps P), and a request for P arrives
// while that prompt runs: its blocks are prefetched while it waits.
std::vector<Arrival> PrefetchWorkload() {
  std::mt19937_64 rng(99);
  const auto tokens = [&](int n) {
    std::vector<Token> t(static_cast<size_t>(n));
    for (Token& x : t) x = static_cast<Token>(3 + rng() % 240);
    return t;
  };
  const std::vector<Token> p = tokens(4 * kBlock), q = tokens(4 * kBlock);
  const auto with_tail = [&](const std::vector<Token>& prefix) {
    std::vector<Token> t = prefix;
    for (Token x : tokens(5)) t.push_back(x);
    return t;
  };
  std::vector<Arrival> a;
  for (int i = 0; i < 3; ++i) a.push_back({i * 10, with_tail(p), 2, kDefaultPriority});
  for (int i = 0; i < 3; ++i) a.push_back({30 + i * 10, with_tail(q), 2, kDefaultPriority});
  a.push_back({60, tokens(30 * kBlock), 2, kDefaultPriority});
  a.push_back({61, with_tail(p), 2, kDefaultPriority});
  return a;
}

struct Outcome {
  int64_t first_token_ms = 0, finished_ms = 0;
  int32_t cached_tokens = 0, onboarded_tokens = 0, preemptions = 0;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{first token " << o.first_token_ms << " ms, finished " << o.finished_ms << " ms, cached "
            << o.cached_tokens << ", onboarded " << o.onboarded_tokens << ", preemptions " << o.preemptions << "}";
}

struct Totals {
  uint64_t preemptions = 0, offloaded = 0, onboarded = 0, prefetched = 0;
};

constexpr int32_t kDeviceBlocks = 32;
constexpr int64_t kHostBlocks = 4;
constexpr int64_t kLowerBlocks = 256;

Result<std::unique_ptr<::kvstack::Tier>> RamTier(size_t block_bytes, int64_t blocks, const Clock* clock, const char* name) {
  HostTierOptions h;
  h.bytes_per_block = block_bytes;
  h.capacity_blocks = blocks;
  h.clock = clock;
  h.name = name;
  return MakeHostTier(h);
}

std::map<size_t, Outcome> RunEngine(const std::vector<Arrival>& arrivals, Totals* totals, bool tiers = true) {
  ManualClock clock;
  EngineOptions o;
  o.model_path = ModelPath();
  o.threads = 1;
  o.num_blocks = kDeviceBlocks;
  o.block_size = kBlock;
  o.max_batch_tokens = 64;
  o.max_running = 6;
  o.clock = &clock;
  o.onboard_only_when_faster = false;  // the simulator's cost model says onboarding wins anyway
  if (tiers) o.make_tiers = [&clock](size_t block_bytes, const std::string&) -> Result<std::unique_ptr<TierChain>> {
    TierChainOptions c;
    c.inline_lower_writes = true;  // as the simulator's chain: no writer thread timing
    auto host = RamTier(block_bytes, kHostBlocks, &clock, "host");
    if (!host.ok()) return host.status();
    auto lower = RamTier(block_bytes, kLowerBlocks, &clock, "disk");
    if (!lower.ok()) return lower.status();
    c.tiers.push_back(std::move(host).value());
    c.tiers.push_back(std::move(lower).value());
    return TierChain::Create(std::move(c));
  };
  auto made = Engine::Create(o);
  EXPECT_TRUE(made.ok()) << made.status().ToString();
  if (!made.ok()) return {};
  Engine& e = **made;
  std::map<RequestId, size_t> index_of;
  std::map<size_t, Outcome> out;
  size_t next = 0;
  std::vector<GenerationEvent> events;
  // Time as the simulator keeps it: a batch takes 10 ms, stamped with its
  // start here (the simulator stamps tokens at the step's end: +10 ms below);
  // a step that only waited for tier reads takes none; an idle engine jumps
  // to the next arrival.
  // Engine time starts at 1 s: a first token at 0 would read as "none yet".
  constexpr Micros kStart = 1'000'000;
  Micros now = kStart;
  for (int guard = 0; next < arrivals.size() || e.HasWork(); ++guard) {
    EXPECT_LT(guard, 100000) << "the engine made no progress";
    if (guard >= 100000) break;
    while (next < arrivals.size() && kStart + static_cast<Micros>(arrivals[next].step) * 10'000 <= now) {
      GenerationRequest r;
      r.prompt = arrivals[next].prompt;
      r.sampling.max_tokens = arrivals[next].output;
      r.priority = arrivals[next].priority;
      r.ignore_eos = true;
      auto id = e.Submit(std::move(r));
      EXPECT_TRUE(id.ok()) << id.status().ToString();
      index_of[*id] = next++;
    }
    if (!e.HasWork()) {
      now = kStart + static_cast<Micros>(arrivals[next].step) * 10'000;
      continue;
    }
    clock.Set(now);
    const uint64_t batches = e.batches();
    events.clear();
    EXPECT_TRUE(e.Step(&events).ok());
    if (e.batches() > batches) now += 10'000;
    for (const GenerationEvent& ev : events) {
      if (ev.finish == FinishReason::kNone) continue;
      const RequestMetrics& m = ev.metrics;
      out[index_of.at(ev.id)] = Outcome{(m.first_token_at - kStart) / 1000 + 10, (m.finished_at - kStart) / 1000 + 10,
                                        m.cached_tokens, m.onboarded_tokens, m.preemptions};
    }
  }
  totals->preemptions = e.preemptions();
  totals->offloaded = e.onboard_metrics().offloaded_blocks;
  totals->onboarded = e.onboard_metrics().onboarded_blocks;
  totals->prefetched = e.onboard_metrics().prefetched_blocks;
  return out;
}

std::map<size_t, Outcome> RunSim(const std::vector<Arrival>& arrivals, Totals* totals, bool tiers = true) {
  Trace t;
  t.source = "sim-vs-engine";
  for (const Arrival& a : arrivals) {
    TraceRequest r;
    r.arrival_us = static_cast<Micros>(a.step) * 10'000;
    r.tokens = a.prompt;
    r.input_tokens = static_cast<int32_t>(a.prompt.size());
    r.output_tokens = a.output;
    r.request_priority = a.priority;
    t.requests.push_back(std::move(r));
  }
  SimOptions o;
  o.block_size = kBlock;
  o.device_tokens = int64_t{kDeviceBlocks} * kBlock;
  o.host_tokens = tiers ? kHostBlocks * kBlock : 0;
  o.disk_tokens = tiers ? kLowerBlocks * kBlock : 0;
  o.max_batch_tokens = 64;
  o.max_batch = 6;
  o.onboard_only_when_faster = false;
  o.record_requests = true;
  FixedStepCost cost;
  auto r = Simulate(t, cost, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return {};
  std::map<size_t, Outcome> out;
  const double t0 = arrivals.empty() ? 0 : arrivals[0].step * kStepSeconds;  // records count from the first arrival
  for (const SimRequestRecord& rec : r->records) {
    out[static_cast<size_t>(rec.index)] =
        Outcome{std::llround((t0 + rec.first_token_s) * 1e3), std::llround((t0 + rec.finished_s) * 1e3),
                rec.cached_tokens, rec.onboarded_tokens, rec.preemptions};
  }
  EXPECT_EQ(r->rejected, 0);
  totals->preemptions = r->preemptions;
  totals->offloaded = r->offloaded_blocks;
  totals->onboarded = r->onboarded_blocks;
  totals->prefetched = r->prefetched_blocks;
  return out;
}

void ExpectEqualRequestByRequest(const std::vector<Arrival>& arrivals, const std::map<size_t, Outcome>& engine,
                                 const std::map<size_t, Outcome>& sim) {
  ASSERT_EQ(engine.size(), arrivals.size());
  ASSERT_EQ(sim.size(), arrivals.size());
  for (size_t i = 0; i < arrivals.size(); ++i) {
    EXPECT_EQ(sim.at(i), engine.at(i)) << "request " << i << " (sim, then engine); arrives at " << arrivals[i].step * 10
                                       << " ms, prompt " << arrivals[i].prompt.size() << ", output " << arrivals[i].output;
  }
}

TEST(SimVsEngineTest, TheSimulatorSchedulesAndTiersRequestByRequestAsTheEngine) {
  for (uint64_t seed : {0, 1, 2, 3}) {
    SCOPED_TRACE(::testing::Message() << "workload seed " << seed << (seed == 0 ? " (directed: prefetch)" : ""));
    const std::vector<Arrival> arrivals = seed == 0 ? PrefetchWorkload() : Workload(seed);
    Totals engine_totals, sim_totals;
    const std::map<size_t, Outcome> engine = RunEngine(arrivals, &engine_totals);
    const std::map<size_t, Outcome> sim = RunSim(arrivals, &sim_totals);
    ExpectEqualRequestByRequest(arrivals, engine, sim);
    EXPECT_EQ(sim_totals.preemptions, engine_totals.preemptions);
    EXPECT_EQ(sim_totals.offloaded, engine_totals.offloaded);
    EXPECT_EQ(sim_totals.onboarded, engine_totals.onboarded);
    EXPECT_EQ(sim_totals.prefetched, engine_totals.prefetched);
    std::cerr << "seed " << seed << ": " << engine_totals.preemptions << " preemptions, " << engine_totals.offloaded
              << " blocks offloaded, " << engine_totals.onboarded << " onboarded, " << engine_totals.prefetched
              << " prefetched, equal on both sides\n";
    // The workloads exercise what they claim to: preemption, offload and
    // onboarding (random), prefetch and onboarding of what it brought up
    // (directed).
    EXPECT_GT(engine_totals.offloaded, 0u);
    EXPECT_GT(engine_totals.onboarded, 0u);
    if (seed == 0) {
      EXPECT_GT(engine_totals.prefetched, 0u);
    } else {
      EXPECT_GT(engine_totals.preemptions, 0u);
    }
  }
}

// Without tiers the simulator hands its scheduler a backlog only as far as
// one step can admit (a queue holds no prompts it cannot reach yet): the
// bursts here queue far deeper than that, and every decision must still be
// the engine's, which holds its whole queue.
TEST(SimVsEngineTest, ADeepQueueIsScheduledAsTheEngineDoesWithoutTiers) {
  for (uint64_t seed : {1, 2, 3, 4}) {
    SCOPED_TRACE(::testing::Message() << "workload seed " << seed);
    const std::vector<Arrival> arrivals = Workload(seed);
    Totals engine_totals, sim_totals;
    const std::map<size_t, Outcome> engine = RunEngine(arrivals, &engine_totals, /*tiers=*/false);
    const std::map<size_t, Outcome> sim = RunSim(arrivals, &sim_totals, /*tiers=*/false);
    ExpectEqualRequestByRequest(arrivals, engine, sim);
    if (engine.size() != arrivals.size()) continue;
    EXPECT_EQ(sim_totals.preemptions, engine_totals.preemptions);
    EXPECT_GT(engine_totals.preemptions, 0u);
    // Requests between arrival and first token at once: at most 6 of them
    // run (max_running), so more than 6 + 7 means the engine's queue was
    // deeper than the 7 (max_running + 1) the simulator hands over.
    size_t deepest = 0;
    for (size_t i = 0; i < arrivals.size(); ++i) {
      const int64_t t = arrivals[i].step * 10;
      size_t in_flight = 0;
      for (size_t j = 0; j < arrivals.size(); ++j) {
        in_flight += arrivals[j].step * 10 <= t && engine.at(j).first_token_ms > t;
      }
      deepest = std::max(deepest, in_flight);
    }
    EXPECT_GT(deepest, 13u);
  }
}

}  // namespace
}  // namespace kvstack::sim
