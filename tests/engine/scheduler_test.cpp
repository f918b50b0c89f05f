// The scheduler alone, with a stand-in forward pass and no model file: a
// metadata-only KV cache, a "model" whose next token is a hash of the whole
// sequence, and a shadow of every KV slot the forward pass would write. Each
// step checks that the slots a chunk attends to (its sequence's earlier
// tokens, through its block table) hold exactly those tokens, so a wrong
// block table, a bad prefix reuse or a lost recompute shows as a wrong slot.
#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine/scheduler.h"
#include "kvstack/kv_cache.h"

namespace kvstack::engine {
namespace {

constexpr int32_t kB = 4;  // tokens per block

std::unique_ptr<KvCache> MakeCache(int32_t blocks, const Clock* clock = nullptr) {
  KvCacheConfig cfg;
  cfg.clock = clock;
  cfg.num_blocks = blocks;
  cfg.shape = KvShape{.num_layers = 0, .num_kv_heads = 0, .head_dim = 0, .block_size = kB};
  cfg.storage = KvStorageMode::kMetadataOnly;
  auto cache = KvCache::Create(cfg);
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  return std::move(cache).value();
}

// The stand-in model: the next token is a function of the whole sequence.
Token NextToken(const std::vector<Token>& seq) {
  uint64_t h = 1469598103934665603ull;
  for (Token t : seq) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
  return static_cast<Token>(1 + h % 997);
}

std::vector<Token> Prompt(int n, int seed) {
  std::vector<Token> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<Token>(1 + (seed * 131 + i * 7) % 997);
  return t;
}

// Runs the scheduler as Engine does: schedule, "compute" every chunk (write
// its tokens into the shadow KV slots after checking what it reads), sample
// a token where the chunk reaches the end, finish at max_tokens.
class Driver {
 public:
  Driver(int32_t blocks, SchedulerOptions o, const Clock* clock = nullptr)
      : cache_(MakeCache(blocks, clock)), sched_(cache_.get(), o) {}

  void Add(RequestId id, std::vector<Token> prompt, int max_tokens, Priority priority = kDefaultPriority) {
    ScheduledRequest r;
    r.id = id;
    r.tokens = std::move(prompt);
    r.priority = priority;
    ASSERT_TRUE(sched_.Add(std::move(r)).ok());
    max_tokens_[id] = max_tokens;
  }

  // One step; returns its plan.
  std::vector<ScheduledChunk> Step() {
    std::vector<ScheduledChunk> plan = sched_.Schedule();
    for (const ScheduledChunk& c : plan) {
      const ScheduledRequest* r = sched_.Find(c.id);
      EXPECT_NE(r, nullptr);
      if (r == nullptr) continue;
      EXPECT_EQ(c.begin, r->computed) << "request " << c.id << ": a chunk must start where its KV ends";
      const std::span<const BlockId> table = sched_.BlockTable(c.id);
      // What attention reads: every earlier position, through the table.
      for (int32_t p = 0; p < c.begin; ++p) {
        EXPECT_EQ(Slot(table, p), r->tokens[static_cast<size_t>(p)])
            << "request " << c.id << " position " << p << ": its KV slot holds another token";
      }
      for (int32_t p = c.begin; p < c.begin + c.count; ++p) Slot(table, p) = r->tokens[static_cast<size_t>(p)];
      sched_.Computed(c);
      ++computed_tokens_[c.id];
      computed_total_[c.id] += c.count;
      if (c.want_logits) {
        EXPECT_EQ(c.begin + c.count, static_cast<int32_t>(r->tokens.size()));
        const Token next = NextToken(r->tokens);
        if (static_cast<int>(r->tokens.size()) - r->prompt_len + 1 >= max_tokens_[c.id]) {
          std::vector<Token> out(r->tokens.begin() + r->prompt_len, r->tokens.end());
          out.push_back(next);
          outputs_[c.id] = out;
          EXPECT_TRUE(sched_.Finish(c.id).ok());
        } else {
          sched_.AppendToken(c.id, next);
        }
      }
    }
    ++steps_;
    return plan;
  }

