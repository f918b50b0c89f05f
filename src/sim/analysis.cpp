// Trace analysis and the multi-replay questions: capacity sweep, context
// percentiles, pin candidates, and the review that ties them together.
#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "kvstack/sim_review.h"

namespace kvstack::sim {
namespace {

namespace sz = ::kvstack::sizing;

int64_t RoundToBlocks(int64_t tokens, int32_t bs) { return std::max<int64_t>(bs, tokens / bs * bs); }

}  // namespace

int64_t DistinctPromptTokens(const Trace& trace, int32_t block_size) {
  BlockHasher hasher;
  std::unordered_set<BlockHash> seen;
  std::vector<Token> tokens;
  std::vector<BlockHash> hashes;
  std::vector<BlockHash> roots(trace.tenants.size());
  for (size_t t = 0; t < trace.tenants.size(); ++t) roots[t] = hasher.Root(ExtraKeys{"", trace.tenants[t], ""});
  for (size_t i = 0; i < trace.requests.size(); ++i) {
    const TraceRequest& r = trace.requests[i];
    ContentTokens(trace, r, i, &tokens);
    hashes.clear();
    hasher.ChainBlocks(roots[r.tenant < roots.size() ? r.tenant : 0], tokens, static_cast<size_t>(block_size), &hashes);
    seen.insert(hashes.begin(), hashes.end());
  }
  return static_cast<int64_t>(seen.size()) * block_size;
}

Result<std::vector<SweepPoint>> SweepCapacity(const Trace& trace, const CostModel& cost, const SimOptions& base,
                                              const std::vector<std::string>& policies, int64_t min_tokens,
                                              int64_t max_tokens, int points) {
  if (points < 2) return InvalidArgument(fmt::format("sweep: {} points, need at least 2", points));
  if (min_tokens < 1 || min_tokens > max_tokens) {
    return InvalidArgument(fmt::format("sweep: capacities {} to {} tokens: need 0 < min <= max", min_tokens, max_tokens));
  }
  std::vector<SweepPoint> out;
  const double ratio = static_cast<double>(max_tokens) / static_cast<double>(min_tokens);
  for (const std::string& policy : policies) {
    int64_t last = -1;
    for (int i = 0; i < points; ++i) {
      const double f = static_cast<double>(i) / (points - 1);
      const int64_t cap = RoundToBlocks(
          static_cast<int64_t>(std::llround(static_cast<double>(min_tokens) * std::pow(ratio, f))), base.block_size);
      if (cap == last) continue;
      last = cap;
      SimOptions o = base;
      o.policy = policy;
      o.device_tokens = cap;
      o.occupancy_samples = 0;
      auto r = Simulate(trace, cost, o);
      if (!r.ok()) return r.status();
      out.push_back({policy, cap, r->TotalTokenHitRate(),
                     r->query_blocks ? static_cast<double>(r->tiers[0].hit_blocks + r->tiers[1].hit_blocks +
                                                           r->tiers[2].hit_blocks) /
                                           static_cast<double>(r->query_blocks)
                                     : 0,
                     r->ttft_s.p50});
    }
  }
  return out;
}

std::vector<ContextStats> ContextPercentiles(const Trace& trace) {
  std::vector<std::vector<double>> in(trace.tenants.size()), total(trace.tenants.size());
  std::vector<double> all_in, all_total;
  for (const TraceRequest& r : trace.requests) {
    const size_t t = r.tenant < trace.tenants.size() ? r.tenant : 0;
    in[t].push_back(r.input_tokens);
    total[t].push_back(static_cast<double>(r.input_tokens) + r.output_tokens);
    all_in.push_back(r.input_tokens);
    all_total.push_back(static_cast<double>(r.input_tokens) + r.output_tokens);
  }
  std::vector<ContextStats> out;
  out.push_back({"all", static_cast<int64_t>(all_in.size()), ComputePercentiles(&all_in),
                 ComputePercentiles(&all_total)});
  if (trace.tenants.size() > 1) {
    for (size_t t = 0; t < trace.tenants.size(); ++t) {
      if (in[t].empty()) continue;
      out.push_back({t == 0 ? std::string("(no tenant)") : trace.tenants[t], static_cast<int64_t>(in[t].size()),
                     ComputePercentiles(&in[t]), ComputePercentiles(&total[t])});
    }
  }
  return out;
}

std::vector<PinCandidate> FindPinCandidates(const Trace& trace, int64_t kv_bytes_per_token, size_t limit) {
  // A prefix tree of the trace's full blocks (at the trace's content
  // granularity, or 16 tokens for token-id traces), counting the requests
  // that pass through each node.
  bool ids = false;
  for (const TraceRequest& r : trace.requests) ids = ids || !r.block_ids.empty();
  const int32_t g = ids ? trace.block_tokens : 16;
  struct Node {
    int32_t parent = -1;
    int32_t depth = 0;  // blocks
    int64_t count = 0;
    size_t first_request = 0;
  };
  std::vector<Node> nodes;
  std::unordered_map<BlockHash, int32_t> index;
  BlockHasher hasher;
  std::vector<Token> tokens;
  std::vector<BlockHash> hashes;
  for (size_t i = 0; i < trace.requests.size(); ++i) {
    const TraceRequest& r = trace.requests[i];
    ContentTokens(trace, r, i, &tokens);
    hashes.clear();
    hasher.ChainBlocks(hasher.Root(ExtraKeys{"", trace.tenants[r.tenant < trace.tenants.size() ? r.tenant : 0], ""}),
                       tokens, static_cast<size_t>(g), &hashes);
    int32_t parent = -1;
    for (size_t b = 0; b < hashes.size(); ++b) {
      auto [it, fresh] = index.try_emplace(hashes[b], static_cast<int32_t>(nodes.size()));
      if (fresh) nodes.push_back({parent, static_cast<int32_t>(b + 1), 0, i});
      ++nodes[static_cast<size_t>(it->second)].count;
      parent = it->second;
    }
  }
  std::vector<int32_t> order;
  for (size_t n = 0; n < nodes.size(); ++n) {
    if (nodes[n].count > 1) order.push_back(static_cast<int32_t>(n));
  }
  const auto score = [&](int32_t n) { return (nodes[n].count - 1) * int64_t{nodes[n].depth} * g; };
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return score(a) != score(b) ? score(a) > score(b) : a < b;
  });
  std::vector<int32_t> chosen;
  const auto is_ancestor = [&](int32_t a, int32_t of) {
    for (int32_t p = nodes[of].parent; p >= 0; p = nodes[p].parent) {
      if (p == a) return true;
    }
    return false;
  };
  std::vector<PinCandidate> out;
  for (int32_t n : order) {
    if (out.size() >= limit) break;
    bool related = false;
    for (int32_t c : chosen) related = related || is_ancestor(c, n) || is_ancestor(n, c);
    if (related) continue;
    chosen.push_back(n);
    const Node& node = nodes[n];
    const TraceRequest& r = trace.requests[node.first_request];
    PinCandidate p;
    p.tokens = int64_t{node.depth} * g;
    p.reuses = node.count - 1;
    p.score = score(n);
    p.kv_bytes = p.tokens * kv_bytes_per_token;
    p.tenant = r.tenant < trace.tenants.size() ? trace.tenants[r.tenant] : "";
    if (!r.block_ids.empty()) {
      const size_t shown = std::min<size_t>(4, static_cast<size_t>(node.depth));
      for (size_t k = 0; k < shown; ++k) p.example += (k ? "," : "") + std::to_string(r.block_ids[k]);
      if (shown < static_cast<size_t>(node.depth)) p.example += ",...";
      p.example = "block ids [" + p.example + "]";
    } else {
      p.example = fmt::format("request #{} tokens [0, {})", node.first_request + 1, p.tokens);
    }
    out.push_back(std::move(p));
  }
  return out;
}

