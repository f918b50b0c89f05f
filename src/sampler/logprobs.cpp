// Log-probabilities from raw logits (see sampler.h).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kvstack/sampler.h"

namespace kvstack {

PositionLogprobs ComputeLogprobs(std::span<const float> logits, Token token, int top) {
  // log p(i) = logit(i) - logsumexp(logits), summed in double: a 32k-entry
  // vocabulary loses digits in float.
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  const double log_z = mx + std::log(sum);
  auto logprob = [&](Token t) { return static_cast<float>(static_cast<double>(logits[static_cast<size_t>(t)]) - log_z); };

  PositionLogprobs out{.token = token, .logprob = logprob(token), .top = {}};
  const size_t k = std::min(static_cast<size_t>(std::max(top, 0)), logits.size());
  if (k == 0) return out;
  std::vector<Token> ids(logits.size());
  std::iota(ids.begin(), ids.end(), Token{0});
  std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(k), ids.end(), [&](Token a, Token b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la != lb ? la > lb : a < b;
  });
  out.top.reserve(k);
  for (size_t i = 0; i < k; ++i) out.top.push_back({ids[i], logprob(ids[i])});
  return out;
}

}  // namespace kvstack
