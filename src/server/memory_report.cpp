#include "server/memory_report.h"

#include <array>

namespace kvstack::server {
namespace {

nlohmann::json PercentilesJson(const Percentiles& p) {
  return {{"count", p.count}, {"p50", p.p50}, {"p95", p.p95}, {"p99", p.p99}, {"max", p.max}};
}

nlohmann::json CountersJson(const PrefixCounters& c) {
  return {{"query_tokens", c.query_tokens}, {"hit_tokens", c.hit_tokens}, {"hit_rate", c.TokenHitRate()}};
}

double Seconds(Micros us) { return double(us) / 1e6; }

nlohmann::json HistogramJson(const Histogram& h) {
  return {{"count", h.count()}, {"p50", h.Percentile(0.5)}, {"p95", h.Percentile(0.95)}, {"p99", h.Percentile(0.99)}};
}

nlohmann::json NodesJson(const std::vector<TierNodeMetrics>& nodes) {
  nlohmann::json out = nlohmann::json::array();
  for (const TierNodeMetrics& n : nodes) {
    out.push_back({{"node", n.node},
                   {"role", n.role},
                   {"hits", n.hits},
                   {"misses", n.misses},
                   {"stored", n.stored},
                   {"bytes_in", n.bytes_in},
                   {"bytes_out", n.bytes_out},
                   {"redirections", n.redirections},
                   {"faults", n.faults}});
  }
  return out;
}

nlohmann::json TiersJson(const std::optional<TierChainMetrics>& t, const OnboardMetrics& o, const EngineInfo& info) {
  nlohmann::json levels = nlohmann::json::array();
  if (t) {
    for (const TierMetrics& m : t->tiers) {
      levels.push_back({{"tier", m.name},
                        {"blocks", m.blocks},
                        {"capacity_blocks", m.capacity_blocks},
                        {"hits", m.hits},
                        {"misses", m.misses},
                        {"stored", m.stored},
                        {"bytes_in", m.bytes_in},
                        {"bytes_out", m.bytes_out},
                        {"faults", m.faults},
                        {"evictions", m.evictions},
                        {"get_bytes_per_s", m.get_bytes_per_s},
                        {"get_latency_us", HistogramJson(m.get_latency_us)},
                        {"nodes", NodesJson(m.nodes)},
                        {"redirections", m.redirections},
                        {"slot_map_refreshes", m.slot_map_refreshes}});
    }
  }
  const double timeliness =
      o.onboard_blocks_requested ? double(o.timely_blocks) / double(o.onboard_blocks_requested) : 0.0;
  return {{"enabled", t.has_value()},
          // What the tiers store (--tier-kv-type), and one block's bytes there.
          {"kv_types", info.tier_kv_types},
          {"bytes_per_block", info.tier_block_bytes},
          {"levels", std::move(levels)},
          {"offload",
           {{"stored", o.offloaded_blocks}, {"skipped", o.offload_skipped_blocks}, {"refused", o.offload_refused_blocks}}},
          {"onboard",
           {{"requested_blocks", o.onboard_blocks_requested},
            {"onboarded_blocks", o.onboarded_blocks},
            {"timely_blocks", o.timely_blocks},
            {"prefetch_timeliness", timeliness},
            {"recomputed_blocks", o.recompute_chosen_blocks},
            {"prefetched_blocks", o.prefetched_blocks},
            {"abandoned_fetches", o.abandoned_fetches},
            {"recompute_tokens_per_s", o.recompute_tokens_per_s},
            {"wait_us", HistogramJson(o.wait_us)}}}};
}

}  // namespace

double KvCapacityVsF16(const EngineInfo& info) {
  const double f16 = 2.0 * 2.0 * info.n_layer * info.n_head_kv * info.head_dim;
  return info.kv_bytes_per_token > 0 ? f16 / double(info.kv_bytes_per_token) : 0.0;
}

nlohmann::json MemoryReport(const MemoryReportInputs& in) {
  const CacheMetrics& m = in.cache;
  const double block_bytes = double(m.kv_bytes_per_block);
  nlohmann::json bytes = {{"weights", in.info.weight_bytes},
                          {"kv_in_use", m.in_use_blocks * block_bytes},
                          {"kv_cached", m.cached_blocks * block_bytes},
                          {"kv_pinned", m.pinned_blocks * block_bytes},
                          {"kv_free", m.free_blocks * block_bytes},
                          {"workspace", in.workspace_bytes}};
  const double total = double(in.info.weight_bytes) + m.total_blocks * block_bytes + double(in.workspace_bytes);

  nlohmann::json by_tenant = nlohmann::json::array();
  for (const auto& [salt, c] : m.by_tenant) {
    nlohmann::json row = CountersJson(c);
    row["tenant"] = salt;
    by_tenant.push_back(std::move(row));
  }
  nlohmann::json by_class = nlohmann::json::array();
  for (int i = 0; i < kNumPriorityClasses; ++i) {
    nlohmann::json row = CountersJson(m.by_priority_class[i]);
    row["priority_class"] = PriorityClassName(static_cast<PriorityClass>(i));
    by_class.push_back(std::move(row));
  }

  std::array<uint64_t, kNumPriorityClasses> evicted{};
  nlohmann::json by_priority = nlohmann::json::array();
  for (size_t p = 0; p < m.evictions_by_priority.size(); ++p) {
    const uint64_t n = m.evictions_by_priority[p];
    if (n == 0) continue;
    evicted[static_cast<int>(ClassOfPriority(static_cast<Priority>(p), kDefaultPriority))] += n;
    by_priority.push_back({{"priority", p}, {"count", n}});
  }
  nlohmann::json evicted_by_class = nlohmann::json::object();
  for (int i = 0; i < kNumPriorityClasses; ++i) {
    evicted_by_class[std::string(PriorityClassName(static_cast<PriorityClass>(i)))] = evicted[i];
  }

  const WorkloadRecorder::Snapshot& w = in.workload;
  nlohmann::json hot = nlohmann::json::array();
  for (const HotPrefix& p : w.hot_prefixes) {
    hot.push_back({{"hash", p.key.ToHex()},
                   {"tokens", p.tokens},
                   {"tenant", p.tenant},
                   {"hits", p.hits},
                   {"last_hit_s_ago", Seconds(w.now - p.last_hit)}});
  }
  nlohmann::json ttft = nlohmann::json::object();
  for (int i = 0; i < kNumHitShares; ++i) {
    ttft[std::string(HitShareName(static_cast<HitShare>(i)))] = PercentilesJson(w.ttft_s[i]);
  }
  nlohmann::json buckets = nlohmann::json::array();
  for (const TimelineBucket& b : w.timeline) {
    buckets.push_back({{"start_s_ago", Seconds(w.now - b.start)},
                       {"requests", b.requests},
                       {"prompt_tokens", b.prompt_tokens},
                       {"cached_tokens", b.cached_tokens},
                       {"generated_tokens", b.generated_tokens},
                       {"hit_rate", b.prompt_tokens ? double(b.cached_tokens) / double(b.prompt_tokens) : 0.0}});
  }

  nlohmann::json prompt = PercentilesJson(w.prompt_tokens);
  prompt["window_s"] = w.window_s;

  return {
      {"object", "kvstack.memory"},
      {"model",
       {{"name", in.model_name},
        {"identity", in.info.model_identity},
        {"architecture", in.info.architecture},
        {"random_weights", in.random_weights},
        {"note", in.random_weights ? "demo model with random weights: its text is meaningless; pass --model for a "
                                     "real one"
                                   : ""}}},
      {"memory",
       {{"bytes", std::move(bytes)},
        {"total_bytes", total},
        {"kv_blocks",
         {{"total", m.total_blocks},
          {"in_use", m.in_use_blocks},
          {"cached", m.cached_blocks},
          {"pinned", m.pinned_blocks},
          {"free", m.free_blocks},
          {"block_size", m.block_size},
          {"bytes_per_block", m.kv_bytes_per_block}}},
        {"kv",
         {{"types", in.info.kv_types},
          {"bytes_per_token", in.info.kv_bytes_per_token},
          {"capacity_tokens", int64_t{m.total_blocks} * m.block_size},
          {"capacity_vs_f16", KvCapacityVsF16(in.info)}}}}},
      {"prompt_tokens", std::move(prompt)},
      {"prefix_cache",
       {{"query_tokens", m.prefix.query_tokens},
        {"hit_tokens", m.prefix.hit_tokens},
        {"hit_rate", m.prefix.TokenHitRate()},
        {"by_tenant", std::move(by_tenant)},
        {"by_priority_class", std::move(by_class)}}},
      {"hot_prefixes", std::move(hot)},
      {"evictions", {{"total", m.evictions}, {"by_priority_class", evicted_by_class}, {"by_priority", by_priority}}},
      {"ttft_s", {{"window_s", w.window_s}, {"by_hit_share", std::move(ttft)}}},
      {"timeline", {{"bucket_s", w.bucket_s}, {"buckets", std::move(buckets)}}},
      {"requests",
       {{"running", m.live_sequences},
        {"in_flight", in.in_flight},
        {"preemptions", in.preemptions},
        {"recorded", w.recorded}}},
      {"tiers", TiersJson(in.tiers, in.onboard, in.info)},
  };
}

}  // namespace kvstack::server
