#include "kvstack/eviction_policy.h"

#include <bit>
#include <string>

namespace kvstack {
namespace {

class LruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "lru"; }
  int num_queues() const override { return 1; }
  int QueueFor(const EvictionCandidate&) const override { return 0; }
};

class PriorityLruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "priority-lru"; }
  int num_queues() const override { return kMaxPriority + 1; }
  int QueueFor(const EvictionCandidate& c) const override {
    return c.priority > kMaxPriority ? kMaxPriority : c.priority;
  }
};

class LfuPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "lfu"; }
  // Buckets 0, 1, 2-3, 4-7, ... up to 2^31: exact counts would need unbounded
  // queues, and the difference between 1,000 and 1,001 hits is noise.
  int num_queues() const override { return 33; }
  int QueueFor(const EvictionCandidate& c) const override {
    return static_cast<int>(std::bit_width(c.hit_count));
  }
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLruPolicy() { return std::make_unique<LruPolicy>(); }
std::unique_ptr<EvictionPolicy> MakePriorityLruPolicy() { return std::make_unique<PriorityLruPolicy>(); }
std::unique_ptr<EvictionPolicy> MakeLfuPolicy() { return std::make_unique<LfuPolicy>(); }

std::vector<std::string_view> EvictionPolicyNames() { return {"lru", "priority-lru", "lfu"}; }

Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(std::string_view name) {
  if (name == "lru") return MakeLruPolicy();
  if (name == "priority-lru") return MakePriorityLruPolicy();
  if (name == "lfu") return MakeLfuPolicy();
  std::string known;
  for (std::string_view n : EvictionPolicyNames()) {
    if (!known.empty()) known += ", ";
    known += n;
  }
  return InvalidArgument("unknown eviction policy '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace kvstack
