// Simulator: replays a trace through the production cache core.
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
// each request). Decode-only stretches run at once
// (Scheduler::DecodeStretch), so millions of decode steps cost little.
//
// Callers: `kvstack sim` (CLI), tests, the review and sweep below.
// Thread safety: none needed; every function takes its inputs by value or
// const reference and owns its caches.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvstack/sizing.h"
#include "kvstack/status.h"
#include "kvstack/trace.h"

namespace kvstack::sim {

// ---------------------------------------------------------------------------
// Cost model

enum class Tier { kDevice = 0, kHost = 1, kDisk = 2 };
inline constexpr int kNumTiers = 3;
std::string_view TierName(Tier tier);

// The work of one scheduler step.
struct StepWork {
  int64_t prefill_tokens = 0;    // prompt tokens computed (the step's chunks summed)
  int64_t prefill_context = 0;   // positions the chunks reach (their ends), summed
  int64_t prefill_attended = 0;  // over the prompt tokens, the positions each attends over, summed
  int64_t decode_batch = 0;      // decoding sequences, one token each
  int64_t decode_context = 0;    // their contexts summed
};

// Seconds that the work of one step takes. Implementations are immutable.
class CostModel {
 public:
  virtual ~CostModel() = default;
  // Prefill of `new_tokens` prompt tokens (summed over the step's requests)
  // that attend over `attended_tokens` in total (cached prefix included).
  virtual double PrefillSeconds(int64_t new_tokens, int64_t attended_tokens) const = 0;
  // One decode step of `batch` sequences whose contexts sum to `context_tokens`.
  virtual double DecodeStepSeconds(int64_t batch, int64_t context_tokens) const = 0;
  // A step that mixes prompt chunks and decoding. Default: the prefill (of
  // prefill_tokens over prefill_context) plus the decode step, added.
  virtual double StepSeconds(const StepWork& work) const;
  // Moving `tokens` of KV from `tier` to the device (one transfer).
  virtual double OnboardSeconds(Tier tier, int64_t tokens) const = 0;
  // KV bytes of one token on the device (for occupancy and capacity in bytes);
  // 0 when the model does not say.
  virtual int64_t KvBytesPerToken() const = 0;
  // "name: value (why)" lines, printed with every result.
  virtual std::vector<std::string> Describe() const = 0;
};

// Bandwidth and latency of a lower tier, device-bound direction.
struct TierLink {
  double bytes_per_second = 0;
  double latency_seconds = 0;
};

// Roofline on one GPU preset: prefill is bound by compute (2 FLOP per active
// parameter per token, plus attention 4 x layers x heads x head_dim per
// attended token pair), decode by memory bandwidth (weights once per step
// plus every sequence's KV), each the larger of its compute and memory times
// (at the given efficiencies); tier transfers by bandwidth plus latency.
struct RooflineOptions {
  sizing::ModelSpec model;
  sizing::GpuSpec gpu;
  int64_t tensor_parallel = 1;
  sizing::Precision weights = sizing::Precision::kBf16;
  sizing::Precision kv = sizing::Precision::kBf16;
  double compute_efficiency = 0.6;  // achieved / peak FLOP/s (MFU of a good prefill)
  double memory_efficiency = 0.8;   // achieved / peak bandwidth of decode
  TierLink host{25e9, 10e-6};       // PCIe Gen4 x16, pinned host memory
  TierLink disk{5e9, 100e-6};       // one NVMe SSD
};
// On failure: kInvalidArgument naming the bad field (a validation of the
// model and GPU, tensor_parallel < 1, an efficiency outside (0, 1]).
Result<std::unique_ptr<CostModel>> MakeRooflineCostModel(const RooflineOptions& options);

// The costs of `kvstack bench engine --profile FILE` (format
// "kvstack-bench-engine/1"), for the first cost model in the file (or the one
// whose model_path contains `model_filter`). With its "step_ms_fit" (a
// profile measured at several prompt lengths): every step costs base_ms +
// per_token_ms x its tokens (prompt and decode) + per_attended_ms x the
// positions they attend over, so prefix-cached prompts and long contexts cost
// what the engine measured. Without it (one prompt length): prefill ms per
// token (the mean of the measured points), decode step ms = base_ms +
// per_sequence_ms x batch (the fitted line, floored at the smallest measured
// step), neither depending on context. Tier
// links as in RooflineOptions. On failure: kInvalidArgument naming the file
// and the missing or malformed field.
Result<std::unique_ptr<CostModel>> MakeProfileCostModel(const std::string& json_text, const std::string& source,
                                                        const std::string& model_filter = "");

// ---------------------------------------------------------------------------
// Replay

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
  // do (utilization above 1) and requests were still waiting at the end of
  // the arrivals.
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

// ---------------------------------------------------------------------------
// Capacity sweep, review

struct SweepPoint {
  std::string policy;
  int64_t device_tokens = 0;
  double token_hit_rate = 0;
  double block_hit_rate = 0;
  double ttft_p50_s = 0;
};
// Capacities on a log axis: `points` values from `min_tokens` to `max_tokens`
// (both rounded to blocks), each replayed under each policy.
// REQUIRES: points >= 2, 0 < min_tokens <= max_tokens (else kInvalidArgument).
Result<std::vector<SweepPoint>> SweepCapacity(const Trace& trace, const CostModel& cost, const SimOptions& base,
                                              const std::vector<std::string>& policies, int64_t min_tokens,
                                              int64_t max_tokens, int points);
// Tokens a cache needs to hold every distinct full block of the trace (the
// capacity past which no eviction happens), at `block_size`.
int64_t DistinctPromptTokens(const Trace& trace, int32_t block_size);

// A prefix whose reuse would pay for a pin.
struct PinCandidate {
  int64_t tokens = 0;       // prefix length
  int64_t reuses = 0;       // requests after the first that start with it
  int64_t score = 0;        // reuses x tokens: prefill tokens a pin could save
  int64_t kv_bytes = 0;     // capacity it would take (0 when unknown)
  std::string tenant;
  std::string example;      // the first block ids, for recognition
};
// The top `limit` prefixes by score, none a prefix of another, from the
// trace's content ids (trace analysis only; no cache involved).
std::vector<PinCandidate> FindPinCandidates(const Trace& trace, int64_t kv_bytes_per_token, size_t limit);

struct ContextStats {
  std::string group;  // "all" or a tenant
  int64_t requests = 0;
  Percentiles input_tokens, total_tokens;  // prompt, prompt + output
};
std::vector<ContextStats> ContextPercentiles(const Trace& trace);

// The six questions of `kvstack sim --review`, answered from one trace.
struct Review {
  std::vector<ContextStats> contexts;
  // HBM split at the replay's peak: from sizing, with KV at the peak's blocks.
  std::optional<sizing::SizingReport> sizing;
  int64_t peak_kv_bytes_per_gpu = 0;
  int32_t peak_running = 0;
  std::vector<PinCandidate> pins;
  std::vector<SimResult> policies;  // one replay per policy, same capacity
  bool has_priorities = false;
  SimResult baseline;               // the first policy's replay
  // The counterfactual: the cache shrunk until the hit rate halves.
  SimResult halved;
  int64_t halved_device_tokens = 0;
  std::vector<SweepPoint> sweep;
};

struct ReviewOptions {
  std::vector<std::string> policies{"lru", "priority-lru", "lfu"};
  int sweep_points = 8;
  size_t pin_limit = 10;
  // For the HBM split; absent: no split (a --profile cost model).
  std::optional<sizing::ModelSpec> model;
  std::optional<sizing::GpuSpec> gpu;
  sizing::SizingOptions sizing;
};
Result<Review> RunReview(const Trace& trace, const CostModel& cost, const SimOptions& base,
                         const ReviewOptions& options);

// ---------------------------------------------------------------------------
// Reports

// Plain-text renderings for the terminal.
std::string FormatSimResult(const SimResult& result);
// One line: the load, or how overloaded the replay was. Empty without arrivals.
std::string FormatLoad(const LoadReport& load);
std::string FormatSweep(const std::vector<SweepPoint>& sweep);
std::string FormatReview(const Review& review);

// A self-contained HTML page (inline CSS, inline SVG charts, a small inline
// script that marks each chart data-rendered="1" once it holds data; no
// external asset). Charts: hit rate vs capacity per policy (log axis), TTFT
// distribution, memory split, occupancy over time; those without data are
// drawn empty with a note.
struct HtmlReportInput {
  std::string title;
  std::string trace_source;
  const SimResult* result = nullptr;               // required
  const std::vector<SweepPoint>* sweep = nullptr;  // optional
  const Review* review = nullptr;                  // optional
};
std::string RenderHtmlReport(const HtmlReportInput& input);

}  // namespace kvstack::sim
