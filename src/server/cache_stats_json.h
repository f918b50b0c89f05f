// The JSON of GET /v1/cache/stats: a KvCache::Metrics() snapshot and the
// server's pins.
//
//   block_size, total_blocks, free_blocks, in_use_blocks, cached_blocks,
//   pinned_blocks, max_pinned_blocks, kv_bytes_per_block, live_sequences,
//   live_pins,
//   prefix: {query_tokens, hit_tokens, query_blocks, hit_blocks,
//            token_hit_rate, block_hit_rate}       (overall)
//   by_tenant: {"<tenant label>": {...same...}}    ("" = no salt; the caller
//                                                   relabels CacheMetrics'
//                                                   salts: CountersByLabel)
//   by_priority_class: {"one-off"|"default"|"durable"|"pinned": {...}}
//   hit_blocks_by_block_class: {"one-off": n, ...}
//   evictions, evictions_by_priority: {"<priority>": n} (non-zero only),
//   admissions, admissions_refused, appends_refused, copy_on_write,
//   duplicate_blocks, pins_refused,
//   histograms: {block_lifetime_us|idle_before_eviction_us|reuse_gap_us:
//                {count, sum, max, p50, p90, p99}},
//   pins: [{id, tenant (label), tokens, blocks, expires_in_s (null: no TTL)}]
// Thread safety: pure.
#pragma once

#include <span>

#include <nlohmann/json.hpp>

#include "kvstack/cache_metrics.h"
#include "server/pin_registry.h"

namespace kvstack::server {

// `now` is the pins' clock reading, for expires_in_s.
nlohmann::json CacheStatsJson(const CacheMetrics& metrics, std::span<const PinInfo> pins, Micros now);

}  // namespace kvstack::server
