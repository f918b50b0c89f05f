// The discrete-event replay: requests arrive, are routed to an instance, and
// each instance runs the engine's own Scheduler over a metadata-only KvCache
// (and, with lower tiers, SimTiers); the cost model times every step.
//
// What is production code here: admission, chunked prefill, the decode
// budget, preemption and recompute (engine::Scheduler); prefix matching,
// retention and eviction (KvCache); offload, tier eviction, onboarding and
// prefetch decisions (TierChain of metadata-only tiers, tier_policy.h); the
// kv-aware router (Router over the instances' events). What is modelled: the
// forward pass (a step's time from the cost model; the sampled token is a
// stand-in unique to the request) and transfer times.
//
// Between events the steps are alike (every running request decodes a
// token, a long prompt advances by the same chunk), so when the scheduler
// says the coming steps are such a stretch (Scheduler::PlanStretch), the
// replay runs them at once, up to the next completion or arrival, pricing
// each step by the cost model. This is what keeps a replay of millions of
// steps to a few cache operations per request.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <optional>
#include <queue>

#include <fmt/format.h>

#include "engine/scheduler.h"
#include "kvstack/server.h"
#include "kvstack/kv_cache.h"
#include "kvstack/router.h"
#include "kvstack/router_index.h"
#include "kvstack/sim_replay.h"
#include "kvstack/tier_chain.h"
#include "sim/sim_tiers.h"

namespace kvstack::sim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kTimeEpsilon = 1e-9;  // seconds

struct RequestOutcome {
  double ttft = 0, tpot = 0, queue = 0;
  bool done = false;
};

// A request an instance's scheduler holds.
struct Live {
  size_t index = 0;
  int32_t prompt_blocks = 0; // for the router's queued-prefill load until admitted
  // The trace's output length, copied here: every step and stretch checks
  // it for each running request, and this record is read then anyway,
  // while the trace's (128 bytes each, scattered over a million) missed
  // cache every time.
  int32_t output = 0;
  double arrival_s = 0;
  double admitted_s = -1;    // first admission
  double first_token_s = -1;
};

struct Instance {
  ManualClock clock;
  std::unique_ptr<SimTiers> tiers;  // null: no tier below the device pool
  std::unique_ptr<KvCache> device;
  std::unique_ptr<engine::Scheduler> scheduler;
  int64_t live = 0;            // requests routed here, not yet finished (their Live in Replay::live_)
  int64_t waiting_blocks = 0;  // prompt blocks queued, not yet admitted (the kv-aware router's load)
  int32_t waiting = 0;         // requests queued, not yet admitted
  double now = 0;
  double busy_s = 0;           // cost-model seconds of the steps run
  // A stretch planned but not yet run: `now` is already its end. It runs
  // when the instance is next stepped, or, cut at the arrival's step, when
  // an arrival is routed here (or anywhere, for the kv-aware router, which
  // reads the blocks the stretch stores). Nothing else can see the
  // difference: no request starts, finishes or changes queue meanwhile.
  struct Pending {
    engine::Scheduler::Stretch stretch;
    double start = 0;                 // its first step's start
    std::vector<double> ends;         // ends[j]: the end of step j
    // Decoding requests whose first token its first step gives, and those
    // its last step finishes (in admission order) if it runs whole.
    std::vector<engine::RequestId> first, finishing;
  };
  std::optional<Pending> pending;
  Pending spare;  // a run stretch's buffers, for the next (a stretch is planned millions of times)
  // Arrivals routed here that the scheduler has not been handed yet, in
  // arrival order (see Replay::Feed): a backlog costs a trace index each,
  // not a prompt's tokens.
  std::deque<size_t> backlog;
  bool busy() const { return pending.has_value() || !backlog.empty() || scheduler->HasWork(); }
  int32_t admitted() const { return static_cast<int32_t>(live - waiting); }
};

class Replay {
 public:
  Replay(const Trace& trace, const CostModel& cost, const SimOptions& o) : trace_(trace), cost_(cost), o_(o) {}

