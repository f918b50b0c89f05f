// The JSON of GET /v1/memory: the design-review answers, live.
//
//   model: {name, identity, architecture, random_weights, note}
//   memory: {bytes: {weights, kv_in_use, kv_cached, kv_pinned, kv_free,
//                    workspace}, total_bytes,
//            kv_blocks: {total, in_use, cached, pinned, free, block_size,
//                        bytes_per_block}}
//   prompt_tokens: {window_s, count, p50, p95, p99, max}   (sliding window)
//   prefix_cache: {query_tokens, hit_tokens, hit_rate,
//                  by_tenant: [{tenant, query_tokens, hit_tokens, hit_rate}],
//                  by_priority_class: [{priority_class, ...same}]}
//   hot_prefixes: [{hash, tokens, tenant, hits, last_hit_s_ago}]  (no text)
//   evictions: {total, by_priority_class: {one-off, default, durable,
//               pinned}, by_priority: [{priority, count}] (non-zero only)}
//   ttft_s: {window_s, by_hit_share: {none|under_half|half_or_more:
//            {count, p50, p95, p99, max}}}
//   timeline: {bucket_s, buckets: [{start_s_ago, requests, prompt_tokens,
//              cached_tokens, generated_tokens, hit_rate}]}  (oldest first)
//   requests: {running, in_flight, preemptions, recorded}
//   tiers: {enabled, levels: [{tier, blocks, capacity_blocks, hits, misses,
//           stored, bytes_in, bytes_out, faults, evictions, get_bytes_per_s,
//           get_latency_us: {p50, p95, p99}}],
//           offload: {stored, skipped, refused},
//           onboard: {requested_blocks, onboarded_blocks, timely_blocks,
//                     prefetch_timeliness, recomputed_blocks, prefetched_blocks,
//                     abandoned_fetches, recompute_tokens_per_s,
//                     wait_us: {count, p50, p95, p99}}}
//     (levels empty and counters zero without tiers)
//
// Memory is what this process holds: weights as loaded, KV by block state
// (blocks x bytes per block), and workspace (the forward pass's activation
// scratch and logits at their high-water mark).
// Hit rates are in tokens, as vLLM counts prefix-cache queries and hits.
// Thread safety: pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "kvstack/cache_metrics.h"
#include "kvstack/engine.h"
#include "kvstack/tier_chain.h"
#include "server/workload_recorder.h"

namespace kvstack::server {

struct MemoryReportInputs {
  std::string model_name;
  bool random_weights = false;  // the demo model
  EngineInfo info;
  CacheMetrics cache;
  size_t workspace_bytes = 0;
  uint64_t preemptions = 0;
  int64_t in_flight = 0;
  WorkloadRecorder::Snapshot workload;
  std::optional<TierChainMetrics> tiers;  // none without tiers
  OnboardMetrics onboard;
};

nlohmann::json MemoryReport(const MemoryReportInputs& in);

// Tokens the KV pool holds per token f16 KV would hold in the same bytes
// (scales included): 2.0 for f32 KV's inverse, ~1.94 for int8, ~3.6 for int4.
double KvCapacityVsF16(const EngineInfo& info);

}  // namespace kvstack::server
