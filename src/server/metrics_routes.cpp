// GET /metrics: the server's metrics in the Prometheus text format 0.0.4,
// named after vLLM's where vLLM has the same meaning (vllm:kv_cache_usage_perc
// -> kvstack_kv_cache_usage_perc, and so on).
//
// The KV cache's numbers are read on the engine thread (EngineLoop::Call);
// the request histograms come from ServerContext::recorder. It is an operator
// view (every tenant's figures): it wants the admin key once any key is set,
// unless --public-metrics (Prometheus sends the key as a bearer token: see
// the README's scrape config); it answers 503 once the engine thread has
// stopped. Tenants appear under their labels (tenant_label.h), at most
// --max-tenant-labels of them, the rest summed as tenant="other".
//
// Meanings that differ from vLLM or need saying:
//   kvstack_kv_cache_usage_perc        (in_use + pinned) / total blocks: the
//                                      blocks that cannot be reused now
//                                      (vLLM: 1 - free/total, where its free
//                                      queue holds the evictable cached blocks)
//   kvstack_num_requests_running       sequences holding KV blocks in the
//                                      cache (CacheMetrics::live_sequences);
//                                      the engine exposes no scheduler counts
//   kvstack_num_requests_waiting       requests in flight at the server (its
//                                      admission gate, pins being computed
//                                      included) minus running, at least 0
//   kvstack_evictions_total            by the class of the evicted block's
//                                      priority, relative to kDefaultPriority
//                                      (the server does not change the
//                                      cache's default)
#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "server/prometheus_text.h"
#include "server/server_context.h"