  int RunToEnd(int max_steps = 10000) {
    int n = 0;
    while (sched_.HasWork() && n < max_steps) {
      Step();
      ++n;
    }
    EXPECT_FALSE(sched_.HasWork()) << "still working after " << max_steps << " steps";
    return n;
  }

  Scheduler& sched() { return sched_; }
  KvCache& cache() { return *cache_; }
  const std::map<RequestId, std::vector<Token>>& outputs() const { return outputs_; }
  int64_t computed_total(RequestId id) const { return computed_total_.count(id) ? computed_total_.at(id) : 0; }
  int steps() const { return steps_; }

 private:
  Token& Slot(std::span<const BlockId> table, int32_t p) {
    return kv_[{table[static_cast<size_t>(p / kB)], p % kB}];
  }

  std::unique_ptr<KvCache> cache_;
  Scheduler sched_;
  std::map<std::pair<BlockId, int32_t>, Token> kv_;  // the shadow KV slots
  std::map<RequestId, int> max_tokens_;
  std::map<RequestId, int> computed_tokens_;
  std::map<RequestId, int64_t> computed_total_;
  std::map<RequestId, std::vector<Token>> outputs_;
  int steps_ = 0;
};

// The reference: each request alone, in a pool it cannot exhaust.
std::vector<Token> Alone(const std::vector<Token>& prompt, int max_tokens) {
  std::vector<Token> seq = prompt;
  std::vector<Token> out;
  for (int i = 0; i < max_tokens; ++i) {
    out.push_back(NextToken(seq));
    seq.push_back(out.back());
  }
  return out;
}

std::vector<std::tuple<RequestId, int32_t, int32_t, bool>> Chunks(const std::vector<ScheduledChunk>& plan) {
  std::vector<std::tuple<RequestId, int32_t, int32_t, bool>> out;
  for (const ScheduledChunk& c : plan) out.emplace_back(c.id, c.begin, c.count, c.want_logits);
  return out;
}

using C = std::tuple<RequestId, int32_t, int32_t, bool>;

// A prompt longer than the budget is computed in budget-sized chunks; logits
// only on the chunk that reaches its end.
TEST(SchedulerTest, ChunkedPrefillSplitsALongPromptAcrossSteps) {
  Driver d(64, {.max_batch_tokens = 8, .max_running = 4});
  d.Add(1, Prompt(20, 1), 2);
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 0, 8, false}}));
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 8, 8, false}}));
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 16, 4, true}}));
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 20, 1, true}}));  // decode
  EXPECT_TRUE(d.Step().empty());
  EXPECT_EQ(d.outputs().at(1), Alone(Prompt(20, 1), 2));
}

// The budget goes to running requests first (oldest first: decode tokens and
// prompt chunks), then to waiting ones in arrival order; none overtakes.
TEST(SchedulerTest, BudgetGoesToRunningRequestsFirstThenWaitingInOrder) {
  Driver d(64, {.max_batch_tokens = 8, .max_running = 4});
  d.Add(1, Prompt(10, 1), 3);
  d.Add(2, Prompt(10, 2), 3);
  d.Add(3, Prompt(3, 3), 3);
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 0, 8, false}}));
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 8, 2, true}, {2, 0, 6, false}}));
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 10, 1, true}, {2, 6, 4, true}, {3, 0, 3, true}}));
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 11, 1, true}, {2, 10, 1, true}, {3, 3, 1, true}}));
  d.RunToEnd();
  for (RequestId id : {1, 2, 3}) {
    EXPECT_EQ(d.outputs().at(id), Alone(Prompt(id == 3 ? 3 : 10, static_cast<int>(id)), 3)) << id;
  }
}

// max_running caps the batch even when budget and blocks remain.
TEST(SchedulerTest, MaxRunningCapsTheBatch) {
  Driver d(64, {.max_batch_tokens = 64, .max_running = 2});
  for (RequestId id = 1; id <= 3; ++id) d.Add(id, Prompt(4, static_cast<int>(id)), 2);
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 0, 4, true}, {2, 0, 4, true}}));
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{1, 4, 1, true}, {2, 4, 1, true}}));  // both finish here
  EXPECT_EQ(Chunks(d.Step()), (std::vector<C>{{3, 0, 4, true}}));
}