  Result<SimResult> Run() {
    KVSTACK_RETURN_IF_ERROR(Setup());
    const size_t n = trace_.requests.size();
    outcomes_.resize(n);
    live_.resize(n);
    size_t next = 0;
    t0_ = n ? Seconds(trace_.requests[0].arrival_us) : 0;
    const double span = n ? Seconds(trace_.requests[n - 1].arrival_us) - t0_ : 0;
    sample_every_ = o_.occupancy_samples > 0 ? std::max(span, 1e-3) / o_.occupancy_samples : kInf;
    next_sample_ = t0_;
    for (int32_t c = 0; c < o_.clients; ++c) free_clients_.push(t0_);
    size_t progress_mark = 0;
    // The trace's next arrival, read once per arrival rather than once per
    // event (a trace record is a cache miss).
    double trace_arrival = n ? t0_ : kInf;
    while (true) {
      double ta = kInf;
      if (next < n && o_.clients <= 0) ta = trace_arrival;
      if (next < n && o_.clients > 0 && !free_clients_.empty()) ta = free_clients_.top();
      Instance* earliest = nullptr;
      for (Instance& in : instances_) {
        if (in.busy() && (earliest == nullptr || in.now < earliest->now)) earliest = &in;
      }
      // An arrival within a nanosecond of the step's start has arrived (step
      // times are summed in floating point; 17 steps of 10 ms are not 0.17 s).
      if (next < n && ta < kInf && (earliest == nullptr || ta <= earliest->now + kTimeEpsilon)) {
        if (o_.clients > 0) free_clients_.pop();
        last_arrival_ = ta;
        Route(next++, ta);
        if (next < n) trace_arrival = Seconds(trace_.requests[next].arrival_us);
        if (next == n) {
          for (const Instance& in : instances_) result_.load.waiting_at_last_arrival += in.waiting;
        }
        if (o_.progress && next >= progress_mark) {
          o_.progress(static_cast<double>(next) / static_cast<double>(n));
          progress_mark = next + std::max<size_t>(1, n / 200);
        }
        continue;
      }
      if (earliest == nullptr) break;
      next_arrival_ = ta;
      Step(*earliest);
      Sample(earliest->now);
    }
    // Closed loop: the arrivals the clients made, not the trace's.
    return Finish(o_.clients > 0 ? last_arrival_ - t0_ : span);
  }

 private:
  static double Seconds(Micros us) { return static_cast<double>(us) / 1e6; }

  Status Setup() {
    if (o_.block_size < 1 || o_.block_size > 512 || (o_.block_size & (o_.block_size - 1)) != 0) {
      return InvalidArgument(fmt::format("--block-size {}: must be a power of two from 1 to 512", o_.block_size));
    }
    if (o_.instances < 1) return InvalidArgument(fmt::format("--instances {}: must be at least 1", o_.instances));
    if (o_.max_batch < 1) return InvalidArgument(fmt::format("--max-batch {}: must be at least 1", o_.max_batch));
    if (o_.max_batch_tokens < 0) {
      return InvalidArgument(fmt::format("--max-batch-tokens {}: must be 0 (no budget) or more", o_.max_batch_tokens));
    }
    if (o_.device_tokens < o_.block_size) {
      return InvalidArgument(fmt::format("--device-tokens {}: must hold at least one block of {} tokens",
                                         o_.device_tokens, o_.block_size));
    }
    const int64_t caps[kNumTiers] = {o_.device_tokens, o_.host_tokens, o_.disk_tokens};
    for (int t = 0; t < kNumTiers; ++t) {
      if (caps[t] / o_.block_size > INT32_MAX) {
        return InvalidArgument(fmt::format("{} tier: {} tokens is more blocks than a pool holds", TierName(Tier(t)),
                                           caps[t]));
      }
    }
    auto policy = MakeEvictionPolicy(o_.policy);
    if (!policy.ok()) return InvalidArgument(fmt::format("--policy {}: {}", o_.policy, policy.status().message()));
    policy_ = std::move(policy).value();
    const int32_t budget = o_.max_batch_tokens > 0 ? o_.max_batch_tokens : INT32_MAX / 2;
    // What the engine compares a tier's transfer with: its prefill rate in a
    // full step (tokens over the step's time), here the cost model's.
    const int64_t T = std::min<int64_t>(budget, 4096);
    const double recompute_per_block = cost_.PrefillSeconds(T, T * (T + 1) / 2) / double(T) * o_.block_size;
    instances_ = std::vector<Instance>(static_cast<size_t>(o_.instances));
    for (Instance& in : instances_) {
      const int64_t host = o_.host_tokens / o_.block_size, disk = o_.disk_tokens / o_.block_size;
      if (host > 0 || disk > 0) {
        SimTiers::Options t;
        t.block_size = o_.block_size;
        t.host_blocks = host;
        t.disk_blocks = disk;
        t.policy = policy_.get();
        t.clock = &in.clock;
        t.min_priority = o_.offload_min_priority;
        t.min_hits = o_.offload_min_hits;
        t.only_when_faster = o_.onboard_only_when_faster;
        t.recompute_seconds_per_block = recompute_per_block;
        t.prefetch = o_.prefetch;
        auto tiers = SimTiers::Create(t, &cost_);
        if (!tiers.ok()) return tiers.status();
        in.tiers = std::move(tiers).value();
      }
      KvCacheConfig c;
      c.num_blocks = static_cast<int32_t>(o_.device_tokens / o_.block_size);
      c.shape.block_size = o_.block_size;
      c.storage = KvStorageMode::kMetadataOnly;
      c.eviction_policy = o_.policy;
      c.clock = &in.clock;
      c.eviction_listener = in.tiers.get();
      // The kv-aware router sees the device pools only through their events.
      if (o_.router == RouterKind::kKvAware) c.event_buffer_limit = size_t{1} << 20;
      auto cache = KvCache::Create(c);
      if (!cache.ok()) {
        if (cache.status().code() == StatusCode::kInvalidArgument) {
          return InvalidArgument(fmt::format("--policy {}: {}", o_.policy, cache.status().message()));
        }
        return cache.status();
      }
      in.device = std::move(cache).value();
      in.scheduler = std::make_unique<engine::Scheduler>(
          in.device.get(), engine::SchedulerOptions{.max_batch_tokens = budget, .max_running = o_.max_batch},
          in.tiers.get());
    }
    keys_.resize(trace_.tenants.size());
    for (size_t t = 0; t < trace_.tenants.size(); ++t) keys_[t].cache_salt = trace_.tenants[t];
    return Status::Ok();
  }