Result<Review> RunReview(const Trace& trace, const CostModel& cost, const SimOptions& base,
                         const ReviewOptions& options) {
  Review review;
  review.contexts = ContextPercentiles(trace);
  review.has_priorities = trace.has_priorities;

  std::vector<std::string> policies = options.policies;
  if (std::find(policies.begin(), policies.end(), base.policy) == policies.end()) policies.insert(policies.begin(), base.policy);
  for (const std::string& p : policies) {
    SimOptions o = base;
    o.policy = p;
    auto r = Simulate(trace, cost, o);
    if (!r.ok()) return r.status();
    if (p == base.policy) review.baseline = *r;
    review.policies.push_back(std::move(r).value());
  }
  const SimResult& b = review.baseline;
  review.peak_running = b.peak_running;

  if (options.model && options.gpu) {
    sz::SizingOptions so = options.sizing;
    so.context_tokens = std::max<int64_t>(1, static_cast<int64_t>(review.contexts[0].total_tokens.p99));
    so.sequences = std::max<int64_t>(1, b.peak_running);
    auto sizing = sz::ComputeSizing(*options.model, *options.gpu, so);
    if (sizing.ok()) {
      review.peak_kv_bytes_per_gpu = int64_t{b.peak_in_use_blocks} * b.block_size * sizing->kv_bytes_per_token_per_gpu;
      review.sizing = std::move(sizing).value();
    }
  }
  review.pins = FindPinCandidates(trace, cost.KvBytesPerToken(), options.pin_limit);

  // The counterfactual: shrink the cache until the hit rate halves, then
  // bisect for the largest such capacity.
  const double target = b.TotalTokenHitRate() / 2;
  if (target > 0) {
    int64_t hi = b.device_tokens;  // hit rate above target
    int64_t lo = hi;
    SimResult found;
    bool have = false;
    while (lo > base.block_size) {
      lo = RoundToBlocks(lo / 2, base.block_size);
      SimOptions o = base;
      o.device_tokens = lo;
      auto r = Simulate(trace, cost, o);
      if (!r.ok()) return r.status();
      if (r->TotalTokenHitRate() <= target) {
        found = std::move(r).value();
        have = true;
        break;
      }
      hi = lo;
    }
    for (int i = 0; have && i < 4 && hi - lo > base.block_size; ++i) {
      const int64_t mid = RoundToBlocks((hi + lo) / 2, base.block_size);
      SimOptions o = base;
      o.device_tokens = mid;
      auto r = Simulate(trace, cost, o);
      if (!r.ok()) return r.status();
      if (r->TotalTokenHitRate() <= target) {
        lo = mid;
        found = std::move(r).value();
      } else {
        hi = mid;
      }
    }
    if (have) {
      review.halved = std::move(found);
      review.halved_device_tokens = lo;
    }
  }

  if (options.sweep_points >= 2) {
    const int64_t distinct = std::max<int64_t>(DistinctPromptTokens(trace, base.block_size), base.block_size);
    const int64_t max_tokens = std::max(distinct, b.device_tokens);
    const int64_t min_tokens = std::max<int64_t>(base.block_size, max_tokens / 256);
    auto sweep = SweepCapacity(trace, cost, base, policies, min_tokens, max_tokens, options.sweep_points);
    if (!sweep.ok()) return sweep.status();
    review.sweep = std::move(sweep).value();
  }
  return review;
}

}  // namespace kvstack::sim