// When a decoding request needs a block and none is free, the victim is the
// lowest priority, and among equals the newest; it goes back to wait first.
TEST(SchedulerTest, PreemptsLowestPriorityThenNewest) {
  // Four one-block prompts fill the four blocks; the first decode token of
  // each needs a fifth.
  Driver d(4, {.max_batch_tokens = 64, .max_running = 8});
  d.Add(1, Prompt(4, 1), 4, 50);  // oldest
  d.Add(2, Prompt(4, 2), 4, 10);
  d.Add(3, Prompt(4, 3), 4, 10);
  d.Add(4, Prompt(4, 4), 4, 50);  // newest
  EXPECT_EQ(d.Step().size(), 4u);
  const auto plan = d.Step();
  // 1 needed a block: 3 went (priority 10 and newer than 2). Then 2 needed
  // one: of 1 and 4 (both 50), the newer, 4, went.
  EXPECT_EQ(d.sched().Find(3)->state, RequestState::kWaiting);
  EXPECT_EQ(d.sched().Find(4)->state, RequestState::kWaiting);
  EXPECT_EQ(d.sched().Find(1)->state, RequestState::kRunning);
  EXPECT_EQ(d.sched().Find(2)->state, RequestState::kRunning);
  EXPECT_EQ(d.sched().Find(3)->preemptions, 1);
  EXPECT_EQ(d.sched().Find(4)->preemptions, 1);
  EXPECT_EQ(d.sched().stats().preemptions, 2u);
  EXPECT_EQ(Chunks(plan), (std::vector<C>{{1, 4, 1, true}, {2, 4, 1, true}}));
  d.RunToEnd();
  for (RequestId id = 1; id <= 4; ++id) EXPECT_EQ(d.outputs().at(id), Alone(Prompt(4, static_cast<int>(id)), 4)) << id;
}

// A preempted request is recomputed: from the prefix cache where its blocks
// survived, from scratch otherwise; its output is what it would have been
// alone, and its KV slots are right (checked by the driver at every step).
TEST(SchedulerTest, PreemptedRequestIsRecomputedAndItsOutputIsUnchanged) {
  Driver d(6, {.max_batch_tokens = 64, .max_running = 8});
  d.Add(1, Prompt(8, 1), 6, 50);
  d.Add(2, Prompt(8, 2), 6, 10);
  d.Add(3, Prompt(7, 3), 6, 90);
  d.RunToEnd();
  EXPECT_GE(d.sched().stats().preemptions, 1u);
  EXPECT_EQ(d.outputs().at(1), Alone(Prompt(8, 1), 6));
  EXPECT_EQ(d.outputs().at(2), Alone(Prompt(8, 2), 6));
  EXPECT_EQ(d.outputs().at(3), Alone(Prompt(7, 3), 6));
  // The victim (lowest priority) computed more tokens than it holds: its
  // lost KV was computed again.
  EXPECT_GT(d.computed_total(2), 8 + 6 - 1);
}

// A recomputed request's full blocks that are still cached are not computed
// again: its first chunk after readmission starts at the cache hit, and the
// driver checks that those reused slots hold its tokens.
TEST(SchedulerTest, RecomputeStartsFromThePrefixCache) {
  // Six blocks. 1 (priority 10) holds 2 prompt blocks, 2 (priority 90) 3;
  // 1's first decode token takes the last free block, so 2's needs 1's.
  Driver d(6, {.max_batch_tokens = 64, .max_running = 8});
  d.Add(1, Prompt(8, 1), 8, 10);
  d.Add(2, Prompt(12, 2), 4, 90);
  std::optional<ScheduledChunk> first_after;
  for (int i = 0; i < 100 && d.sched().HasWork() && !first_after; ++i) {
    const bool preempted = d.sched().Find(1) && d.sched().Find(1)->preemptions > 0 &&
                           d.sched().Find(1)->state == RequestState::kWaiting;
    for (const ScheduledChunk& c : d.Step()) {
      if (preempted && c.id == 1) first_after = c;
    }
  }
  ASSERT_TRUE(first_after.has_value()) << "request 1 was never preempted and readmitted";
  EXPECT_EQ(first_after->begin, 8) << "its two cached prompt blocks must not be computed again";
  EXPECT_EQ(first_after->count, 1);  // only the generated token that had no KV
  d.RunToEnd();
  EXPECT_EQ(d.outputs().at(1), Alone(Prompt(8, 1), 8));
  EXPECT_EQ(d.outputs().at(2), Alone(Prompt(12, 2), 4));
}