  int32_t InputTokens(const TraceRequest& r) const { return std::max(1, r.input_tokens); }
  // Tokens a decoding request will still take (ids are trace indices).
  int64_t TokensLeft(const engine::ScheduledRequest& r) const { return live_[r.id].output - GeneratedTokens(r); }
  static int32_t OutputTokens(const TraceRequest& r) { return std::max(1, r.output_tokens); }
  // Tokens a request has generated: its tokens past the prompt (a
  // recomputed request keeps those it had).
  static int32_t GeneratedTokens(const engine::ScheduledRequest& r) {
    return static_cast<int32_t>(r.tokens.size()) - r.prompt_len;
  }
  // How many tokens Tokens() gives, without making them.
  static int32_t PromptTokens(const TraceRequest& r) {
    return r.tokens.empty() ? std::max(1, r.input_tokens) : static_cast<int32_t>(r.tokens.size());
  }

  void Tokens(size_t index, std::vector<Token>* out) {
    const TraceRequest& r = trace_.requests[index];
    ContentTokens(trace_, r, index, out);
    if (out->empty()) out->push_back(0);  // an empty prompt still needs one token
  }

  // The stand-in for sampling: a token no prompt holds (prompt tokens are
  // non-negative), the same for every step of a request and different
  // between requests, so generated blocks are cached as the engine caches
  // them but never match another request's prompt.
  static Token Generated(size_t index) { return static_cast<Token>(-1 - static_cast<int64_t>(index & 0x3fffffff)); }

  void Route(size_t index, double ta) {
    const TraceRequest& r = trace_.requests[index];
    size_t pick = 0;
    switch (o_.router) {
      case RouterKind::kRoundRobin:
        pick = round_robin_++ % instances_.size();
        break;
      case RouterKind::kLeastLoaded: {
        // Requests in flight at `ta`. Stepping, every step that starts
        // before `ta` has run when it is routed, finishing what it finishes;
        // a pending stretch has not, so the requests its last step finishes
        // are counted out here when that step starts before `ta`.
        const auto load = [ta](const Instance& in) {
          int64_t n = in.live;
          const std::optional<Instance::Pending>& p = in.pending;
          if (p && !p->finishing.empty() && StepsBefore(*p, ta) == p->stretch.steps) {
            n -= static_cast<int64_t>(p->finishing.size());
          }
          return n;
        };
        for (size_t i = 1; i < instances_.size(); ++i) {
          if (load(instances_[i]) < load(instances_[pick])) pick = i;
        }
        break;
      }
      case RouterKind::kKvAware: {
        // The same index and scoring as `kvstack router`, fed by each
        // instance's events (never by looking into its cache). Dynamo's cost:
        // prompt blocks still to compute after the device hit, plus the
        // prefill queued ahead, plus one per running request.
        if (instances_.size() == 1) break;
        if (!index_) {
          index_ = std::make_unique<BlockIndex>(BlockIndex::Options{});
          for (size_t i = 0; i < instances_.size(); ++i) index_->AddWorker();
          RouterOptions ro;
          ro.oneoff_weight = 1.0;  // the trace's priorities do not sway the simulated router
          ro.prediction_ttl = 0;   // events are applied before every decision: nothing to predict
          ro.tie_break = RouterOptions::TieBreak::kLowestId;
          router_ = std::make_unique<Router>(ro, index_.get(), &route_clock_);
        }
        for (size_t i = 0; i < instances_.size(); ++i) {
          RunPending(instances_[i], ta);  // the stretch's blocks are events the index must hear
          index_->ApplyEvents(static_cast<WorkerId>(i), ToIndexEvents(instances_[i].device->DrainEvents()));
        }
        Tokens(index, &route_tokens_);
        route_keys_.clear();
        const BlockHasher& hasher = index_->hasher();
        hasher.ChainBlocks(hasher.Root(keys_[r.tenant < keys_.size() ? r.tenant : 0]), route_tokens_,
                           static_cast<size_t>(o_.block_size), &route_keys_);
        loads_.resize(instances_.size());
        for (size_t i = 0; i < instances_.size(); ++i) {
          loads_[i] = WorkerLoad{.healthy = true,
                                 .running = instances_[i].admitted(),
                                 .waiting = 0,
                                 .queued_prefill_blocks = instances_[i].waiting_blocks};
        }
        const RouteDecision d = router_->Route(
            RouteQuery{.keys = route_keys_, .prompt_blocks = static_cast<int32_t>(route_keys_.size())}, loads_);
        pick = static_cast<size_t>(d.worker);
        break;
      }
    }
    Instance& in = instances_[pick];
    // An arrival that queues behind others cannot change a pending stretch:
    // admission is first come, first served, and the stretch was planned
    // with the queue's head not admissible for all of its steps. So the
    // stretch is cut only where the arrival could be admitted by one of its
    // steps (or, with tiers, where queueing starts a prefetch). In an
    // overloaded replay almost every arrival queues: cutting at each had
    // doubled the stretches.
    if (in.tiers || (in.backlog.empty() && in.scheduler->waiting().empty())) RunPending(in, ta);
    const int32_t bs = o_.block_size;
    // A request whose prompt and output outgrow the whole pool would be
    // preempted by itself forever (the engine bounds it by the context).
    const int64_t total_blocks = (int64_t{InputTokens(r)} + OutputTokens(r) - 1 + bs - 1) / bs;
    if (total_blocks > in.device->num_blocks()) {
      ++rejected_;
      if (o_.clients > 0) free_clients_.push(ta);
      return;
    }
    if (!in.busy()) in.now = std::max(in.now, ta);
    const int32_t prompt_blocks = PromptTokens(r) / bs;
    live_[index] = Live{.index = index, .prompt_blocks = prompt_blocks, .output = OutputTokens(r), .arrival_s = ta};
    ++in.live;
    in.waiting_blocks += prompt_blocks;
    ++in.waiting;
    in.backlog.push_back(index);
    Feed(in);
  }

