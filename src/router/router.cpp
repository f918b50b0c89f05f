// Router: scoring and the policies (see router.h).
#include "kvstack/router.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace kvstack {

Result<RoutingPolicy> ParseRoutingPolicy(std::string_view text) {
  if (text == "kv-aware") return RoutingPolicy::kKvAware;
  if (text == "round-robin") return RoutingPolicy::kRoundRobin;
  if (text == "least-loaded") return RoutingPolicy::kLeastLoaded;
  if (text == "random") return RoutingPolicy::kRandom;
  return InvalidArgument(
      fmt::format("--policy \"{}\": expected kv-aware, round-robin, least-loaded or random", text));
}

std::string_view RoutingPolicyName(RoutingPolicy p) {
  switch (p) {
    case RoutingPolicy::kKvAware: return "kv-aware";
    case RoutingPolicy::kRoundRobin: return "round-robin";
    case RoutingPolicy::kLeastLoaded: return "least-loaded";
    case RoutingPolicy::kRandom: return "random";
  }
  return "?";
}

std::string_view RouteReasonName(RouteReason r) {
  switch (r) {
    case RouteReason::kKvHit: return "kv_hit";
    case RouteReason::kLoad: return "load";
    case RouteReason::kAffinity: return "affinity";
    case RouteReason::kRoundRobin: return "round_robin";
    case RouteReason::kLeastLoaded: return "least_loaded";
    case RouteReason::kRandom: return "random";
  }
  return "?";
}

Router::Router(RouterOptions options, BlockIndex* index, const Clock* clock)
    : options_(options), index_(index), clock_(clock ? clock : &SteadyClock::Default()), rng_(options.seed) {}

double Router::Cost(const RouteQuery& q, WorkerId worker, const WorkerLoad& load, IndexMatch* match,
                    double* credited) const {
  const IndexMatch m = index_->Match(worker, q.keys, clock_->Now());
  // Durable and one-off blocks are not told apart per tier in a match; the
  // durable share is spread evenly over the held blocks.
  const int32_t held = m.blocks - m.predicted;
  double credit = m.predicted * options_.tier_weight[0];
  for (int t = 0; t < kNumStorageTiers; ++t) credit += m.by_tier[t] * options_.tier_weight[t];
  if (held > 0) {
    const double durable_share = static_cast<double>(m.durable) / held;
    const double tier_credit = credit - m.predicted * options_.tier_weight[0];
    credit -= tier_credit * (1 - durable_share) * (1 - options_.oneoff_weight);
  }
  if (match) *match = m;
  if (credited) *credited = credit;
  return (q.prompt_blocks - credit) + options_.queue_weight * static_cast<double>(load.queued_prefill_blocks) +
         options_.running_weight * load.in_flight();
}

void Router::ForgetExpiredSessions() {
  const Micros now = clock_->Now();
  std::erase_if(sessions_, [now](const auto& kv) { return kv.second.until <= now; });
}

WorkerId Router::NextRoundRobin(std::span<const WorkerLoad> loads) {
  const size_t n = loads.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (round_robin_ + k) % n;
    if (loads[i].healthy) {
      round_robin_ = i + 1;
      return static_cast<WorkerId>(i);
    }
  }
  return -1;
}

RouteDecision Router::Route(const RouteQuery& q, std::span<const WorkerLoad> loads) {
  RouteDecision d;
  const Micros now = clock_->Now();
  const size_t n = loads.size();

  const bool sticky = options_.policy == RoutingPolicy::kKvAware && !q.session_id.empty();
  if (sticky) {
    auto it = sessions_.find(q.session_id);
    if (it != sessions_.end() && it->second.until > now) {
      const WorkerId w = it->second.worker;
      if (static_cast<size_t>(w) < n && loads[w].healthy && loads[w].in_flight() < options_.overload_in_flight) {
        d.worker = w;
        d.reason = RouteReason::kAffinity;
      }
    }
  }

  if (d.worker < 0) {
    switch (options_.policy) {
      case RoutingPolicy::kRoundRobin:
        d.worker = NextRoundRobin(loads);
        d.reason = RouteReason::kRoundRobin;
        break;
      case RoutingPolicy::kRandom: {
        std::vector<WorkerId> up;
        for (size_t i = 0; i < n; ++i) {
          if (loads[i].healthy) up.push_back(static_cast<WorkerId>(i));
        }
        if (!up.empty()) d.worker = up[std::uniform_int_distribution<size_t>(0, up.size() - 1)(rng_)];
        d.reason = RouteReason::kRandom;
        break;
      }
      case RoutingPolicy::kLeastLoaded: {
        int64_t best = std::numeric_limits<int64_t>::max();
        for (size_t k = 0; k < n; ++k) {
          const size_t i = (round_robin_ + k) % n;
          if (!loads[i].healthy) continue;
          const int64_t l = loads[i].queued_prefill_blocks + loads[i].in_flight();
          if (l < best) best = l, d.worker = static_cast<WorkerId>(i);
        }
        ++round_robin_;
        d.reason = RouteReason::kLeastLoaded;
        break;
      }
      case RoutingPolicy::kKvAware: {
        std::vector<double> cost(n, std::numeric_limits<double>::infinity());
        double best = cost[0];
        double best_credit = 0;
        const bool rotate = options_.tie_break == RouterOptions::TieBreak::kRotate;
        for (size_t k = 0; k < n; ++k) {
          const size_t i = rotate ? (round_robin_ + k) % n : k;
          if (!loads[i].healthy) continue;
          double credit = 0;
          cost[i] = Cost(q, static_cast<WorkerId>(i), loads[i], nullptr, &credit);
          const bool better = rotate ? cost[i] < best - 1e-9 || (cost[i] < best + 1e-9 && d.worker >= 0 &&
                                                                  loads[i].in_flight() < loads[d.worker].in_flight())
                                     : cost[i] < best;
          if (better) best = cost[i], best_credit = credit, d.worker = static_cast<WorkerId>(i);
        }
        ++round_robin_;
        if (d.worker >= 0 && options_.temperature > 0) {
          std::vector<double> weight(n, 0);
          for (size_t i = 0; i < n; ++i) {
            if (std::isfinite(cost[i])) weight[i] = std::exp(-(cost[i] - best) / options_.temperature);
          }
          d.worker = static_cast<WorkerId>(std::discrete_distribution<size_t>(weight.begin(), weight.end())(rng_));
          Cost(q, d.worker, loads[d.worker], nullptr, &best_credit);
        }
        d.reason = best_credit > 0 ? RouteReason::kKvHit : RouteReason::kLoad;
        break;
      }
    }
  }
  if (d.worker < 0) return d;

  d.cost = Cost(q, d.worker, loads[d.worker], &d.match, &d.credited_blocks);
  if (options_.policy == RoutingPolicy::kKvAware && options_.prediction_ttl > 0) index_->Predict(d.worker, q.keys, now + options_.prediction_ttl);
  if (sticky) sessions_[q.session_id] = Session{d.worker, now + options_.affinity_ttl};
  return d;
}

}  // namespace kvstack
