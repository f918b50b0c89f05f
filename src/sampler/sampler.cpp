// Sampler: llama.cpp's sampler chain (penalties, top-k, top-p, min-p,
// temperature, dist) over one logits vector, with a draw that is reproducible
// from the seed alone.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

#include "kvstack/sampler.h"

namespace kvstack {
namespace {

// Most likely first; ties go to the lower id so the order (and with it every
// draw) does not depend on the sort algorithm.
bool MoreLikely(const TokenProb& a, const TokenProb& b) {
  if (a.logit != b.logit) return a.logit > b.logit;
  return a.token < b.token;
}

Token Argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;  // strict: the first (lowest id) maximum wins
  }
  return static_cast<Token>(best);
}

// Softmax over the candidates' logits, in place into prob.
void Softmax(std::vector<TokenProb>& candidates) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (const TokenProb& c : candidates) max_logit = std::max(max_logit, c.logit);
  if (!std::isfinite(max_logit)) {
    // Every candidate is masked: nothing to prefer, so spread evenly rather
    // than divide by zero.
    for (TokenProb& c : candidates) c.prob = 1.0f / static_cast<float>(candidates.size());
    return;
  }
  double sum = 0.0;
  for (TokenProb& c : candidates) {
    c.prob = std::exp(c.logit - max_logit);
    sum += c.prob;
  }
  for (TokenProb& c : candidates) c.prob = static_cast<float>(c.prob / sum);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::ApplyRepetitionPenalty(std::span<float> logits, std::span<const Token> recent_tokens) {
  const float penalty = params_.repetition_penalty;
  if (penalty == 1.0f || params_.repetition_window == 0) return;
  size_t window = recent_tokens.size();
  if (params_.repetition_window > 0) window = std::min(window, static_cast<size_t>(params_.repetition_window));
  // Each distinct token is penalized once, however often it repeats (the
  // CTRL rule; frequency penalties would count).
  penalized_.assign(recent_tokens.end() - static_cast<std::ptrdiff_t>(window), recent_tokens.end());
  std::sort(penalized_.begin(), penalized_.end());
  penalized_.erase(std::unique(penalized_.begin(), penalized_.end()), penalized_.end());
  for (Token t : penalized_) {
    if (t < 0 || static_cast<size_t>(t) >= logits.size()) continue;
    float& l = logits[static_cast<size_t>(t)];
    l = l > 0.0f ? l / penalty : l * penalty;
  }
}

void Sampler::Filter(std::span<float> logits, std::span<const Token> recent_tokens) {
  assert(!logits.empty());
  ApplyRepetitionPenalty(logits, recent_tokens);
  candidates_.clear();
  if (params_.temperature == 0.0f) {
    const Token t = Argmax(logits);
    candidates_.push_back({t, logits[static_cast<size_t>(t)], 1.0f});
    sorted_ = true;
    return;
  }

  candidates_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) candidates_.push_back({static_cast<Token>(i), logits[i], 0.0f});
  sorted_ = false;

  // top-k: a partial selection, so a small k over a large vocabulary does not
  // pay for a full sort.
  const size_t k = static_cast<size_t>(params_.top_k);
  if (k > 0 && k < candidates_.size()) {
    std::nth_element(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k - 1),
                     candidates_.end(), MoreLikely);
    candidates_.resize(k);
    std::sort(candidates_.begin(), candidates_.end(), MoreLikely);
    sorted_ = true;
  }

  // top-p on the temperature-1 distribution: keep the shortest most-likely
  // prefix whose mass reaches p (always at least one token).
  if (params_.top_p < 1.0f) {
    if (!sorted_) std::sort(candidates_.begin(), candidates_.end(), MoreLikely);
    sorted_ = true;
    Softmax(candidates_);
    double mass = 0.0;
    size_t keep = candidates_.size();
    for (size_t i = 0; i < candidates_.size(); ++i) {
      mass += candidates_[i].prob;
      if (mass >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    candidates_.resize(keep);
  }

  // min-p: p >= min_p * p_max, written on logits as llama.cpp does
  // (logit >= max_logit + log(min_p)); the comparison is relative, so the
  // earlier filters' renormalization does not matter.
  if (params_.min_p > 0.0f) {
    float max_logit = -std::numeric_limits<float>::infinity();
    for (const TokenProb& c : candidates_) max_logit = std::max(max_logit, c.logit);
    const float threshold = max_logit + std::log(params_.min_p);
    // Stable: keeps the order (sorted or by id) for the draw.
    // Never empties the set: the maximum itself passes (when every logit is
    // -inf, so is the threshold).
    std::erase_if(candidates_, [&](const TokenProb& c) { return c.logit < threshold; });
  }

  for (TokenProb& c : candidates_) c.logit /= params_.temperature;
  Softmax(candidates_);
}

double Sampler::NextUniform() {
  // The top 53 bits make every double in [0, 1) with spacing 2^-53 equally
  // likely; std::uniform_real_distribution would be implementation-defined.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

Token Sampler::Sample(std::span<float> logits, std::span<const Token> recent_tokens) {
  Filter(logits, recent_tokens);
  if (params_.temperature == 0.0f) return candidates_.front().token;
  const double u = NextUniform();
  double mass = 0.0;
  for (const TokenProb& c : candidates_) {
    mass += c.prob;
    if (u < mass) return c.token;
  }
  // Rounding left the sum a hair under 1 and u landed past it.
  return candidates_.back().token;
}

std::span<const TokenProb> Sampler::Candidates(std::span<float> logits, std::span<const Token> recent_tokens) {
  Filter(logits, recent_tokens);
  if (!sorted_) std::sort(candidates_.begin(), candidates_.end(), MoreLikely);
  sorted_ = true;
  return candidates_;
}

}  // namespace kvstack