  // Hands the scheduler queued arrivals while its waiting queue is shorter
  // than the next step can admit plus one: the free batch slots, since a
  // step admits in queue order and stops at the first request that does not
  // fit (a request preempted meanwhile goes to the front and takes back the
  // slot it freed). Every step is planned right after a Feed, so the
  // scheduler decides exactly as if it had been handed every arrival at
  // once, without holding a backlog's prompts, and a prompt's tokens are
  // made just before it is admitted, while they are still in cache.
  // With lower tiers every arrival is handed over at once, as the engine
  // does, because queueing is what prefetches a request's blocks.
  void Feed(Instance& in) {
    size_t enough = SIZE_MAX;
    if (!in.tiers) {
      const engine::SchedulerStats st = in.scheduler->stats();
      enough = static_cast<size_t>(std::max(0, o_.max_batch - st.running - st.onboarding)) + 1;
    }
    while (!in.backlog.empty() && in.scheduler->waiting().size() < enough) {
      const size_t index = in.backlog.front();
      in.backlog.pop_front();
      const TraceRequest& r = trace_.requests[index];
      engine::ScheduledRequest q;
      q.id = index;
      // Room for every token it will hold: a stretch's samples then append
      // without reallocating (regrowing took 5-12% of a 200,000-request
      // synthetic chat replay).
      q.tokens.reserve(static_cast<size_t>(PromptTokens(r)) + static_cast<size_t>(std::max(0, r.output_tokens)));
      Tokens(index, &q.tokens);
      q.keys = keys_[r.tenant < keys_.size() ? r.tenant : 0];
      q.priority = r.request_priority;  // preemption order, as the engine's request priority
      for (const TracePriorityRange& range : r.ranges) {
        const int32_t end = std::min<int32_t>(range.end, static_cast<int32_t>(q.tokens.size()));
        if (range.begin < end) q.retention.ranges.push_back({{range.begin, end}, range.priority, std::nullopt});
      }
      SetClock(in);
      if (Status s = in.scheduler->Add(std::move(q)); !s.ok()) {
        const Live& l = live_[index];
        in.waiting_blocks -= l.prompt_blocks;
        --in.waiting;
        if (o_.clients > 0) free_clients_.push(l.arrival_s);
        --in.live;
        ++rejected_;
      }
    }
  }

  // The instance's clock follows its simulated time (never backwards).
  static void SetClock(Instance& in) {
    in.clock.Set(std::max(in.clock.Now(), static_cast<Micros>(std::llround(in.now * 1e6))));
  }

  void NoteAdmitted(Instance& in, engine::RequestId id) {
    Live& l = live_[id];
    if (l.admitted_s >= 0) return;
    l.admitted_s = in.now;
    in.waiting_blocks -= l.prompt_blocks;
    --in.waiting;
  }

