// Simulator replay: a trace through the production scheduler, cache core and
// tier chain, timed by a cost model.
//
// `Simulate` is a discrete-event replay of a Trace (trace.h) through KvCache
// instances in metadata-only mode: the same admission, prefix matching,
// retention and eviction code the engine runs, with no KV bytes. Time comes
// from a CostModel (a roofline per GPU preset, or the costs `kvstack bench
// engine --profile` measured), never from the host's clock, so a replay is
// deterministic: the same trace and options give the same result.
//
// Production code in a replay: each instance runs the engine's own
// engine::Scheduler (admission, chunked prefill within max_batch_tokens,
// preemption by priority then age, recompute) over a metadata-only KvCache,
// and its lower tiers are a TierChain of metadata-only tiers (the offload
// gate, tier eviction, promotion) with tier_policy.h's onboard-or-recompute
// and prefetch rules; the kv-aware router is the Router `kvstack router`
// runs, fed by the instances' events. Modelled: time (the cost model prices
// each step and each transfer) and the sampled tokens (stand-ins unique to
// each request). Stretches of alike steps (decoding, one prompt advancing)
// run at once (Scheduler::PlanStretch), so millions of steps cost little.
//
// Callers: `kvstack sim` (CLI), tests, the sweep and review (sim_review.h).
// Thread safety: none needed; every function takes its inputs by value or
// const reference and owns its caches.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvstack/eviction_policy.h"
#include "kvstack/sim_cost_model.h"
#include "kvstack/status.h"
#include "kvstack/trace.h"

namespace kvstack::sim {

enum class RouterKind { kRoundRobin, kLeastLoaded, kKvAware };
// "round-robin", "least-loaded", "kv-aware".
Result<RouterKind> ParseRouter(std::string_view text);
std::string_view RouterName(RouterKind router);

struct SimOptions {
  // The defaults are `kvstack serve`'s; ServeDifferences() lists every
  // option where a replay departs from what the server would do.
  std::string policy = "priority-lru";  // an EvictionPolicy name (eviction_policy.h)
  int32_t block_size = 16;     // tokens per cache block (a power of two, 1-512)
  int64_t device_tokens = 0;   // KV capacity per instance, in tokens (>= one block)
  int64_t host_tokens = 0;     // 0: no host tier
  int64_t disk_tokens = 0;     // 0: no disk tier
  int32_t instances = 1;
  RouterKind router = RouterKind::kRoundRobin;
  int32_t max_batch = 64;      // running sequences per instance (the engine's max_running)
  // Tokens one step computes at most (running requests first, oldest first,
  // then admissions), as the engine's --max-batch-tokens; 0: no budget.
  int32_t max_batch_tokens = 256;
  // The tier chain's offload gate (TierChainOptions): an evicted device
  // block goes down when its priority or its hits reach these.
  Priority offload_min_priority = 50;
  uint32_t offload_min_hits = 2;
  // Onboard a tier's blocks only when the cost model says that is faster
  // than recomputing them (the engine's rule, with measured rates).
  bool onboard_only_when_faster = true;
  // A queued request's blocks below the host tier are brought up to it.
  bool prefetch = true;
  // Jump over stretches of alike steps (Scheduler::PlanStretch) in one
  // go; false steps through every one, as the engine does. The results are
  // the same request by request (a test holds them so); false is slower and
  // there to check that.
  bool stretches = true;
  // 0: requests arrive at the trace's times (open loop). N > 0: closed
  // loop, as a load generator with N clients runs: each client sends the
  // trace's next request when its previous one has completed (or was
  // rejected), the first N at the first arrival; the trace's times are
  // otherwise ignored. Instances step independently, so a request can be
  // routed to one that has already run past its arrival; it then waits.
  int32_t clients = 0;
  // Keep one SimRequestRecord per completed request (tests, comparisons).
  bool record_requests = false;
  // Occupancy samples kept (evenly spaced in simulated time, at step ends).
  int32_t occupancy_samples = 200;
  // Called now and then with the fraction of requests done (a progress bar).
  std::function<void(double)> progress;
};

// "--flag value (serve: value)" for every option of `options` that differs
// from what `kvstack serve` runs with by default; empty when none does.
std::vector<std::string> ServeDifferences(const SimOptions& options);

struct Percentiles {
  double p50 = 0, p95 = 0, p99 = 0, mean = 0, max = 0;
};
// Nearest-rank percentiles of `values` (sorted in place). All zero if empty.
Percentiles ComputePercentiles(std::vector<double>* values);

struct TierHits {
  uint64_t hit_tokens = 0;
  uint64_t hit_blocks = 0;
};

struct OccupancySample {
  double t_seconds = 0;
  int32_t in_use_blocks = 0;  // held by running requests (summed over instances)
  int32_t cached_blocks = 0;  // evictable prefix cache
  int32_t running = 0;
  int32_t waiting = 0;
};

// One completed request, as the replay saw it (SimOptions::record_requests).
struct SimRequestRecord {
  int64_t index = 0;          // in the trace
  int32_t instance = 0;
  double admitted_s = 0;      // first admission (seconds since the first arrival)
  double first_token_s = 0;
  double finished_s = 0;
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;     // at first admission: device hits plus tier blocks onboarded
  int32_t onboarded_tokens = 0;  // brought up from a tier (all admissions)
  int32_t preemptions = 0;
};

// How far arrivals outran the fleet. The work is the cost model's seconds of
// every step the instances ran; spread over the span of arrivals it says how
// many instances of this kind were busy on average.
struct LoadReport {
  double arrival_span_s = 0;     // first to last arrival
  double busy_seconds = 0;       // summed over instances
  double utilization = 0;        // busy_seconds / (instances x arrival_span_s)
  int32_t waiting_at_last_arrival = 0;  // queued requests (all instances) when the last one arrived
  // Queueing grew without bound: more work arrived than the instances could
  // do (utilization above 1) and, at the end of the arrivals, more requests
  // were waiting than a transient leaves (over one an instance and over 2% of
  // all arrivals). Utilization alone does not say it: a decode step costs
  // about the same at any batch, so an instance that keeps up is still busy
  // all the time.
  bool overloaded = false;
  // Instances that would have had the work at utilization <= 1: a lower
  // bound, since smaller batches on more instances are less efficient.
  int32_t instances_to_keep_up = 0;
};

struct SimResult {
  std::string policy;
  int64_t device_tokens = 0;  // per instance, after rounding to blocks
  int32_t block_size = 0;
  int64_t requests = 0;       // completed
  int64_t rejected = 0;       // larger than one instance's whole device cache
  uint64_t query_tokens = 0;  // prompt tokens of completed requests
  uint64_t query_blocks = 0;  // their full blocks
  TierHits tiers[kNumTiers];  // served from each tier (device: prefix hits)
  uint64_t output_tokens = 0;
  // Durable (retention priority above the default) vs one-off (at or below)
  // prompt tokens, and their device hits; zero when the trace has no ranges.
  uint64_t durable_tokens = 0, durable_hit_tokens = 0;
  uint64_t oneoff_tokens = 0, oneoff_hit_tokens = 0;
  uint64_t evictions = 0;
  uint64_t preemptions = 0;        // running requests sent back to wait (recomputed later)
  uint64_t offloaded_blocks = 0;   // evicted device blocks the tier chain kept
  uint64_t onboarded_blocks = 0;   // blocks brought up from a tier at admission
  uint64_t prefetched_blocks = 0;  // blocks brought up to the host tier while queued
  LoadReport load;
  std::vector<SimRequestRecord> records;  // with SimOptions::record_requests, in completion order