namespace kvstack::server {
namespace {

struct EngineSnapshot {
  CacheMetrics cache;
  uint64_t preemptions = 0;
  Histogram step_seconds = Histogram::Decades125(1e-5, 10);
  std::optional<TierChainMetrics> tiers;  // none without tiers
  OnboardMetrics onboard;
  std::map<std::string, PrefixCounters> tenants;  // cache.by_tenant by label, capped
};

// Tiers below the device pool: per-tier counters and read latency (label
// tier = host|disk|redis), and what the engine did with them.
void RenderTiers(PrometheusText& out, const TierChainMetrics& t, const OnboardMetrics& o) {
  struct Counter {
    const char* name;
    const char* help;
    uint64_t TierMetrics::*field;
  };
  const Counter counters[] = {
      {"kvstack_tier_hits_total", "Blocks a tier found and verified on a get.", &TierMetrics::hits},
      {"kvstack_tier_misses_total", "Blocks a tier did not have on a get (faults included).", &TierMetrics::misses},
      {"kvstack_tier_stored_blocks_total", "Blocks a tier stored.", &TierMetrics::stored},
      {"kvstack_tier_bytes_in_total", "Block bytes written into a tier.", &TierMetrics::bytes_in},
      {"kvstack_tier_bytes_out_total", "Block bytes read out of a tier.", &TierMetrics::bytes_out},
      {"kvstack_tier_faults_total", "I/O errors, timeouts, corrupt blocks and full-disk refusals of a tier.",
       &TierMetrics::faults},
      {"kvstack_tier_evictions_total", "Blocks a tier's eviction policy pushed out.", &TierMetrics::evictions},
  };
  for (const Counter& c : counters) {
    out.Family(c.name, "counter", c.help);
    for (const TierMetrics& m : t.tiers) out.Sample(c.name, {{"tier", m.name}}, double(m.*c.field));
  }
  out.Family("kvstack_tier_blocks", "gauge", "Blocks a tier holds now.");
  for (const TierMetrics& m : t.tiers) out.Sample("kvstack_tier_blocks", {{"tier", m.name}}, double(m.blocks));
  out.Family("kvstack_tier_capacity_blocks", "gauge", "Blocks a tier can hold.");
  for (const TierMetrics& m : t.tiers) {
    out.Sample("kvstack_tier_capacity_blocks", {{"tier", m.name}}, double(m.capacity_blocks));
  }
  // Remote tiers spread over nodes (Redis servers, or a cluster's masters and
  // replicas): the same counters per node (labels tier, node, role).
  const Counter node_counters[] = {
      {"kvstack_tier_node_hits_total", "Blocks a node of a remote tier answered with, verified.", nullptr},
      {"kvstack_tier_node_misses_total", "Gets and lookups a node of a remote tier could not answer (faults included).",
       nullptr},
      {"kvstack_tier_node_stored_blocks_total", "Blocks a node of a remote tier stored.", nullptr},
      {"kvstack_tier_node_bytes_in_total", "Block bytes written to a node of a remote tier.", nullptr},
      {"kvstack_tier_node_bytes_out_total", "Block bytes read from a node of a remote tier.", nullptr},
      {"kvstack_tier_node_redirections_total", "MOVED and ASK redirections a cluster node answered with (followed).",
       nullptr},
      {"kvstack_tier_node_faults_total", "I/O errors, timeouts, error replies and corrupt values of a node.", nullptr},
  };
  uint64_t TierNodeMetrics::*const node_fields[] = {&TierNodeMetrics::hits,     &TierNodeMetrics::misses,
                                                    &TierNodeMetrics::stored,   &TierNodeMetrics::bytes_in,
                                                    &TierNodeMetrics::bytes_out, &TierNodeMetrics::redirections,
                                                    &TierNodeMetrics::faults};
  for (size_t i = 0; i < std::size(node_counters); ++i) {
    out.Family(node_counters[i].name, "counter", node_counters[i].help);
    for (const TierMetrics& m : t.tiers) {
      for (const TierNodeMetrics& n : m.nodes) {
        out.Sample(node_counters[i].name, {{"tier", m.name}, {"node", n.node}, {"role", n.role}},
                   double(n.*node_fields[i]));
      }
    }
  }
  out.Family("kvstack_tier_slot_map_refreshes_total", "counter",
             "Times a cluster tier read its cluster's slot map (at start, after a redirection or a failed node).");
  for (const TierMetrics& m : t.tiers) {
    if (!m.nodes.empty()) out.Sample("kvstack_tier_slot_map_refreshes_total", {{"tier", m.name}}, double(m.slot_map_refreshes));
  }
  out.Family("kvstack_tier_get_latency_seconds", "histogram", "Latency of one batched get from a tier, in seconds.");
  for (const TierMetrics& m : t.tiers) {
    out.HistogramSamples("kvstack_tier_get_latency_seconds", {{"tier", m.name}}, m.get_latency_us, 1e6);
  }

  out.Family("kvstack_offload_blocks_total", "counter",
             "Blocks evicted from the device pool, by what the tiers did: stored, skipped (below the offload "
             "priority and hit thresholds) or refused.");
  out.Sample("kvstack_offload_blocks_total", {{"outcome", "stored"}}, double(o.offloaded_blocks));
  out.Sample("kvstack_offload_blocks_total", {{"outcome", "skipped"}}, double(o.offload_skipped_blocks));
  out.Sample("kvstack_offload_blocks_total", {{"outcome", "refused"}}, double(o.offload_refused_blocks));
  out.Family("kvstack_prefetch_blocks_total", "counter", "Blocks of queued requests moved up toward host RAM early.");
  out.Sample("kvstack_prefetch_blocks_total", {}, double(o.prefetched_blocks));
  out.Family("kvstack_onboard_requested_blocks_total", "counter", "Blocks admitted requests asked the tiers for.");
  out.Sample("kvstack_onboard_requested_blocks_total", {}, double(o.onboard_blocks_requested));
  out.Family("kvstack_onboard_blocks_total", "counter", "Blocks that arrived from a tier and served a request.");
  out.Sample("kvstack_onboard_blocks_total", {}, double(o.onboarded_blocks));
  out.Family("kvstack_onboard_timely_blocks_total", "counter",
             "Requested blocks already in host RAM when their request was admitted (prefetch timeliness = this / "
             "requested).");
  out.Sample("kvstack_onboard_timely_blocks_total", {}, double(o.timely_blocks));
  out.Family("kvstack_onboard_recomputed_blocks_total", "counter",
             "Blocks a tier held that were recomputed instead, because that was measured faster.");
  out.Sample("kvstack_onboard_recomputed_blocks_total", {}, double(o.recompute_chosen_blocks));
  out.Family("kvstack_onboard_abandoned_total", "counter",
             "Requests that ended while their blocks were being read from a tier; their blocks stayed held until "
             "the reads stopped.");
  out.Sample("kvstack_onboard_abandoned_total", {}, double(o.abandoned_fetches));
  out.Family("kvstack_onboard_wait_seconds", "histogram", "Time an admitted request waited for its tier blocks.");
  out.HistogramSamples("kvstack_onboard_wait_seconds", {}, o.wait_us, 1e6);
}

void PrefixFamily(PrometheusText& out, const std::string& name, const std::string& help, const std::string& label,
                  const std::vector<std::pair<std::string, const PrefixCounters*>>& rows, bool hits) {
  out.Family(name, "counter", help);
  for (const auto& [value, c] : rows) {
    out.Sample(name, {{label, value}}, double(hits ? c->hit_tokens : c->query_tokens));
  }
}

std::string Render(const ServerContext& ctx, const EngineSnapshot& s, const MetricsRecorder::Snapshot& h) {
  const CacheMetrics& m = s.cache;
  PrometheusText out;

  out.Family("kvstack_kv_cache_usage_perc", "gauge",
             "KV cache usage: (in-use + pinned blocks) / total blocks, from 0 to 1.");
  out.Sample("kvstack_kv_cache_usage_perc", {},
             m.total_blocks ? double(m.in_use_blocks + m.pinned_blocks) / double(m.total_blocks) : 0.0);

  out.Family("kvstack_prefix_cache_queries_total", "counter",
             "Prefix cache queries, in tokens (every prompt token of an admitted request).");
  out.Sample("kvstack_prefix_cache_queries_total", {}, double(m.prefix.query_tokens));
  out.Family("kvstack_prefix_cache_hits_total", "counter", "Prefix cache hits, in tokens.");
  out.Sample("kvstack_prefix_cache_hits_total", {}, double(m.prefix.hit_tokens));

  std::vector<std::pair<std::string, const PrefixCounters*>> tenants;
  for (const auto& [label, c] : s.tenants) tenants.emplace_back(label, &c);
  PrefixFamily(out, "kvstack_prefix_cache_queries_by_tenant_total",
               "Prefix cache queries in tokens, by tenant label (\"\" = no cache_salt; \"other\" = past "
               "--max-tenant-labels).",
               "tenant", tenants, false);
  PrefixFamily(out, "kvstack_prefix_cache_hits_by_tenant_total",
               "Prefix cache hits in tokens, by tenant label (\"\" = no cache_salt; \"other\" = past "
               "--max-tenant-labels).",
               "tenant", tenants, true);

  std::vector<std::pair<std::string, const PrefixCounters*>> classes;
  for (int i = 0; i < kNumPriorityClasses; ++i) {
    classes.emplace_back(std::string(PriorityClassName(static_cast<PriorityClass>(i))), &m.by_priority_class[i]);
  }
  PrefixFamily(out, "kvstack_prefix_cache_queries_by_priority_class_total",
               "Prefix cache queries in tokens, by the priority class the request gave its blocks.", "priority_class",
               classes, false);
  PrefixFamily(out, "kvstack_prefix_cache_hits_by_priority_class_total",
               "Prefix cache hits in tokens, by the priority class the request gave its blocks.", "priority_class",
               classes, true);

  const int64_t running = m.live_sequences;
  const int64_t waiting = std::max<int64_t>(0, ctx.gate.in_flight() - running);
  out.Family("kvstack_num_requests_running", "gauge", "Requests holding KV blocks (live sequences in the cache).");
  out.Sample("kvstack_num_requests_running", {}, double(running));
  out.Family("kvstack_num_requests_waiting", "gauge",
             "Requests in flight at the server that hold no KV blocks yet (queued).");
  out.Sample("kvstack_num_requests_waiting", {}, double(waiting));

  out.Family("kvstack_num_preemptions_total", "counter", "Requests preempted by the scheduler.");
  out.Sample("kvstack_num_preemptions_total", {}, double(s.preemptions));

  std::array<uint64_t, kNumPriorityClasses> evictions{};
  for (size_t p = 0; p < m.evictions_by_priority.size(); ++p) {
    evictions[static_cast<int>(ClassOfPriority(static_cast<Priority>(p), kDefaultPriority))] +=
        m.evictions_by_priority[p];
  }
  out.Family("kvstack_evictions_total", "counter", "Cached KV blocks evicted, by the class of their priority.");
  for (int i = 0; i < kNumPriorityClasses; ++i) {
    out.Sample("kvstack_evictions_total",
               {{"priority_class", std::string(PriorityClassName(static_cast<PriorityClass>(i)))}},
               double(evictions[i]));
  }

  const EngineInfo& info = ctx.loop->info();
  const double block_bytes = double(info.kv_bytes_per_token) * double(m.block_size);
  out.Family("kvstack_memory_bytes", "gauge",
             "Memory by kind: model weights, and KV blocks by state (blocks x kv_bytes_per_token x block_size).");
  out.Sample("kvstack_memory_bytes", {{"kind", "weights"}}, double(info.weight_bytes));
  out.Sample("kvstack_memory_bytes", {{"kind", "kv_in_use"}}, m.in_use_blocks * block_bytes);
  out.Sample("kvstack_memory_bytes", {{"kind", "kv_cached"}}, m.cached_blocks * block_bytes);
  out.Sample("kvstack_memory_bytes", {{"kind", "kv_pinned"}}, m.pinned_blocks * block_bytes);
  out.Sample("kvstack_memory_bytes", {{"kind", "kv_free"}}, m.free_blocks * block_bytes);
  out.Family("kvstack_kv_bytes_per_token", "gauge",
             "KV bytes one token takes in the pool (K and V, all layers, scales included), by KV types.");
  out.Sample("kvstack_kv_bytes_per_token", {{"kv_types", info.kv_types}}, double(info.kv_bytes_per_token));

  out.Family("kvstack_time_to_first_token_seconds", "histogram",
             "Time from a request's arrival at the engine to its first token, in seconds.");
  out.HistogramSamples("kvstack_time_to_first_token_seconds", {}, h.time_to_first_token_s);
  out.Family("kvstack_inter_token_latency_seconds", "histogram",
             "Per request, the mean time between its generated tokens, in seconds.");
  out.HistogramSamples("kvstack_inter_token_latency_seconds", {}, h.inter_token_latency_s);
  out.Family("kvstack_engine_step_seconds", "histogram",
             "Wall time of each engine step that computed a batch (planning, forward pass, sampling), in seconds.");
  out.HistogramSamples("kvstack_engine_step_seconds", {}, s.step_seconds);
  out.Family("kvstack_request_prompt_tokens", "histogram", "Prompt tokens per finished request.");
  out.HistogramSamples("kvstack_request_prompt_tokens", {}, h.prompt_tokens);
  out.Family("kvstack_request_generation_tokens", "histogram", "Generated tokens per finished request.");
  out.HistogramSamples("kvstack_request_generation_tokens", {}, h.generation_tokens);
  if (s.tiers) RenderTiers(out, *s.tiers, s.onboard);
  return out.text();
}

}  // namespace

void AddMetricsRoutes(httplib::Server& http, ServerContext& ctx) {
  http.Get("/metrics", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.access.Check(req, Access::kMetrics)) return SendError(res, *e);
    auto snapshot = ctx.loop->Call([](Engine& e) {
      EngineSnapshot s{.cache = e.cache().Metrics(), .preemptions = e.preemptions(), .step_seconds = e.step_seconds()};
      if (TierChain* t = e.tiers()) {
        s.tiers = t->Metrics();
        s.onboard = e.onboard_metrics();
      }
      return s;
    });
    if (!snapshot.ok()) return SendError(res, FromStatus(snapshot.status()));
    snapshot->tenants = CountersByLabel(snapshot->cache.by_tenant, *ctx.tenants, &ctx.tenant_series);
    snapshot->cache.by_tenant.clear();  // keyed by salt: never rendered
    res.status = 200;
    res.set_content(Render(ctx, *snapshot, ctx.recorder.Get()), "text/plain; version=0.0.4; charset=utf-8");
  });
}

}  // namespace kvstack::server
