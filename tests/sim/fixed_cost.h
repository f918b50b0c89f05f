// A cost model with round numbers, so tests can reason about time exactly.
#pragma once

#include <string>
#include <vector>

#include "kvstack/sim.h"

namespace kvstack::sim::testing {

class FixedCost final : public CostModel {
 public:
  // 1 ms per prefilled token, 10 ms per decode step, 0.1 ms per onboarded token.
  double PrefillSeconds(int64_t new_tokens, int64_t) const override { return 1e-3 * static_cast<double>(new_tokens); }
  double DecodeStepSeconds(int64_t batch, int64_t) const override { return batch > 0 ? 10e-3 : 0; }
  double OnboardSeconds(Tier, int64_t tokens) const override { return 1e-4 * static_cast<double>(tokens); }
  int64_t KvBytesPerToken() const override { return 100; }
  std::vector<std::string> Describe() const override { return {"fixed test costs"}; }
};

}  // namespace kvstack::sim::testing
