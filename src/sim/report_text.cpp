// Terminal renderings of replays, sweeps and reviews.
#include <fmt/format.h>

#include "kvstack/sim_report.h"

namespace kvstack::sim {
namespace {

namespace sz = ::kvstack::sizing;

std::string Ms(double s) { return fmt::format("{:.1f} ms", s * 1e3); }
std::string Pct(double f) { return fmt::format("{:.1f}%", f * 100); }
std::string PercentilesText(const Percentiles& p) {
  return fmt::format("p50 {:>10}  p95 {:>10}  p99 {:>10}", Ms(p.p50), Ms(p.p95), Ms(p.p99));
}

}  // namespace

std::string FormatLoad(const LoadReport& l) {
  if (l.arrival_span_s <= 0) return "";
  if (!l.overloaded) {
    return fmt::format(
        "load         {:.0f}% of the instances' time busy ({:.3f} s in steps) over the {:.1f} s of arrivals; "
        "queueing stayed bounded ({} waiting at the last arrival)\n",
        l.utilization * 100, l.busy_seconds, l.arrival_span_s, l.waiting_at_last_arrival);
  }
  return fmt::format(
      "OVERLOADED   arrivals brought {:.2f}x the work these instances can do in the {:.1f} s they span ({} requests "
      "still queued at the last arrival): queueing grows without bound, so the latencies below are mostly backlog. "
      "At least {} instance{} would keep up.\n",
      l.utilization, l.arrival_span_s, l.waiting_at_last_arrival, l.instances_to_keep_up,
      l.instances_to_keep_up == 1 ? "" : "s");
}

std::string FormatSimResult(const SimResult& r) {
  std::string s;
  s += fmt::format("policy {}, {} tokens of device cache per instance ({} blocks of {})\n", r.policy,
                   sz::FormatCount(r.device_tokens), sz::FormatCount(r.device_tokens / std::max(1, r.block_size)),
                   r.block_size);
  s += fmt::format("requests     {} completed, {} rejected (larger than the device cache)\n", sz::FormatCount(r.requests),
                   sz::FormatCount(r.rejected));
  s += FormatLoad(r.load);
  s += "\nHit rate          tokens       blocks\n";
  for (int t = 0; t < kNumTiers; ++t) {
    if (t > 0 && r.tiers[t].hit_tokens == 0) continue;
    s += fmt::format("  {:<14}{:>8}     {:>8}\n", TierName(static_cast<Tier>(t)), Pct(r.TokenHitRate(Tier(t))),
                     Pct(r.BlockHitRate(Tier(t))));
  }
  s += fmt::format("  {:<14}{:>8}     ({} of {} prompt tokens)\n", "all tiers", Pct(r.TotalTokenHitRate()),
                   sz::FormatCount(static_cast<int64_t>(r.HitTokens())), sz::FormatCount(static_cast<int64_t>(r.query_tokens)));
  if (r.measured_query_tokens > 0) {
    s += fmt::format("  {:<14}{:>8}     ({} of {} prompt tokens; from the trace: what the server's cache served)\n",
                     "measured",
                     Pct(static_cast<double>(r.measured_cached_tokens) / static_cast<double>(r.measured_query_tokens)),
                     sz::FormatCount(static_cast<int64_t>(r.measured_cached_tokens)),
                     sz::FormatCount(static_cast<int64_t>(r.measured_query_tokens)));
  }
  if (r.durable_tokens + r.oneoff_tokens > 0) {
    const auto rate = [](uint64_t h, uint64_t q) { return q ? static_cast<double>(h) / static_cast<double>(q) : 0.0; };
    s += fmt::format("  {:<14}{:>8}     (device, {} tokens)\n", "durable", Pct(rate(r.durable_hit_tokens, r.durable_tokens)),
                     sz::FormatCount(static_cast<int64_t>(r.durable_tokens)));
    s += fmt::format("  {:<14}{:>8}     (device, {} tokens)\n", "one-off", Pct(rate(r.oneoff_hit_tokens, r.oneoff_tokens)),
                     sz::FormatCount(static_cast<int64_t>(r.oneoff_tokens)));
  }
  s += "\nLatency\n";
  s += "  TTFT          " + PercentilesText(r.ttft_s) + "\n";
  if (r.measured_requests > 0) {
    s += "  TTFT measured " + PercentilesText(r.measured_ttft_s) +
         fmt::format("   (from the trace: what the server measured, {} requests)\n",
                     sz::FormatCount(r.measured_requests));
    s += r.measured_ttft_s.p50 > 0
             ? fmt::format("  TTFT p50 predicted / measured = {:.2f}\n", r.ttft_s.p50 / r.measured_ttft_s.p50)
             : std::string("  TTFT p50 predicted / measured: - (measured p50 is 0)\n");
  }
  s += "  TPOT          " + PercentilesText(r.tpot_s) + "\n";
  s += "  queueing      " + PercentilesText(r.queue_s) + "\n";
  s += fmt::format("\nThroughput     {:.2f} requests/s, {:.0f} output tokens/s over {:.1f} s simulated\n",
                   r.requests_per_second, r.output_tokens_per_second, r.makespan_s);
  s += fmt::format("Occupancy      peak {} running, peak {} blocks held by running requests ({}), {} evictions\n",
                   r.peak_running, sz::FormatCount(r.peak_in_use_blocks),
                   Pct(r.device_tokens ? static_cast<double>(r.peak_in_use_blocks) * r.block_size /
                                             static_cast<double>(r.device_tokens)
                                       : 0),
                   sz::FormatCount(static_cast<int64_t>(r.evictions)));
  s += fmt::format("Scheduling     {} preemptions (recomputed later)\n", sz::FormatCount(static_cast<int64_t>(r.preemptions)));
  if (r.offloaded_blocks + r.onboarded_blocks + r.prefetched_blocks > 0) {
    s += fmt::format("Tiers          {} blocks offloaded, {} onboarded, {} prefetched to host\n",
                     sz::FormatCount(static_cast<int64_t>(r.offloaded_blocks)),
                     sz::FormatCount(static_cast<int64_t>(r.onboarded_blocks)),
                     sz::FormatCount(static_cast<int64_t>(r.prefetched_blocks)));
  }
  s += "\nCost model\n";
  for (const std::string& line : r.cost_model) s += "  " + line + "\n";
  return s;
}

std::string FormatSweep(const std::vector<SweepPoint>& sweep) {
  std::string s = fmt::format("{:<14}{:>16}{:>12}{:>12}{:>15}\n", "policy", "device tokens", "token hit", "block hit",
                              "TTFT p50");
  for (const SweepPoint& p : sweep) {
    s += fmt::format("{:<14}{:>16}{:>12}{:>12}{:>15}\n", p.policy, sz::FormatCount(p.device_tokens),
                     Pct(p.token_hit_rate), Pct(p.block_hit_rate), Ms(p.ttft_p50_s));
  }
  return s;
}

std::string FormatReview(const Review& v) {
  std::string s;
  s += "1. Context length (tokens)\n";
  s += fmt::format("  {:<16}{:>9}  {:>8}{:>8}{:>8}   {:>8}{:>8}{:>8}\n", "group", "requests", "in p50", "p95", "p99",
                   "all p50", "p95", "p99");
  for (const ContextStats& c : v.contexts) {
    s += fmt::format("  {:<16}{:>9}  {:>8.0f}{:>8.0f}{:>8.0f}   {:>8.0f}{:>8.0f}{:>8.0f}\n", c.group, c.requests,
                     c.input_tokens.p50, c.input_tokens.p95, c.input_tokens.p99, c.total_tokens.p50,
                     c.total_tokens.p95, c.total_tokens.p99);
  }
  s += "\n2. HBM split per GPU at peak concurrency\n";
  if (v.sizing) {
    const sz::SizingReport& z = *v.sizing;
    s += fmt::format("  {} on {} x {}: peak {} running requests\n", z.model.name, z.options.gpus, z.gpu.name,
                     v.peak_running);
    s += fmt::format("  {:<22}{:>12}\n", "GPU memory", sz::FormatBytes(z.hbm_bytes_per_gpu));
    s += fmt::format("  {:<22}{:>12}\n", "weights", sz::FormatBytes(z.weight_bytes_per_gpu));
    s += fmt::format("  {:<22}{:>12}\n", "workspace", sz::FormatBytes(z.workspace_bytes_per_gpu));
    s += fmt::format("  {:<22}{:>12}\n", "KV at peak (in use)", sz::FormatBytes(v.peak_kv_bytes_per_gpu));
    s += fmt::format("  {:<22}{:>12}   (prefix cache and free)\n", "KV left",
                     sz::FormatBytes(std::max<int64_t>(0, z.kv_budget_bytes_per_gpu - v.peak_kv_bytes_per_gpu)));
  } else {
    s += "  (no --gpu/--model: give them for the split)\n";
  }
  s += "\n3. Prefixes whose reuse earns a pin (score = reuses x tokens)\n";
  if (v.pins.empty()) s += "  none: no prefix is shared by two requests\n";
  for (const PinCandidate& p : v.pins) {
    s += fmt::format("  {:>8} tokens x {:>6} reuses = {:>12}   {:>10}   {}{}\n", sz::FormatCount(p.tokens),
                     sz::FormatCount(p.reuses), sz::FormatCount(p.score),
                     p.kv_bytes ? sz::FormatBytes(p.kv_bytes) : std::string("-"), p.example,
                     p.tenant.empty() ? "" : "  tenant " + p.tenant);
  }
  s += fmt::format("\n4. Policies at {} device tokens\n", sz::FormatCount(v.baseline.device_tokens));
  s += fmt::format("  {:<14}{:>10}{:>10}{:>15}{:>15}{:>11}\n", "policy", "token hit", "block hit", "TTFT p50",
                   "TTFT p95", "evictions");
  for (const SimResult& r : v.policies) {
    s += fmt::format("  {:<14}{:>10}{:>10}{:>15}{:>15}{:>11}\n", r.policy, Pct(r.TotalTokenHitRate()),
                     Pct(r.BlockHitRate(Tier::kDevice)), Ms(r.ttft_s.p50), Ms(r.ttft_s.p95), r.evictions);
  }
  s += "\n5. Hit rate of durable vs one-off context\n";
  if (!v.has_priorities) {
    s += "  the trace does not mark durable context (no retention ranges)\n";
  } else {
    for (const SimResult& r : v.policies) {
      const auto rate = [](uint64_t h, uint64_t q) { return q ? static_cast<double>(h) / static_cast<double>(q) : 0.0; };
      s += fmt::format("  {:<14} durable {:>7} of {} tokens, one-off {:>7} of {} tokens\n", r.policy,
                       Pct(rate(r.durable_hit_tokens, r.durable_tokens)),
                       sz::FormatCount(static_cast<int64_t>(r.durable_tokens)),
                       Pct(rate(r.oneoff_hit_tokens, r.oneoff_tokens)),
                       sz::FormatCount(static_cast<int64_t>(r.oneoff_tokens)));
    }
  }
  s += "\n6. TTFT when the hit rate halves\n";
  if (v.halved_device_tokens == 0) {
    s += "  no counterfactual: the hit rate is already 0, or no smaller cache halves it\n";
  } else {
    const SimResult& b = v.baseline;
    const SimResult& h = v.halved;
    const auto change = [](double a, double c) { return a > 0 ? fmt::format("{:+.0f}%", (c / a - 1) * 100) : std::string("-"); };
    s += fmt::format("  cache {} -> {} tokens: hit rate {} -> {}\n", sz::FormatCount(b.device_tokens),
                     sz::FormatCount(v.halved_device_tokens), Pct(b.TotalTokenHitRate()), Pct(h.TotalTokenHitRate()));
    s += fmt::format("  TTFT p50 {} -> {} ({}), p95 {} -> {} ({}), p99 {} -> {} ({})\n", Ms(b.ttft_s.p50),
                     Ms(h.ttft_s.p50), change(b.ttft_s.p50, h.ttft_s.p50), Ms(b.ttft_s.p95), Ms(h.ttft_s.p95),
                     change(b.ttft_s.p95, h.ttft_s.p95), Ms(b.ttft_s.p99), Ms(h.ttft_s.p99),
                     change(b.ttft_s.p99, h.ttft_s.p99));
  }
  if (!v.sweep.empty()) s += "\nHit rate vs capacity\n" + FormatSweep(v.sweep);
  return s;
}

}  // namespace kvstack::sim