  // One scheduler step of `in`, or a decode-only stretch of several.
  void Step(Instance& in) {
    engine::Scheduler& sched = *in.scheduler;
    if (in.pending) {
      RunPending(in, kInf);
      return;
    }
    SetClock(in);
    Feed(in);
    if (o_.stretches && !sched.running_requests().empty() && PlanStretch(in)) return;

    const std::vector<engine::ScheduledChunk> plan = sched.Schedule();
    NotePeak(in);
    for (const engine::ScheduledChunk& c : plan) NoteAdmitted(in, c.id);
    if (in.tiers) {
      for (engine::RequestId id : in.tiers->TakeStarted()) NoteAdmitted(in, id);
    }
    if (plan.empty()) {
      // Only onboarding in flight: wait for the first to land (or an arrival).
      const double ready = in.tiers ? in.tiers->NextReady() : kInf;
      if (ready < kInf) {
        in.now = std::max(in.now, std::min(ready, next_arrival_));
        if (in.now >= ready) in.clock.Set(std::max(in.clock.Now(), static_cast<Micros>(std::llround(ready * 1e6))));
        return;
      }
      // Nothing runs and the queue's head does not fit: only blocks held
      // outside the scheduler could do that. Drop the head rather than spin.
      if (!sched.waiting().empty()) {
        const engine::RequestId head = sched.waiting().front();
        NoteAdmitted(in, head);
        sched.Finish(head).IgnoreError();
        --in.live;
        ++rejected_;
      }
      return;
    }
    StepWork work;
    for (const engine::ScheduledChunk& c : plan) {
      const engine::ScheduledRequest& r = *c.request;
      const int64_t b = c.begin, e = c.begin + c.count;
      if (c.count == 1 && b >= r.prompt_len && c.want_logits) {
        ++work.decode_batch;
        work.decode_context += e;
      } else {
        work.prefill_tokens += e - b;
        work.prefill_context += e;
        work.prefill_attended += (e * (e + 1) - b * (b + 1)) / 2;
      }
    }
    const double step = cost_.StepSeconds(work);
    in.now += step;
    in.busy_s += step;
    SetClock(in);
    // As Engine::Step: each chunk's KV is marked, then its token sampled (a
    // request that finishes releases its blocks before the next chunk's
    // are marked).
    for (const engine::ScheduledChunk& c : plan) {
      sched.Computed(c);
      if (!c.want_logits) continue;
      Live& l = live_[c.id];
      sched.AppendToken(c, Generated(l.index));
      if (l.first_token_s < 0) l.first_token_s = in.now;
      if (GeneratedTokens(*c.request) >= l.output) Complete(in, c.id);
    }
  }

  // A stretch of alike steps (Scheduler::PlanStretch: decoding requests plus
  // at most one prompt chunk per step) up to the next completion, if the
  // scheduler says the coming steps are one: priced step by step and left
  // pending (see Instance::Pending); false if the next step is not one.
  bool PlanStretch(Instance& in) {
    engine::Scheduler& sched = *in.scheduler;
    Instance::Pending p = std::move(in.spare);
    p.first.clear();
    p.finishing.clear();
    p.ends.clear();
    p.stretch = sched.PlanStretch(std::numeric_limits<int64_t>::max(),
                                  [this](const engine::ScheduledRequest& r) { return TokensLeft(r); });
    if (p.stretch.steps < 1) {
      in.spare = std::move(p);
      return false;
    }
    const engine::Scheduler::Stretch& st = p.stretch;
    int64_t decode_context = 0, batch = 0;
    // Of those, requests whose one token left is their prompt's last: the
    // first step computes it as a prompt chunk of one, priced as prefill as
    // Step() prices it; they decode from the second step on.
    int64_t last_prompt = 0, last_prompt_context = 0;
    for (const engine::ScheduledRequest* rp : sched.running_requests()) {
      const engine::ScheduledRequest& r = *rp;
      const int32_t n = static_cast<int32_t>(r.tokens.size());
      if (r.computed + 1 != n) continue;  // in its prompt
      // Each has at least `steps` left; those with exactly that many finish
      // in the last step (none, where the pool cut the stretch short).
      if (TokensLeft(r) == st.steps) p.finishing.push_back(r.id);
      decode_context += n;
      ++batch;
      if (n == r.prompt_len) ++last_prompt, last_prompt_context += n, p.first.push_back(r.id);
    }
    const int64_t begin = st.prompt ? sched.Find(*st.prompt)->computed : 0;
    p.start = in.now;
    p.ends.reserve(static_cast<size_t>(st.steps));
    double t = in.now;
    for (int64_t j = 0; j < st.steps; ++j) {
      StepWork w;
      w.decode_batch = batch;
      w.decode_context = decode_context + j * batch;
      if (j == 0) {
        w.decode_batch -= last_prompt;
        w.decode_context -= last_prompt_context;
        w.prefill_tokens = last_prompt;
        w.prefill_context = last_prompt_context;
        w.prefill_attended = last_prompt_context;  // one position each, attending to all before it
      }
      if (st.prompt) {
        const int64_t b = begin + j * st.chunk, e = b + st.chunk;
        w.prefill_tokens += st.chunk;
        w.prefill_context += e;
        w.prefill_attended += (e * (e + 1) - b * (b + 1)) / 2;
      }
      t += cost_.StepSeconds(w);
      p.ends.push_back(t);
    }
    in.now = t;
    in.pending = std::move(p);
    return true;
  }