// A steady stream of high-priority arrivals cannot starve a low-priority
// request: waiting requests are admitted in order (a preempted one first),
// so it finishes, and no request that arrived after it is admitted before it.
TEST(SchedulerTest, LowPriorityRequestIsNotStarvedByAStreamOfHighPriorityOnes) {
  Driver d(12, {.max_batch_tokens = 16, .max_running = 4});
  RequestId next = 1;
  d.Add(next++, Prompt(8, 0), 6, 90);
  const RequestId low = next++;
  d.Add(low, Prompt(8, 1), 6, 0);
  int steps = 0;
  while (!d.outputs().count(low) && steps < 2000) {
    if (steps % 2 == 0 && next < 200) {
      d.Add(next, Prompt(8, static_cast<int>(next)), 6, 90);
      ++next;
    }
    d.Step();
    ++steps;
  }
  ASSERT_TRUE(d.outputs().count(low)) << "the low-priority request never finished in " << steps << " steps";
  EXPECT_EQ(d.outputs().at(low), Alone(Prompt(8, 1), 6));
  // It finished while the stream still ran: later arrivals waited their turn.
  EXPECT_LT(next, 200u) << "it finished only after the stream stopped";
  d.RunToEnd();
  for (RequestId id = 1; id < next; ++id) ASSERT_TRUE(d.outputs().count(id)) << id;
}

