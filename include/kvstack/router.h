// Router: picks the worker of a fleet for each request, over a BlockIndex
// (router_index.h) built from the workers' KV events. One policy, two
// drivers: `kvstack router` (real workers over HTTP) and `kvstack sim
// --router kv-aware` (simulated instances) call the same Route().
//
// Policies:
//   kv-aware      lowest cost wins, where
//                   cost = blocks to compute + queue_weight * queued prefill
//                          blocks + running_weight * running requests
//                   blocks to compute = prompt blocks - credit,
//                   credit = sum over the longest held prefix of
//                            tier weight (device 1.0, host 0.75, disk 0.25,
//                            remote 0.1; a prediction counts as device)
//                            x (1 for durable blocks, oneoff_weight below);
//                 ties go to the fewest in flight, then round-robin; with a
//                 temperature > 0, a softmax over -cost picks instead.
//                 Session affinity: a request with a session_id goes to
//                 the worker its session last went to, for `affinity_ttl`,
//                 unless that worker is down or has `overload_in_flight`
//                 requests or more.
//   round-robin, least-loaded (fewest queued blocks + running), random:
//                 the baselines, as their names say; they ignore session_id,
//                 since sticking a conversation to one worker is itself
//                 routing by where its context is warm.
// After a kv-aware pick, the request's keys become predicted blocks of the
// chosen worker for `prediction_ttl` (0: no predictions), so siblings arriving before its events
// follow it instead of scattering.
//
// Thread safety: none; the caller serializes Route() with the index's
// updates (kvstack router holds one mutex over both).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kvstack/clock.h"
#include "kvstack/router_index.h"
#include "kvstack/status.h"

namespace kvstack {

enum class RoutingPolicy : uint8_t { kKvAware, kRoundRobin, kLeastLoaded, kRandom };
Result<RoutingPolicy> ParseRoutingPolicy(std::string_view text);  // InvalidArgument lists the names
std::string_view RoutingPolicyName(RoutingPolicy p);

// Why a worker was picked (metrics: decisions by reason).
enum class RouteReason : uint8_t { kKvHit, kLoad, kAffinity, kRoundRobin, kLeastLoaded, kRandom };
std::string_view RouteReasonName(RouteReason r);
inline constexpr int kNumRouteReasons = 6;

struct RouterOptions {
  RoutingPolicy policy = RoutingPolicy::kKvAware;
  double tier_weight[kNumStorageTiers] = {1.0, 0.75, 0.25, 0.1};  // device, host, disk, remote
  double oneoff_weight = 0.8;   // a one-off block's credit relative to a durable one's
  // Load against locality. A miss does not only cost its own blocks: it
  // evicts other prefixes from the worker it lands on, so pricing load at
  // its face value (1.0, the first defaults) spread tenants over the fleet
  // whenever one worker was busier. scripts/bench-fleet, 8 tenants x 192
  // system tokens, a tenth of the hot prefixes per worker (400 KiB): kv-aware's hit
  // rate 0.63-0.67x of the pooled ideal at 1.0, 1.04x at 0.25 (TTFT p50
  // 0.78-0.96x -> 0.76-0.81x of round-robin); the lighter workload where
  // every worker holds every system prompt was no worse (BENCHMARKS.md).
  double queue_weight = 0.25;    // per prefill block queued on the worker
  double running_weight = 0.25;  // per request running on the worker
  double temperature = 0;       // 0: lowest cost; > 0: softmax sampling
  Micros prediction_ttl = 2'000'000;
  Micros affinity_ttl = 300'000'000;
  int32_t overload_in_flight = 64;  // affinity yields to load at this many
  uint64_t seed = 1;                // random and softmax choices
  // Equal kv-aware costs: kRotate prefers the fewest in flight, then takes
  // workers in turn (spreads cold requests); kLowestId takes the first (the
  // simulator's deterministic choice).
  enum class TieBreak : uint8_t { kRotate, kLowestId } tie_break = TieBreak::kRotate;
};

// What the router knows of a worker's load now.
struct WorkerLoad {
  bool healthy = true;
  int32_t running = 0;            // requests decoding or prefilling
  int32_t waiting = 0;            // queued, not admitted
  int64_t queued_prefill_blocks = 0;
  int32_t in_flight() const { return running + waiting; }
};

struct RouteQuery {
  std::span<const BlockHash> keys;  // the prompt's full blocks, as the workers key them
  int32_t prompt_blocks = 0;        // full blocks of the prompt (keys.size() unless truncated)
  std::string session_id;           // empty: none
};

struct RouteDecision {
  WorkerId worker = -1;  // -1: no healthy worker
  RouteReason reason = RouteReason::kLoad;
  double cost = 0;
  IndexMatch match;      // the chosen worker's held prefix for this request
  double credited_blocks = 0;
};

class Router {
 public:
  // REQUIRES: index and clock outlive the router.
  Router(RouterOptions options, BlockIndex* index, const Clock* clock);

  // Picks a worker among `loads` (one per index worker, same order) and
  // records the pick (predictions, affinity). A worker that is not healthy is
  // never picked; worker -1 when none is.
  RouteDecision Route(const RouteQuery& query, std::span<const WorkerLoad> loads);
  // The kv-aware cost of one worker (for views and tests); changes nothing.
  double Cost(const RouteQuery& query, WorkerId worker, const WorkerLoad& load, IndexMatch* match,
              double* credited) const;

  // Forgets a session (its worker went down, say).
  void ForgetSession(const std::string& session_id) { sessions_.erase(session_id); }
  // Drops sessions whose TTL has passed (call now and then: they are kept
  // until then).
  void ForgetExpiredSessions();
  size_t sessions() const { return sessions_.size(); }
  const RouterOptions& options() const { return options_; }

 private:
  WorkerId NextRoundRobin(std::span<const WorkerLoad> loads);
  struct Session {
    WorkerId worker;
    Micros until;
  };

  RouterOptions options_;
  BlockIndex* index_;
  const Clock* clock_;
  std::mt19937_64 rng_;
  uint64_t round_robin_ = 0;
  std::unordered_map<std::string, Session> sessions_;
};

}  // namespace kvstack