  // How many of a pending stretch's steps start before `until`: what
  // stepping through it would have run by then (at least the first, which
  // started when it was planned). Step j starts at ends[j - 1].
  static int64_t StepsBefore(const Instance::Pending& p, double until) {
    if (until == kInf) return p.stretch.steps;
    const auto first_later = std::lower_bound(p.ends.begin(), p.ends.end() - 1, until - kTimeEpsilon);
    const int64_t k = 1 + (first_later - p.ends.begin());
    return std::min(k, p.stretch.steps);
  }

  // Runs `in`'s pending stretch: whole, or only its steps that start before
  // `until` (an arrival there is seen by the next step, as the engine's
  // scheduler would see it).
  void RunPending(Instance& in, double until) {
    if (!in.pending) return;
    Instance::Pending p = std::move(*in.pending);
    in.pending.reset();
    engine::Scheduler::Stretch st = p.stretch;
    const int64_t steps = StepsBefore(p, until);
    st.steps = steps;
    const double end = p.ends[static_cast<size_t>(steps - 1)];
    in.busy_s += end - p.start;
    in.now = end;
    SetClock(in);
    engine::Scheduler& sched = *in.scheduler;
    sched.RunStretch(st, [&](engine::RequestId id, int64_t count, std::vector<Token>& tokens) {
      // A loop, not insert(): a few tokens a call, into reserved room.
      const Token t = Generated(id);  // ids are trace indices
      for (int64_t i = 0; i < count; ++i) tokens.push_back(t);
    });
    NotePeak(in);
    // For a prompt whose last token was all that was left: its first token.
    for (engine::RequestId id : p.first) live_[id].first_token_s = p.ends[0];
    if (steps == p.stretch.steps) {
      for (engine::RequestId id : p.finishing) Complete(in, id);
    }
    in.spare = std::move(p);
  }

  void Complete(Instance& in, engine::RequestId id) {
    engine::Scheduler& sched = *in.scheduler;
    const engine::ScheduledRequest& s = *sched.Find(id);
    Live& l = live_[id];
    const TraceRequest& r = trace_.requests[l.index];
    RequestOutcome& out = outcomes_[l.index];
    out.done = true;
    out.ttft = l.first_token_s - l.arrival_s;
    out.queue = l.admitted_s - l.arrival_s;
    if (l.output > 1) out.tpot = (in.now - l.first_token_s) / (l.output - 1);
    const int32_t bs = o_.block_size;
    const int32_t n = s.prompt_len;
    std::array<int32_t, kNumTiers> tier_blocks{};
    if (in.tiers) tier_blocks = in.tiers->FirstOnboard(id);
    // Tier blocks count as hits when they arrived for the first admission
    // (a request preempted while onboarding computed them instead).
    if (s.cached_tokens == s.device_hit_tokens) tier_blocks = {};
    const int32_t device_hit_tokens = s.device_hit_tokens;
    tier_blocks[0] = device_hit_tokens / bs;
    for (int t = 0; t < kNumTiers; ++t) {
      result_.tiers[t].hit_blocks += static_cast<uint64_t>(tier_blocks[static_cast<size_t>(t)]);
      result_.tiers[t].hit_tokens += static_cast<uint64_t>(tier_blocks[static_cast<size_t>(t)]) * bs;
    }
    result_.query_tokens += static_cast<uint64_t>(n);
    result_.query_blocks += static_cast<uint64_t>(n / bs);
    AccountRetention(r, n, device_hit_tokens);
    result_.output_tokens += static_cast<uint64_t>(std::max(r.output_tokens, 0));
    last_completion_ = std::max(last_completion_, in.now);
    if (o_.clients > 0) free_clients_.push(in.now);
    if (o_.record_requests) {
      result_.records.push_back(SimRequestRecord{.index = static_cast<int64_t>(l.index),
                                                 .instance = static_cast<int32_t>(&in - instances_.data()),
                                                 .admitted_s = l.admitted_s - t0_,
                                                 .first_token_s = l.first_token_s - t0_,
                                                 .finished_s = in.now - t0_,
                                                 .prompt_tokens = n,
                                                 .cached_tokens = s.cached_tokens,
                                                 .onboarded_tokens = s.onboarded_tokens,
                                                 .preemptions = s.preemptions});
    }
    if (in.tiers) in.tiers->Forget(id);
    sched.Finish(id).IgnoreError();
    --in.live;
  }

