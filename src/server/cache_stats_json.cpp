#include "server/cache_stats_json.h"

#include <string>

namespace kvstack::server {
namespace {

nlohmann::json Counters(const PrefixCounters& c) {
  return {{"query_tokens", c.query_tokens}, {"hit_tokens", c.hit_tokens},     {"query_blocks", c.query_blocks},
          {"hit_blocks", c.hit_blocks},     {"token_hit_rate", c.TokenHitRate()}, {"block_hit_rate", c.BlockHitRate()}};
}

nlohmann::json HistogramJson(const Histogram& h) {
  return {{"count", h.count()},          {"sum", h.sum()},
          {"max", h.max()},              {"p50", h.Percentile(0.5)},
          {"p90", h.Percentile(0.9)},    {"p99", h.Percentile(0.99)}};
}

}  // namespace

nlohmann::json CacheStatsJson(const CacheMetrics& m, std::span<const PinInfo> pins, Micros now) {
  nlohmann::json j = {{"block_size", m.block_size},
                      {"total_blocks", m.total_blocks},
                      {"free_blocks", m.free_blocks},
                      {"in_use_blocks", m.in_use_blocks},
                      {"cached_blocks", m.cached_blocks},
                      {"pinned_blocks", m.pinned_blocks},
                      {"max_pinned_blocks", m.max_pinned_blocks},
                      {"kv_bytes_per_block", m.kv_bytes_per_block},
                      {"live_sequences", m.live_sequences},
                      {"live_pins", m.live_pins},
                      {"prefix", Counters(m.prefix)}};
  nlohmann::json tenants = nlohmann::json::object();
  for (const auto& [salt, c] : m.by_tenant) tenants[salt] = Counters(c);
  j["by_tenant"] = std::move(tenants);
  nlohmann::json classes = nlohmann::json::object();
  nlohmann::json hit_classes = nlohmann::json::object();
  for (int i = 0; i < kNumPriorityClasses; ++i) {
    const std::string name(PriorityClassName(static_cast<PriorityClass>(i)));
    classes[name] = Counters(m.by_priority_class[i]);
    hit_classes[name] = m.hit_blocks_by_block_class[i];
  }
  j["by_priority_class"] = std::move(classes);
  j["hit_blocks_by_block_class"] = std::move(hit_classes);
  j["evictions"] = m.evictions;
  nlohmann::json by_priority = nlohmann::json::object();
  for (size_t p = 0; p < m.evictions_by_priority.size(); ++p) {
    if (m.evictions_by_priority[p] != 0) by_priority[std::to_string(p)] = m.evictions_by_priority[p];
  }
  j["evictions_by_priority"] = std::move(by_priority);
  j["admissions"] = m.admissions;
  j["admissions_refused"] = m.admissions_refused;
  j["appends_refused"] = m.appends_refused;
  j["copy_on_write"] = m.copy_on_write;
  j["duplicate_blocks"] = m.duplicate_blocks;
  j["pins_refused"] = m.pins_refused;
  j["histograms"] = {{"block_lifetime_us", HistogramJson(m.block_lifetime_us)},
                     {"idle_before_eviction_us", HistogramJson(m.idle_before_eviction_us)},
                     {"reuse_gap_us", HistogramJson(m.reuse_gap_us)}};
  nlohmann::json pin_list = nlohmann::json::array();
  for (const PinInfo& p : pins) {
    pin_list.push_back({{"id", p.id},
                        {"tenant", p.tenant},
                        {"tokens", p.tokens},
                        {"blocks", p.blocks},
                        {"expires_in_s", p.expires_at ? nlohmann::json(double(*p.expires_at - now) / 1e6)
                                                      : nlohmann::json(nullptr)}});
  }
  j["pins"] = std::move(pin_list);
  return j;
}

}  // namespace kvstack::server
