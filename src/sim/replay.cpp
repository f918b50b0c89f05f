// The discrete-event replay: requests arrive, are routed to an instance,
// admitted through KvCache (metadata-only) and timed by the cost model.
//
// Each instance is a step loop (see sim.h). Between events nothing changes
// but the decode position, so when a step admits nothing the loop jumps ahead
// to the next completion or arrival in one go (the decode time of those steps
// is taken at their mean context). This is what keeps a replay of millions of
// decode steps to a few operations per request.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <queue>

#include <fmt/format.h>

#include "kvstack/kv_cache.h"
#include "kvstack/router.h"
#include "kvstack/router_index.h"
#include "kvstack/sim.h"

namespace kvstack::sim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct RequestOutcome {
  double ttft = 0, tpot = 0, queue = 0;
  bool done = false;
};

struct Running {
  SequenceId seq;
  size_t request = 0;
  double first_token_s = 0;
};

// An admitted request whose prompt is still being computed, a chunk a step
// within the token budget (chunked prefill).
struct Prefilling {
  size_t slot = 0;
  int32_t computed = 0;  // leading prompt tokens with KV (cache hits included)
  int32_t tokens = 0;    // prompt length
};

struct Instance {
  ManualClock clock;
  std::unique_ptr<KvCache> tiers[kNumTiers];
  std::deque<size_t> waiting;
  int64_t waiting_blocks = 0;  // prompt blocks queued (the kv-aware router's load)
  std::vector<Running> running;  // slots; finished ones are recycled
  std::vector<size_t> free_slots;
  int32_t num_running = 0;           // decoding (past their first token)
  std::deque<Prefilling> prefilling;  // admission order
  // (decode step at which it finishes, slot), earliest first.
  std::priority_queue<std::pair<int64_t, size_t>, std::vector<std::pair<int64_t, size_t>>, std::greater<>> finish;
  int64_t decode_steps = 0;
  int64_t context_sum = 0;  // tokens every running sequence attends over
  double now = 0;
  int32_t admitted() const { return num_running + static_cast<int32_t>(prefilling.size()); }
  bool busy() const { return num_running > 0 || !prefilling.empty() || !waiting.empty(); }
};

class Replay {
 public:
  Replay(const Trace& trace, const CostModel& cost, const SimOptions& o) : trace_(trace), cost_(cost), o_(o) {}

  Result<SimResult> Run() {
    KVSTACK_RETURN_IF_ERROR(Setup());
    const size_t n = trace_.requests.size();
    outcomes_.resize(n);
    size_t next = 0;
    const double t0 = n ? Seconds(trace_.requests[0].arrival_us) : 0;
    const double span = n ? Seconds(trace_.requests[n - 1].arrival_us) - t0 : 0;
    sample_every_ = o_.occupancy_samples > 0 ? std::max(span, 1e-3) / o_.occupancy_samples : kInf;
    next_sample_ = t0;
    size_t progress_mark = 0;
    while (true) {
      const double ta = next < n ? Seconds(trace_.requests[next].arrival_us) : kInf;
      Instance* busiest = nullptr;
      for (Instance& in : instances_) {
        if (in.busy() && (busiest == nullptr || in.now < busiest->now)) busiest = &in;
      }
      if (next < n && (busiest == nullptr || ta <= busiest->now)) {
        Route(next++, ta);
        if (o_.progress && next >= progress_mark) {
          o_.progress(static_cast<double>(next) / static_cast<double>(n));
          progress_mark = next + std::max<size_t>(1, n / 200);
        }
        continue;
      }
      if (busiest == nullptr) break;
      Step(*busiest, ta);
      Sample(busiest->now);
    }
    return Finish(t0);
  }

 private:
  static double Seconds(Micros us) { return static_cast<double>(us) / 1e6; }