  // Durable (priority above the default) vs one-off prompt tokens, per block
  // as the cache classes them (a request without ranges is all default): a
  // block takes the highest priority among its tokens' ranges.
  void AccountRetention(const TraceRequest& r, int32_t n, int32_t hit_tokens) {
    if (!trace_.has_priorities) return;  // nothing marks durable context
    const int32_t bs = o_.block_size;
    for (int32_t b = 0; b * bs < n; ++b) {
      const int32_t lo = b * bs, hi = std::min(n, lo + bs);
      Priority p = kDefaultPriority;
      bool any = false;
      for (const TracePriorityRange& range : r.ranges) {
        if (range.begin < hi && range.end > lo) p = any ? std::max(p, range.priority) : range.priority, any = true;
      }
      const uint64_t tokens = static_cast<uint64_t>(hi - lo);
      const uint64_t hit = static_cast<uint64_t>(std::clamp(hit_tokens - lo, 0, hi - lo));
      if (p > kDefaultPriority) result_.durable_tokens += tokens, result_.durable_hit_tokens += hit;
      else result_.oneoff_tokens += tokens, result_.oneoff_hit_tokens += hit;
    }
  }

  // Blocks are taken only when a step is planned (or a stretch run) and
  // given back only when requests finish after it: the peaks are there, in
  // a stretch at its end, where stepping would have seen them too.
  void NotePeak(const Instance& in) {
    peak_running_ = std::max(peak_running_, static_cast<int32_t>(in.scheduler->running_requests().size()));
    peak_in_use_ = std::max(peak_in_use_, in.device->num_blocks() - in.device->num_available_blocks());
  }

  void Sample(double now) {
    if (now < next_sample_) return;
    while (next_sample_ <= now) next_sample_ += sample_every_;
    OccupancySample s;
    s.t_seconds = now;
    for (const Instance& in : instances_) {
      const CacheMetrics m = in.device->Metrics();
      const engine::SchedulerStats st = in.scheduler->stats();
      s.in_use_blocks += m.in_use_blocks + m.pinned_blocks;
      s.cached_blocks += m.cached_blocks;
      s.running += st.running;
      s.waiting += st.waiting + static_cast<int32_t>(in.backlog.size());
    }
    result_.occupancy.push_back(s);
  }

  Result<SimResult> Finish(double span) {
    SimResult& res = result_;
    res.policy = o_.policy;
    res.block_size = o_.block_size;
    res.device_tokens = o_.device_tokens / o_.block_size * o_.block_size;
    res.rejected = rejected_;
    std::vector<double> ttft, tpot, queue;
    for (const RequestOutcome& out : outcomes_) {
      if (!out.done) continue;
      ++res.requests;
      ttft.push_back(out.ttft);
      queue.push_back(out.queue);
      if (out.tpot > 0) tpot.push_back(out.tpot);
    }
    res.ttft_s = ComputePercentiles(&ttft);
    res.tpot_s = ComputePercentiles(&tpot);
    res.queue_s = ComputePercentiles(&queue);
    res.ttft_samples_s = std::move(ttft);
    std::vector<double> measured;
    for (const TraceRequest& r : trace_.requests) {
      if (r.measured_ttft_us) measured.push_back(Seconds(*r.measured_ttft_us));
      if (r.measured_cached_tokens) {
        res.measured_query_tokens += static_cast<uint64_t>(InputTokens(r));
        res.measured_cached_tokens += static_cast<uint64_t>(*r.measured_cached_tokens);
      }
    }
    res.measured_requests = static_cast<int64_t>(measured.size());
    res.measured_ttft_s = ComputePercentiles(&measured);
    res.measured_ttft_samples_s = std::move(measured);
    res.makespan_s = res.requests ? last_completion_ - t0_ : 0;
    if (res.makespan_s > 0) {
      res.requests_per_second = static_cast<double>(res.requests) / res.makespan_s;
      res.output_tokens_per_second = static_cast<double>(res.output_tokens) / res.makespan_s;
    }
    for (const Instance& in : instances_) {
      res.evictions += in.device->Metrics().evictions;
      res.preemptions += in.scheduler->stats().preemptions;
      res.load.busy_seconds += in.busy_s;
      if (in.tiers) {
        res.offloaded_blocks += in.tiers->offloaded_blocks();
        res.onboarded_blocks += in.tiers->onboarded_blocks();
        res.prefetched_blocks += in.tiers->prefetched_blocks();
      }
    }
    LoadReport& load = res.load;
    load.arrival_span_s = span;
    if (span > 0) {
      load.utilization = load.busy_seconds / (static_cast<double>(o_.instances) * span);
      // Busy time alone cannot say it: a decode step costs about the same at
      // any batch, so instances that are never idle may still admit every
      // arrival within a step or two (and the last arrival itself is
      // waiting when it is counted). Queueing grew when more were waiting
      // at the last arrival than a transient leaves: over one an instance
      // and over 2% of all arrivals.
      const double transient =
          std::max(static_cast<double>(o_.instances), 0.02 * static_cast<double>(trace_.requests.size()));
      load.overloaded = load.utilization > 1.0 && load.waiting_at_last_arrival > transient;
      load.instances_to_keep_up = static_cast<int32_t>(std::ceil(load.utilization * o_.instances - 1e-9));
    }
    res.peak_running = peak_running_;
    res.peak_in_use_blocks = peak_in_use_;
    res.cost_model = cost_.Describe();
    return std::move(res);
  }