  Percentiles ttft_s, tpot_s, queue_s;
  std::vector<double> ttft_samples_s;  // every request's TTFT, sorted
  double makespan_s = 0;               // first arrival to last completion
  double requests_per_second = 0;      // completed / makespan
  double output_tokens_per_second = 0;
  int32_t peak_running = 0;            // one instance's most running at once
  int32_t peak_in_use_blocks = 0;      // one instance's most blocks held by running requests
  std::vector<OccupancySample> occupancy;
  std::vector<std::string> cost_model;  // CostModel::Describe()

  // What the recording server measured, read from the trace rather than
  // replayed (kvstack traces written by `kvstack serve --record-trace`), over
  // every trace request that carries it; zero / empty when none does. For
  // checking the replay's TTFT and hit rate against the real run.
  int64_t measured_requests = 0;            // requests with a measured TTFT
  Percentiles measured_ttft_s;
  std::vector<double> measured_ttft_samples_s;  // sorted
  uint64_t measured_query_tokens = 0;       // prompt tokens of requests with measured cached tokens
  uint64_t measured_cached_tokens = 0;      // of those, served by the server's prefix cache

  uint64_t HitTokens() const;  // all tiers
  double TokenHitRate(Tier tier) const;
  double BlockHitRate(Tier tier) const;
  double TotalTokenHitRate() const;
};

// Replays `trace`. On failure: kInvalidArgument naming the option (unknown
// policy, device_tokens below one block, a bad block size, instances < 1).
Result<SimResult> Simulate(const Trace& trace, const CostModel& cost, const SimOptions& options);

}  // namespace kvstack::sim