  Status Setup() {
    if (o_.block_size < 1 || o_.block_size > 512 || (o_.block_size & (o_.block_size - 1)) != 0) {
      return InvalidArgument(fmt::format("--block-size {}: must be a power of two from 1 to 512", o_.block_size));
    }
    if (o_.instances < 1) return InvalidArgument(fmt::format("--instances {}: must be at least 1", o_.instances));
    if (o_.max_batch < 1) return InvalidArgument(fmt::format("max batch {}: must be at least 1", o_.max_batch));
    const int64_t caps[kNumTiers] = {o_.device_tokens, o_.host_tokens, o_.disk_tokens};
    if (o_.device_tokens < o_.block_size) {
      return InvalidArgument(fmt::format("--device-tokens {}: must hold at least one block of {} tokens",
                                         o_.device_tokens, o_.block_size));
    }
    instances_ = std::vector<Instance>(static_cast<size_t>(o_.instances));
    for (Instance& in : instances_) {
      for (int t = 0; t < kNumTiers; ++t) {
        if (caps[t] < o_.block_size) continue;  // no such tier
        if (caps[t] / o_.block_size > INT32_MAX) {
          return InvalidArgument(fmt::format("{} tier: {} tokens is more blocks than a pool holds", TierName(Tier(t)),
                                             caps[t]));
        }
        KvCacheConfig c;
        c.num_blocks = static_cast<int32_t>(caps[t] / o_.block_size);
        c.shape.block_size = o_.block_size;
        c.storage = KvStorageMode::kMetadataOnly;
        c.eviction_policy = o_.policy;
        c.clock = &in.clock;
        // The kv-aware router sees the device pools only through their events.
        if (t == 0 && o_.router == RouterKind::kKvAware) c.event_buffer_limit = size_t{1} << 20;
        auto cache = KvCache::Create(c);
        if (!cache.ok()) {
          if (cache.status().code() == StatusCode::kInvalidArgument) {
            return InvalidArgument(fmt::format("--policy {}: {}", o_.policy, cache.status().message()));
          }
          return cache.status();
        }
        in.tiers[t] = std::move(cache).value();
      }
    }
    keys_.resize(trace_.tenants.size());
    for (size_t t = 0; t < trace_.tenants.size(); ++t) keys_[t].cache_salt = trace_.tenants[t];
    return Status::Ok();
  }

  int32_t InputTokens(const TraceRequest& r) const { return std::max(1, r.input_tokens); }

  void Tokens(size_t index, std::vector<Token>* out) {
    const TraceRequest& r = trace_.requests[index];
    ContentTokens(trace_, r, index, out);
    if (out->empty()) out->push_back(0);  // an empty prompt still needs one token
  }

  AdmissionRequest Request(size_t index, std::span<const Token> tokens, RetentionSpec* retention) const {
    const TraceRequest& r = trace_.requests[index];
    AdmissionRequest a;
    a.tokens = tokens;
    a.keys = keys_[r.tenant < keys_.size() ? r.tenant : 0];
    retention->ranges.clear();
    for (const TracePriorityRange& range : r.ranges) {
      const int32_t end = std::min<int32_t>(range.end, static_cast<int32_t>(tokens.size()));
      if (range.begin < end) retention->ranges.push_back({{range.begin, end}, range.priority, std::nullopt});
    }
    a.retention = *retention;
    return a;
  }

