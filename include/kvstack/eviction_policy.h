// Eviction policies: which cached block gives up its slot first.
//
// A policy only ranks; the block pool does the bookkeeping. An evictable block
// joins one of the policy's queues, chosen from what the policy may look at
// (EvictionCandidate). The pool evicts from the lowest-numbered non-empty queue,
// and within a queue the least recently used block first. Every operation is
// O(1): queues are intrusive lists threaded through the block array (see vLLM's
// FreeKVCacheBlockQueue) and a bitmap finds the lowest non-empty queue.
//
//   LRU           one queue: least recently used first.
//   priority-LRU  one queue per priority 0-100: lowest effective priority first,
//                 LRU within a priority (TensorRT-LLM's eviction order).
//   LFU           one queue per power-of-two bucket of hit count: the least
//                 reused first, LRU within a bucket.
//
// The same policy objects rank blocks in every tier and in the simulator.
// Thread safety: policies are immutable; share freely.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "kvstack/status.h"

namespace kvstack {

// Retention priority: 0 (evict first) to 100 (pinned). TensorRT-LLM's scale.
using Priority = uint8_t;
inline constexpr Priority kMinPriority = 0;
inline constexpr Priority kDefaultPriority = 35;
inline constexpr Priority kMaxPriority = 100;

// The facts about a block a policy may use to rank it. They never change while
// the block waits in a queue (a change moves the block between queues).
struct EvictionCandidate {
  Priority priority = kDefaultPriority;  // effective priority (retention applied)
  uint32_t hit_count = 0;                // prefix hits since the block was stored
};

class EvictionPolicy {
 public:
  static constexpr int kMaxQueues = 128;

  virtual ~EvictionPolicy() = default;

  // The name users pass on command lines ("lru", "priority-lru", "lfu").
  virtual std::string_view name() const = 0;

  // How many queues this policy uses: 1..kMaxQueues.
  virtual int num_queues() const = 0;

  // The queue a newly evictable block joins. Lower queues are evicted first.
  // Must return a value in [0, num_queues()) that depends only on `candidate`.
  virtual int QueueFor(const EvictionCandidate& candidate) const = 0;
};

std::unique_ptr<EvictionPolicy> MakeLruPolicy();
std::unique_ptr<EvictionPolicy> MakePriorityLruPolicy();
std::unique_ptr<EvictionPolicy> MakeLfuPolicy();

// By command-line name; the error lists the names that exist.
Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(std::string_view name);
std::vector<std::string_view> EvictionPolicyNames();

}  // namespace kvstack
