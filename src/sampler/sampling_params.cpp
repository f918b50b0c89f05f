// SamplingParams::Validate: the request-edge check, so a Sampler can trust
// its parameters.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "kvstack/sampler.h"

namespace kvstack {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return InvalidArgument(fmt::format("temperature {}: must be a finite number >= 0 (0 = greedy)", temperature));
  }
  if (top_k < 0) return InvalidArgument(fmt::format("top_k {}: must be >= 0 (0 = off)", top_k));
  // The negated comparisons also reject NaN.
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return InvalidArgument(fmt::format("top_p {}: must be in (0, 1] (1 = off)", top_p));
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return InvalidArgument(fmt::format("min_p {}: must be in [0, 1] (0 = off)", min_p));
  }
  if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0.0f) {
    return InvalidArgument(
        fmt::format("repetition_penalty {}: must be a finite number > 0 (1 = off)", repetition_penalty));
  }
  if (repetition_window < -1) {
    return InvalidArgument(
        fmt::format("repetition_window {}: must be >= 0, or -1 for every token so far", repetition_window));
  }
  if (max_tokens < 1) return InvalidArgument(fmt::format("max_tokens {}: must be >= 1", max_tokens));
  for (size_t i = 0; i < stop_tokens.size(); ++i) {
    if (stop_tokens[i] < 0) {
      return InvalidArgument(fmt::format("stop_tokens[{}] {}: a token id must be >= 0", i, stop_tokens[i]));
    }
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    if (stop_strings[i].empty()) return InvalidArgument(fmt::format("stop_strings[{}]: must not be empty", i));
  }
  return Status::Ok();
}

bool SamplingParams::IsStopToken(Token token) const {
  return std::find(stop_tokens.begin(), stop_tokens.end(), token) != stop_tokens.end();
}

}  // namespace kvstack
