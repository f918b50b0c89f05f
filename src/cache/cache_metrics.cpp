#include "kvstack/cache_metrics.h"

namespace kvstack {

PriorityClass ClassOfPriority(Priority p, Priority default_priority) {
  if (p >= kMaxPriority) return PriorityClass::kPinned;
  if (p > default_priority) return PriorityClass::kDurable;
  if (p == default_priority) return PriorityClass::kDefault;
  return PriorityClass::kOneOff;
}

std::string_view PriorityClassName(PriorityClass c) {
  switch (c) {
    case PriorityClass::kOneOff: return "one-off";
    case PriorityClass::kDefault: return "default";
    case PriorityClass::kDurable: return "durable";
    case PriorityClass::kPinned: return "pinned";
  }
  return "?";
}

}  // namespace kvstack
