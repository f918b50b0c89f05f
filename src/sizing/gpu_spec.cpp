// GpuSpec checks.
#include <string>

#include "kvstack/sizing.h"

namespace kvstack::sizing {

Status ValidateGpuSpec(const GpuSpec& g) {
  const std::string who = "gpu " + (g.name.empty() ? std::string("(unnamed)") : g.name) + ": ";
  if (g.name.empty()) return InvalidArgument("gpu: name is empty");
  if (g.hbm_bytes <= 0) return InvalidArgument(who + "hbm_bytes " + std::to_string(g.hbm_bytes) + ": must be positive");
  if (!(g.memory_bandwidth > 0)) {
    return InvalidArgument(who + "memory_bandwidth " + std::to_string(g.memory_bandwidth) + ": must be positive");
  }
  if (!(g.bf16_flops > 0)) {
    return InvalidArgument(who + "bf16_flops " + std::to_string(g.bf16_flops) + ": must be positive");
  }
  if (g.fp8_flops && !(*g.fp8_flops > 0)) {
    return InvalidArgument(who + "fp8_flops " + std::to_string(*g.fp8_flops) +
                           ": must be positive when present (omit it for GPUs without fp8)");
  }
  if (g.interconnect_bandwidth < 0) {
    return InvalidArgument(who + "interconnect_bandwidth " + std::to_string(g.interconnect_bandwidth) +
                           ": must not be negative");
  }
  return Status::Ok();
}

}  // namespace kvstack::sizing