// A stretch run at once (what the simulator does) leaves the
// scheduler and the cache as stepping through it would: random workloads
// with shared prefixes, priorities, preemption and arrivals mid-run, run
// side by side with the stepping Driver (which checks every KV slot read),
// compared after every stretch.
TEST(SchedulerStretchTest, AStretchLeavesWhatSteppingLeaves) {
  std::mt19937 rng(11);
  int64_t stretched_steps = 0, prompt_stretches = 0;
  for (int iter = 0; iter < 150; ++iter) {
    SCOPED_TRACE(::testing::Message() << "iteration " << iter);
    // Room for any one request whole (prompt up to 33 tokens, output up to
    // 30: 16 blocks); less than several at once, so they preempt.
    const int32_t blocks = 17 + static_cast<int32_t>(rng() % 40);
    const SchedulerOptions o{.max_batch_tokens = 4 + static_cast<int32_t>(rng() % 40),
                             .max_running = 1 + static_cast<int32_t>(rng() % 8)};
    struct Arrival {
      int step;
      RequestId id;
      std::vector<Token> prompt;
      int max_tokens;
      Priority priority;
    };
    std::vector<Arrival> arrivals;
    int at = 0;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      at += static_cast<int>(rng() % 6);
      std::vector<Token> prompt = Prompt(1 + static_cast<int>(rng() % 6) * kB, static_cast<int>(rng() % 3));
      for (int extra = static_cast<int>(rng() % 10); extra > 0; --extra) prompt.push_back(static_cast<Token>(rng() % 997));
      arrivals.push_back({at, static_cast<RequestId>(i + 1), prompt, 1 + static_cast<int>(rng() % 30),
                          static_cast<Priority>(rng() % 3 == 0 ? 80 : kDefaultPriority)});
    }
    ManualClock ref_clock, clock;
    Driver ref(blocks, o, &ref_clock);
    auto cache = MakeCache(blocks, &clock);
    Scheduler s(cache.get(), o);
    std::map<RequestId, int> max_tokens;
    std::map<RequestId, std::vector<Token>> outputs;
    size_t next = 0, ref_next = 0;
    int steps = 0;
    const auto finish_done = [&](RequestId id) {
      const ScheduledRequest* r = s.Find(id);
      if (static_cast<int>(r->tokens.size()) - r->prompt_len < max_tokens[id]) return;
      outputs[id].assign(r->tokens.begin() + r->prompt_len, r->tokens.end());
      ASSERT_TRUE(s.Finish(id).ok());
    };
    while (next < arrivals.size() || s.HasWork()) {
      ASSERT_LT(steps, 20000) << "no progress";
      while (next < arrivals.size() && arrivals[next].step <= steps) {
        const Arrival& a = arrivals[next++];
        ScheduledRequest r;
        r.id = a.id;
        r.tokens = a.prompt;
        r.priority = a.priority;
        ASSERT_TRUE(s.Add(std::move(r)).ok());
        max_tokens[a.id] = a.max_tokens;
      }
      clock.Set(steps);
      int64_t most = next < arrivals.size() ? arrivals[next].step - steps : int64_t{1} << 30;
      for (RequestId id : s.running()) {
        const ScheduledRequest* r = s.Find(id);
        most = std::min<int64_t>(most, max_tokens[id] - (static_cast<int>(r->tokens.size()) - r->prompt_len));
      }
      const Scheduler::Stretch st = s.PlanStretch(most);
      const int64_t k = st.steps;
      if (k > 0) {
        if (st.prompt) prompt_stretches += k;
        s.RunStretch(st, [&](RequestId, int64_t count, std::vector<Token>& tokens) {
          for (int64_t i = 0; i < count; ++i) tokens.push_back(NextToken(tokens));
        });
        steps += static_cast<int>(k);
        stretched_steps += k;
        const std::vector<RequestId> running = s.running();
        for (RequestId id : running) finish_done(id);
      } else {
        const std::vector<ScheduledChunk> plan = s.Schedule();
        for (const ScheduledChunk& c : plan) {
          s.Computed(c);
          if (!c.want_logits) continue;
          s.AppendToken(c.id, NextToken(s.Find(c.id)->tokens));
          finish_done(c.id);
        }
        ++steps;
      }
      // The stepping reference catches up, one step at a time.
      while (ref.steps() < steps) {
        while (ref_next < arrivals.size() && arrivals[ref_next].step <= ref.steps()) {
          const Arrival& a = arrivals[ref_next++];
          ref.Add(a.id, a.prompt, a.max_tokens, a.priority);
        }
        ref_clock.Set(ref.steps());
        ref.Step();
      }
      ASSERT_EQ(ref.sched().stats().preemptions, s.stats().preemptions) << "at step " << steps;
      ASSERT_EQ(ref.sched().running(), s.running()) << "at step " << steps;
      ASSERT_EQ(ref.sched().waiting(), s.waiting()) << "at step " << steps;
      for (RequestId id : s.running()) {
        const ScheduledRequest* a = ref.sched().Find(id);
        const ScheduledRequest* b = s.Find(id);
        ASSERT_EQ(a->tokens, b->tokens) << "request " << id << " at step " << steps;
        ASSERT_EQ(a->computed, b->computed) << "request " << id << " at step " << steps;
        ASSERT_EQ(a->cached_tokens, b->cached_tokens) << "request " << id;
      }
      const CacheMetrics ma = ref.cache().Metrics(), mb = cache->Metrics();
      ASSERT_EQ(ref.cache().num_available_blocks(), cache->num_available_blocks()) << "at step " << steps;
      ASSERT_EQ(ma.cached_blocks, mb.cached_blocks) << "at step " << steps;
      ASSERT_EQ(ma.evictions, mb.evictions) << "at step " << steps;
    }
    EXPECT_EQ(outputs, ref.outputs());
    EXPECT_EQ(s.stats().steps, ref.sched().stats().steps);
  }
  // The workloads did have stretches to jump over, prompt chunks among them.
  EXPECT_GT(stretched_steps, 1000);
  EXPECT_GT(prompt_stretches, 100);
}

}  // namespace
}  // namespace kvstack::engine
