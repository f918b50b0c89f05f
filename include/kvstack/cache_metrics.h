// CacheMetrics: a snapshot of one KV cache's state and counters.
//
// Block counts by state; prefix-cache queries and hits in tokens and in blocks
// (vLLM counts tokens: a query is every prompt token of an admitted request, a
// hit every token served from the cache), overall, per tenant (cache_salt) and
// per priority class; evictions by priority; block lifetime (commit to
// eviction), idle time before eviction and reuse gap (time between uses of a
// cached block) histograms, in microseconds.
//
// Producers: KvCache::Metrics(). Consumers: the server (/metrics, /v1/memory),
// the simulator's reports, benchmarks.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "kvstack/eviction_policy.h"
#include "kvstack/histogram.h"

namespace kvstack {

// Priority classes, relative to the cache's default priority:
//   one-off   below the default (context nobody will ask for again)
//   default   the default priority
//   durable   above the default, below 100 (system prompts, agent memory)
//   pinned    100
enum class PriorityClass : uint8_t { kOneOff = 0, kDefault = 1, kDurable = 2, kPinned = 3 };
inline constexpr int kNumPriorityClasses = 4;
PriorityClass ClassOfPriority(Priority p, Priority default_priority);
std::string_view PriorityClassName(PriorityClass c);

struct PrefixCounters {
  uint64_t query_tokens = 0;
  uint64_t hit_tokens = 0;
  uint64_t query_blocks = 0;  // full blocks looked up
  uint64_t hit_blocks = 0;
  double TokenHitRate() const { return query_tokens ? double(hit_tokens) / double(query_tokens) : 0; }
  double BlockHitRate() const { return query_blocks ? double(hit_blocks) / double(query_blocks) : 0; }
};

struct CacheMetrics {
  int32_t block_size = 0;
  int32_t total_blocks = 0;
  int32_t free_blocks = 0;    // no content
  int32_t in_use_blocks = 0;  // held by live sequences
  int32_t cached_blocks = 0;  // evictable, content kept for prefix hits
  int32_t pinned_blocks = 0;
  int32_t max_pinned_blocks = 0;
  size_t kv_bytes_per_block = 0;       // 0 in metadata-only mode
  size_t metadata_bytes_per_block = 0;  // BlockMeta plus hash-index share
  int32_t live_sequences = 0;
  int32_t live_pins = 0;

  PrefixCounters prefix;
  std::map<std::string, PrefixCounters> by_tenant;  // key: cache_salt ("" = none)
  // By the priority the request gave each block.
  std::array<PrefixCounters, kNumPriorityClasses> by_priority_class;
  // Hit blocks by the class of the cached block that served them.
  std::array<uint64_t, kNumPriorityClasses> hit_blocks_by_block_class{};

  uint64_t evictions = 0;
  std::array<uint64_t, kMaxPriority + 1> evictions_by_priority{};
  uint64_t admissions = 0;
  uint64_t admissions_refused = 0;  // not enough free blocks at that moment
  uint64_t appends_refused = 0;
  uint64_t copy_on_write = 0;       // shared partial tails copied on append
  uint64_t duplicate_blocks = 0;    // computed blocks already cached by another
  uint64_t pins_refused = 0;        // over the pin cap

  Histogram block_lifetime_us = Histogram::Decades125(100, 1e10);
  Histogram idle_before_eviction_us = Histogram::Decades125(100, 1e10);
  Histogram reuse_gap_us = Histogram::Decades125(100, 1e10);
};

}  // namespace kvstack
