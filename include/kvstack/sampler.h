// Sampling: turns a step's logits into the next token, and decides where the
// generated text stops.
//
// SamplingParams is what a request asks for (greedy or temperature sampling,
// top-k, top-p, min-p, a repetition penalty, a seed, stop tokens and strings,
// a token budget). A Sampler applies them to one logits vector at a time in
// llama.cpp's order: repetition penalty, top-k, top-p, min-p, temperature, then
// a draw from the remaining tokens with a generator seeded from the request's
// seed, so the same seed over the same logits gives the same tokens on every
// run and machine (the draw uses std::mt19937_64, which the standard fixes bit
// for bit, and no distribution class, whose algorithm it does not). A
// StopMatcher watches the decoded text for stop strings while it streams and
// holds back any tail that could still become one, so a client never sees part
// of a stop string.
//
// Callers: the engine (one Sampler and one StopMatcher per sequence) and the
// server (SamplingParams from a request's fields, Validate at the edge).
// Thread safety: SamplingParams is a value. A Sampler and a StopMatcher carry
// state (the generator, the held-back text); each is used by one thread at a
// time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"  // Token
#include "kvstack/status.h"

namespace kvstack {

struct SamplingParams {
  // 0 picks the most likely token (greedy, the lowest id on ties; top-k, top-p
  // and min-p then change nothing). Otherwise logits are divided by it before
  // the draw: below 1 sharpens, above 1 flattens.
  float temperature = 0.0f;
  // Keep only the k most likely tokens; 0 keeps all.
  int top_k = 0;
  // Keep the smallest set of most likely tokens whose probability (at
  // temperature 1) reaches top_p; 1 keeps all. In (0, 1].
  float top_p = 1.0f;
  // Drop tokens whose probability is below min_p times the most likely one's;
  // 0 keeps all. In [0, 1].
  float min_p = 0.0f;
  // Penalty for tokens among the last `repetition_window` tokens (llama.cpp's
  // and CTRL's): a positive logit is divided by it, a negative one multiplied.
  // 1 is off; above 1 discourages repeats, below 1 encourages them.
  float repetition_penalty = 1.0f;
  // How many of the most recent tokens the penalty looks at; 0 none, -1 all of
  // those the caller passes.
  int repetition_window = 64;
  // The generator's seed. The same seed, parameters and logits give the same
  // tokens; a server that wants fresh randomness draws a seed at its edge.
  uint64_t seed = 0;
  // The most tokens to generate (the engine stops the sequence there). >= 1.
  int max_tokens = 256;
  // Generation ends when one of these is sampled; the token is not emitted as
  // text. Ids must be >= 0.
  std::vector<Token> stop_tokens;
  // Generation ends when the decoded text contains one of these; the text from
  // the stop string on is not emitted (see StopMatcher). Each is non-empty.
  std::vector<std::string> stop_strings;

  // OK, or InvalidArgument naming the first bad field and its value
  // ("top_p 1.5: must be in (0, 1]").
  Status Validate() const;

  bool IsStopToken(Token token) const;
};

// One candidate that survived the filters, with its probability among them.
struct TokenProb {
  Token token;
  float logit;  // after penalty and temperature
  float prob;   // the candidates' probabilities sum to 1
};

// Log-probabilities as OpenAI defines them: the log-softmax of the model's raw
// logits over the whole vocabulary, before any penalty, temperature or filter
// (so they do not depend on the sampling parameters).
inline constexpr int kMaxLogprobs = 20;  // the most alternatives a position reports

struct TokenLogprob {
  Token token = 0;
  float logprob = 0;
};

// One position of a sequence: the token there (sampled, or given in a
// prompt), its log-probability, and the `top` most likely tokens, most likely
// first (ties: lower id first).
struct PositionLogprobs {
  Token token = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;
};

// REQUIRES: logits non-empty, no NaN; 0 <= token < logits.size();
// 0 <= top <= kMaxLogprobs (more is clamped to the vocabulary).
PositionLogprobs ComputeLogprobs(std::span<const float> logits, Token token, int top);

class Sampler {
 public:
  // REQUIRES: params.Validate() is OK (a Sampler does not check again).
  explicit Sampler(const SamplingParams& params);

  // The next token. `logits` has one entry per vocabulary id and is modified
  // in place (the repetition penalty is applied to it); `recent_tokens` are
  // the sequence's tokens so far, oldest first (only the window's tail is
  // read; ids outside the vocabulary are ignored). Advances the generator by
  // one draw unless the sampling is greedy.
  // REQUIRES: logits is non-empty and holds no NaN (-inf masks a token).
  Token Sample(std::span<float> logits, std::span<const Token> recent_tokens);

  // The distribution Sample draws from: the surviving candidates, most likely
  // first (ties: lower id first), probabilities summing to 1. Greedy yields the
  // one chosen token with probability 1. Does not advance the generator. The
  // span stays valid until the next call on this Sampler.
  // REQUIRES: as Sample.
  std::span<const TokenProb> Candidates(std::span<float> logits, std::span<const Token> recent_tokens);

  const SamplingParams& params() const { return params_; }

 private:
  // Runs the chain up to (and including) the softmax into candidates_; sets
  // sorted_ when they are most likely first.
  void Filter(std::span<float> logits, std::span<const Token> recent_tokens);
  void ApplyRepetitionPenalty(std::span<float> logits, std::span<const Token> recent_tokens);
  // A uniform double in [0, 1) from 53 bits of the generator.
  double NextUniform();

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<TokenProb> candidates_;  // reused across calls
  std::vector<Token> penalized_;       // reused: distinct tokens in the window
  bool sorted_ = false;
};

// Finds stop strings in streamed text. Feed each decoded piece as it comes;
// the result says which text is safe to show now. Held back is the longest
// tail that is a proper prefix of some stop string, and an incomplete UTF-8
// sequence at the end (a byte token may end mid-character), so that the text a
// client sees never contains part of a stop string or half a character. After
// a match nothing more is emitted: the text before the stop string is the
// last output, and the stop string itself is dropped.
class StopMatcher {
 public:
  struct Output {
    std::string text;                     // safe to emit now (may be empty)
    std::optional<size_t> stop_index;     // set once a stop string matched: which one
  };

  // Empty strings are ignored (Validate rejects them earlier).
  explicit StopMatcher(std::vector<std::string> stop_strings);

  // Appends `piece` to the stream. After a match, returns empty text and the
  // same stop_index again.
  Output Feed(std::string_view piece);

  // At the end of generation (a stop token, max_tokens): the held-back text,
  // as it is (an incomplete UTF-8 sequence is returned too; the caller decides
  // how to show it). Empty after a match.
  std::string Flush();

  bool stopped() const { return stop_index_.has_value(); }

 private:
  // Length of the tail of held_ that must wait for more text.
  size_t HoldBack() const;

  std::vector<std::string> stop_strings_;
  std::string held_;  // text not yet emitted
  std::optional<size_t> stop_index_;
};

}  // namespace kvstack