  const Trace& trace_;
  const CostModel& cost_;
  SimOptions o_;
  std::unique_ptr<EvictionPolicy> policy_;
  std::vector<Instance> instances_;
  std::vector<ExtraKeys> keys_;
  std::vector<RequestOutcome> outcomes_;
  // Per trace index (request ids are trace indices): a request's record
  // while an instance holds it. Indexed, not hashed: a step reads one per
  // running request, and a hash map of every queued request missed cache.
  std::vector<Live> live_;
  std::vector<Token> route_tokens_;
  double next_arrival_ = kInf;  // of the trace, when an instance steps
  double last_arrival_ = 0;
  // Closed loop (SimOptions::clients): when each idle client sends next.
  std::priority_queue<double, std::vector<double>, std::greater<>> free_clients_;
  std::unique_ptr<BlockIndex> index_;  // kv-aware only
  std::unique_ptr<Router> router_;
  ManualClock route_clock_;
  std::vector<BlockHash> route_keys_;
  std::vector<WorkerLoad> loads_;
  size_t round_robin_ = 0;
  int64_t rejected_ = 0;
  int32_t peak_running_ = 0;
  int32_t peak_in_use_ = 0;
  double t0_ = 0;
  double last_completion_ = 0;
  double sample_every_ = kInf, next_sample_ = 0;
  SimResult result_;
};

}  // namespace

std::vector<std::string> ServeDifferences(const SimOptions& o) {
  const ServerOptions serve;
  std::vector<std::string> d;
  const auto differ = [&](std::string_view flag, const auto& sim, const auto& srv) {
    if (sim != srv) d.push_back(fmt::format("{} {} (serve: {})", flag, sim, srv));
  };
  differ("--policy", o.policy, serve.engine.eviction_policy);
  differ("--block-size", o.block_size, serve.engine.block_size);
  differ("--max-batch", o.max_batch, serve.engine.max_running);
  differ("--max-batch-tokens", o.max_batch_tokens, serve.engine.max_batch_tokens);
  differ("--offload-min-priority", static_cast<int32_t>(o.offload_min_priority), serve.tiers.offload_min_priority);
  differ("--offload-min-hits", static_cast<int32_t>(o.offload_min_hits), serve.tiers.offload_min_hits);
  differ("--onboard-always", !o.onboard_only_when_faster, serve.tiers.onboard_always);
  if (!o.prefetch) d.push_back("--no-prefetch (serve: a queued request's blocks are prefetched)");
  return d;
}

Result<RouterKind> ParseRouter(std::string_view text) {
  if (text == "round-robin") return RouterKind::kRoundRobin;
  if (text == "least-loaded") return RouterKind::kLeastLoaded;
  if (text == "kv-aware") return RouterKind::kKvAware;
  return InvalidArgument(fmt::format("--router \"{}\": expected round-robin, least-loaded or kv-aware", text));
}

std::string_view RouterName(RouterKind router) {
  switch (router) {
    case RouterKind::kRoundRobin: return "round-robin";
    case RouterKind::kLeastLoaded: return "least-loaded";
    case RouterKind::kKvAware: return "kv-aware";
  }
  return "?";
}

Percentiles ComputePercentiles(std::vector<double>* v) {
  Percentiles p;
  if (v->empty()) return p;
  std::sort(v->begin(), v->end());
  const auto rank = [&](double q) {
    const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v->size())));
    return (*v)[std::min(v->size() - 1, i == 0 ? 0 : i - 1)];
  };
  p.p50 = rank(0.50);
  p.p95 = rank(0.95);
  p.p99 = rank(0.99);
  p.max = v->back();
  double sum = 0;
  for (double x : *v) sum += x;
  p.mean = sum / static_cast<double>(v->size());
  return p;
}

uint64_t SimResult::HitTokens() const {
  uint64_t h = 0;
  for (const TierHits& t : tiers) h += t.hit_tokens;
  return h;
}
double SimResult::TokenHitRate(Tier tier) const {
  return query_tokens ? static_cast<double>(tiers[static_cast<int>(tier)].hit_tokens) / static_cast<double>(query_tokens)
                      : 0;
}
double SimResult::BlockHitRate(Tier tier) const {
  return query_blocks ? static_cast<double>(tiers[static_cast<int>(tier)].hit_blocks) / static_cast<double>(query_blocks)
                      : 0;
}
double SimResult::TotalTokenHitRate() const {
  return query_tokens ? static_cast<double>(HitTokens()) / static_cast<double>(query_tokens) : 0;
}

Result<SimResult> Simulate(const Trace& trace, const CostModel& cost, const SimOptions& options) {
  return Replay(trace, cost, options).Run();
}

}  // namespace kvstack::sim