  void Route(size_t index, double ta) {
    const TraceRequest& r = trace_.requests[index];
    size_t pick = 0;
    switch (o_.router) {
      case RouterKind::kRoundRobin:
        pick = round_robin_++ % instances_.size();
        break;
      case RouterKind::kLeastLoaded:
        for (size_t i = 1; i < instances_.size(); ++i) {
          const auto load = [&](const Instance& in) { return in.admitted() + static_cast<int64_t>(in.waiting.size()); };
          if (load(instances_[i]) < load(instances_[pick])) pick = i;
        }
        break;
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
          index_->ApplyEvents(static_cast<WorkerId>(i), ToIndexEvents(instances_[i].tiers[0]->DrainEvents()));
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
    if (!in.busy()) in.now = std::max(in.now, ta);
    in.waiting.push_back(index);
    in.waiting_blocks += InputTokens(r) / o_.block_size;
  }

  // A prompt chunk of this step: tokens [begin, end) of prefilling[entry].
  struct Chunk {
    size_t entry = 0;
    int32_t begin = 0, end = 0;
  };

  // One scheduler step of `in` (or several decode-only steps at once), as the
  // engine's scheduler plans it: decoding requests first (one token each;
  // they are the oldest), then the prompts in progress, then admissions in
  // arrival order, each prompt taking what is left of the token budget.
  void Step(Instance& in, double next_arrival) {
    KvCache& device = *in.tiers[0];
    const int32_t bs = o_.block_size;
    chunks_.clear();
    int64_t budget = o_.max_batch_tokens > 0 ? o_.max_batch_tokens : std::numeric_limits<int64_t>::max();
    const int64_t batch = in.num_running;
    budget -= std::min(budget, batch);
    const auto take = [&](size_t entry) {
      const Prefilling& p = in.prefilling[entry];
      const int32_t count = static_cast<int32_t>(std::min<int64_t>(budget, p.tokens - p.computed));
      chunks_.push_back({entry, p.computed, p.computed + count});
      budget -= count;
    };
    for (size_t e = 0; e < in.prefilling.size() && budget > 0; ++e) take(e);
    double onboard = 0;
    in.clock.Set(static_cast<Micros>(in.now * 1e6));
    while (budget > 0 && !in.waiting.empty() && in.admitted() < o_.max_batch) {
      const size_t index = in.waiting.front();
      const TraceRequest& r = trace_.requests[index];
      Tokens(index, &tokens_);
      const AdmissionRequest req0 = Request(index, tokens_, &retention_);
      AdmissionRequest req = req0;
      req.reserve_tokens = std::max(0, r.output_tokens - 1);
      AdmissionPlan plan = device.PlanAdmission(req);
      const int64_t total_blocks = (static_cast<int64_t>(tokens_.size()) + req.reserve_tokens + bs - 1) / bs;
      if (total_blocks > device.num_blocks()) {  // could never fit
        ++rejected_;
        PopWaiting(in);
        continue;
      }
      if (!plan.fits) break;  // wait for running requests to finish
      const int32_t device_hit_blocks = plan.hit_blocks;
      auto seq = device.Admit(req, std::move(plan));
      if (!seq.ok()) break;
      PopWaiting(in);
      const int32_t n = static_cast<int32_t>(tokens_.size());
      const int32_t max_hit = (n - 1) / bs;
      int32_t covered = device_hit_blocks;
      int32_t tier_blocks[kNumTiers] = {device_hit_blocks, 0, 0};
      for (int t = 1; t < kNumTiers; ++t) {
        if (!in.tiers[t]) continue;
        const int32_t m = std::min(max_hit, in.tiers[t]->Lookup(tokens_, req.keys).matched_blocks);
        if (m > covered) {
          tier_blocks[t] = m - covered;
          onboard += cost_.OnboardSeconds(static_cast<Tier>(t), int64_t{tier_blocks[t]} * bs);
          covered = m;
        }
      }
      for (int t = 0; t < kNumTiers; ++t) {
        result_.tiers[t].hit_blocks += static_cast<uint64_t>(tier_blocks[t]);
        result_.tiers[t].hit_tokens += static_cast<uint64_t>(tier_blocks[t]) * bs;
      }
      result_.query_tokens += static_cast<uint64_t>(n);
      result_.query_blocks += static_cast<uint64_t>(n / bs);
      AccountRetention(r, n, device_hit_blocks * bs);
      // Tier writes: every computed prompt is written through to each lower
      // tier (LMCache's default), which its own policy then keeps or evicts.
      for (int t = 1; t < kNumTiers; ++t) {
        if (!in.tiers[t]) continue;
        KvCache& tier = *in.tiers[t];
        AdmissionPlan tp = tier.PlanAdmission(req0);
        if (!tp.fits) continue;
        auto ts = tier.Admit(req0, std::move(tp));
        if (!ts.ok()) continue;
        tier.MarkComputed(*ts, n).IgnoreError();
        tier.Release(*ts).IgnoreError();
      }
      size_t slot;
      if (!in.free_slots.empty()) {
        slot = in.free_slots.back();
        in.free_slots.pop_back();
      } else {
        slot = in.running.size();
        in.running.emplace_back();
      }
      in.running[slot] = Running{*seq, index, 0};
      outcomes_[index].queue = in.now - Seconds(r.arrival_us);
      in.prefilling.push_back({slot, covered * bs, n});
      take(in.prefilling.size() - 1);
    }

    if (chunks_.empty() && batch == 0) {
      // Nothing runs and the head still does not fit: only a pool smaller
      // than the request can do that (checked above), so this is unreachable
      // in practice; reject rather than spin.
      if (!in.waiting.empty()) ++rejected_, PopWaiting(in);
      return;
    }
    int64_t k = batch > 0 ? 1 : 0;
    double step = onboard;
    if (chunks_.empty() && batch > 0) {
      // Decode only: jump to the next completion, or to the next arrival.
      k = in.finish.top().first - in.decode_steps;
      const double one = cost_.DecodeStepSeconds(batch, in.context_sum);
      if (next_arrival < kInf && one > 0) {
        const double until = std::ceil((next_arrival - in.now) / one);
        if (until >= 1 && until < static_cast<double>(k)) k = static_cast<int64_t>(until);
        else if (until < 1) k = 1;
      }
      k = std::max<int64_t>(k, 1);
      const int64_t mean_context = in.context_sum + batch * (k - 1) / 2;
      step += static_cast<double>(k) * cost_.DecodeStepSeconds(batch, mean_context);
    } else {
      StepWork work;
      work.decode_batch = batch;
      work.decode_context = in.context_sum;
      for (const Chunk& c : chunks_) {
        const int64_t b = c.begin, e = c.end;
        work.prefill_tokens += e - b;
        work.prefill_context += e;
        work.prefill_attended += (e * (e + 1) - b * (b + 1)) / 2;
      }
      step += cost_.StepSeconds(work);
    }
    in.now += step;
    in.clock.Set(static_cast<Micros>(in.now * 1e6));
    in.decode_steps += k;
    in.context_sum += batch * k;

    // Chunks went to the prompts in queue order, so those whose prompt is now
    // complete are at the front.
    for (const Chunk& c : chunks_) {
      Prefilling& p = in.prefilling[c.entry];
      p.computed = c.end;
      Running& run = in.running[p.slot];
      device.MarkComputed(run.seq, c.end).IgnoreError();
      if (c.end < p.tokens) continue;
      const TraceRequest& r = trace_.requests[run.request];
      outcomes_[run.request].ttft = in.now - Seconds(r.arrival_us);
      run.first_token_s = in.now;
      if (r.output_tokens <= 1) {
        Complete(in, p.slot);
        continue;
      }
      ++in.num_running;
      in.context_sum += p.tokens + 1;
      in.finish.emplace(in.decode_steps + (r.output_tokens - 1), p.slot);
    }
    while (!in.prefilling.empty() && in.prefilling.front().computed == in.prefilling.front().tokens) {
      in.prefilling.pop_front();
    }
    while (!in.finish.empty() && in.finish.top().first <= in.decode_steps) {
      const size_t slot = in.finish.top().second;
      in.finish.pop();
      const Running& run = in.running[slot];
      const TraceRequest& r = trace_.requests[run.request];
      --in.num_running;
      in.context_sum -= InputTokens(r) + r.output_tokens;
      Complete(in, slot);
    }
    peak_running_ = std::max(peak_running_, in.num_running + static_cast<int32_t>(0));
    peak_in_use_ = std::max(peak_in_use_, device.num_blocks() - device.num_available_blocks());
  }

  void PopWaiting(Instance& in) {
    in.waiting_blocks -= InputTokens(trace_.requests[in.waiting.front()]) / o_.block_size;
    in.waiting.pop_front();
  }

  void Complete(Instance& in, size_t slot) {
    const Running& run = in.running[slot];
    const TraceRequest& r = trace_.requests[run.request];
    RequestOutcome& out = outcomes_[run.request];
    out.done = true;
    if (r.output_tokens > 1) out.tpot = (in.now - run.first_token_s) / (r.output_tokens - 1);
    result_.output_tokens += static_cast<uint64_t>(std::max(r.output_tokens, 0));
    last_completion_ = std::max(last_completion_, in.now);
    in.tiers[0]->Release(run.seq).IgnoreError();
    in.free_slots.push_back(slot);
  }

  // Durable (priority above the default) vs one-off prompt tokens, per block
  // as the cache classes them (a request without ranges is all default): a block takes the highest priority among its
  // tokens' ranges.
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

  void Sample(double now) {
    if (now < next_sample_) return;
    while (next_sample_ <= now) next_sample_ += sample_every_;
    OccupancySample s;
    s.t_seconds = now;
    for (const Instance& in : instances_) {
      const CacheMetrics m = in.tiers[0]->Metrics();
      s.in_use_blocks += m.in_use_blocks + m.pinned_blocks;
      s.cached_blocks += m.cached_blocks;
      s.running += in.num_running;
      s.waiting += static_cast<int32_t>(in.waiting.size());
    }
    result_.occupancy.push_back(s);
  }

  Result<SimResult> Finish(double t0) {
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
    res.makespan_s = res.requests ? last_completion_ - t0 : 0;
    if (res.makespan_s > 0) {
      res.requests_per_second = static_cast<double>(res.requests) / res.makespan_s;
      res.output_tokens_per_second = static_cast<double>(res.output_tokens) / res.makespan_s;
    }
    for (const Instance& in : instances_) res.evictions += in.tiers[0]->Metrics().evictions;
    res.peak_running = peak_running_;
    res.peak_in_use_blocks = peak_in_use_;
    res.cost_model = cost_.Describe();
    return std::move(res);
  }

  const Trace& trace_;
  const CostModel& cost_;
  SimOptions o_;
  std::vector<Instance> instances_;
  std::vector<ExtraKeys> keys_;
  std::vector<RequestOutcome> outcomes_;
  std::vector<Token> tokens_, route_tokens_;
  std::unique_ptr<BlockIndex> index_;  // kv-aware only
  std::unique_ptr<Router> router_;
  ManualClock route_clock_;
  std::vector<BlockHash> route_keys_;
  std::vector<WorkerLoad> loads_;
  RetentionSpec retention_;
  std::vector<Chunk> chunks_;
  size_t round_robin_ = 0;
  int64_t rejected_ = 0;
  int32_t peak_running_ = 0;
  int32_t peak_in_use_ = 0;
  double last_completion_ = 0;
  double sample_every_ = kInf, next_sample_ = 0;
  SimResult result_;
};

}  // namespace

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
