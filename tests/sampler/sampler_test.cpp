// Sampler tests: exact candidate sets on hand-made logits, the penalty
// arithmetic, and draws that a fixed seed makes deterministic (so the
// frequency check below can never flake).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "kvstack/sampler.h"

namespace kvstack {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Logits whose temperature-1 softmax is exactly proportional to `probs`.
std::vector<float> LogitsFor(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::vector<Token> Tokens(std::span<const TokenProb> candidates) {
  std::vector<Token> out;
  for (const TokenProb& c : candidates) out.push_back(c.token);
  return out;
}

SamplingParams Sampling(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  return p;
}

// ---------------------------------------------------------------------------
// Validate

TEST(SamplingParamsTest, DefaultsAreValid) { EXPECT_TRUE(SamplingParams{}.Validate().ok()); }

TEST(SamplingParamsTest, ErrorsNameTheField) {
  struct Case {
    void (*mutate)(SamplingParams&);
    const char* message;
  };
  const Case cases[] = {
      {[](SamplingParams& p) { p.temperature = -0.5f; }, "temperature -0.5"},
      {[](SamplingParams& p) { p.temperature = std::numeric_limits<float>::infinity(); }, "temperature inf"},
      {[](SamplingParams& p) { p.top_k = -1; }, "top_k -1"},
      {[](SamplingParams& p) { p.top_p = 1.5f; }, "top_p 1.5: must be in (0, 1]"},
      {[](SamplingParams& p) { p.top_p = 0.0f; }, "top_p 0"},
      {[](SamplingParams& p) { p.top_p = std::nanf(""); }, "top_p nan"},
      {[](SamplingParams& p) { p.min_p = 1.25f; }, "min_p 1.25"},
      {[](SamplingParams& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty 0"},
      {[](SamplingParams& p) { p.repetition_window = -2; }, "repetition_window -2"},
      {[](SamplingParams& p) { p.max_tokens = 0; }, "max_tokens 0"},
      {[](SamplingParams& p) { p.stop_tokens = {2, -7}; }, "stop_tokens[1] -7"},
      {[](SamplingParams& p) { p.stop_strings = {"\n\n", ""}; }, "stop_strings[1]"},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    c.mutate(p);
    const Status s = p.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
}

TEST(SamplingParamsTest, IsStopToken) {
  SamplingParams p;
  p.stop_tokens = {2, 7};
  EXPECT_TRUE(p.IsStopToken(7));
  EXPECT_FALSE(p.IsStopToken(3));
}

// ---------------------------------------------------------------------------
// Greedy

TEST(LogprobsTest, LogSoftmaxOfTheRawLogitsWithTopAlternatives) {
  // Probabilities 1/2, 1/4, 1/8, 1/8 (ids 2, 0, 1, 3): ties go to the lower id.
  const std::vector<float> logits = {std::log(2.0f), std::log(1.0f), std::log(4.0f), std::log(1.0f)};
  const PositionLogprobs p = ComputeLogprobs(logits, 3, 3);
  EXPECT_EQ(p.token, 3);
  EXPECT_NEAR(p.logprob, std::log(0.125), 1e-6);
  ASSERT_EQ(p.top.size(), 3u);
  EXPECT_EQ(p.top[0].token, 2);
  EXPECT_NEAR(p.top[0].logprob, std::log(0.5), 1e-6);
  EXPECT_EQ(p.top[1].token, 0);
  EXPECT_EQ(p.top[2].token, 1);
  EXPECT_NEAR(p.top[2].logprob, std::log(0.125), 1e-6);
  EXPECT_TRUE(ComputeLogprobs(logits, 0, 0).top.empty());
  EXPECT_EQ(ComputeLogprobs(logits, 0, kMaxLogprobs).top.size(), 4u) << "no more than the vocabulary";
  // Large logits do not overflow: the sum is taken from the maximum.
  const std::vector<float> big = {1000.0f, 1000.0f, -std::numeric_limits<float>::infinity()};
  EXPECT_NEAR(ComputeLogprobs(big, 1, 0).logprob, std::log(0.5), 1e-6);
}

TEST(SamplerTest, GreedyPicksTheArgmax) {
  Sampler s(Sampling(0.0f));
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(s.Sample(logits, {}), 1);
}

TEST(SamplerTest, GreedyBreaksTiesTowardTheLowestId) {
  Sampler s(Sampling(0.0f));
  std::vector<float> logits = {1.0f, 4.0f, 4.0f, -std::numeric_limits<float>::infinity(), 4.0f};
  EXPECT_EQ(s.Sample(logits, {}), 1);
  auto c = s.Candidates(logits, {});
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].token, 1);
  EXPECT_EQ(c[0].prob, 1.0f);
}

TEST(SamplerTest, GreedyIgnoresTheFilters) {
  SamplingParams p;
  p.top_k = 2;
  p.top_p = 0.1f;
  p.min_p = 0.9f;
  Sampler s(p);
  std::vector<float> logits = {0.0f, 1.0f, 5.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits, {}), 2);
}

TEST(SamplerTest, GreedySeesThePenalizedLogits) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> logits = {3.0f, 2.0f};
  const std::vector<Token> recent = {0};
  EXPECT_EQ(s.Sample(logits, recent), 1);  // 3 / 2 = 1.5 < 2
}

// ---------------------------------------------------------------------------
// The filters, exactly

TEST(SamplerTest, NoFilterKeepsEveryTokenWithSoftmaxProbabilities) {
  Sampler s(Sampling(1.0f));
  std::vector<float> logits = LogitsFor({0.1, 0.2, 0.3, 0.4});
  auto c = s.Candidates(logits, {});
  EXPECT_THAT(Tokens(c), ElementsAre(3, 2, 1, 0));
  EXPECT_NEAR(c[0].prob, 0.4f, 1e-6);
  EXPECT_NEAR(c[3].prob, 0.1f, 1e-6);
}

TEST(SamplerTest, TopKKeepsTheKMostLikelyAndRenormalizes) {
  SamplingParams p = Sampling(1.0f);
  p.top_k = 2;
  Sampler s(p);
  std::vector<float> logits = LogitsFor({0.1, 0.2, 0.3, 0.4});
  auto c = s.Candidates(logits, {});
  EXPECT_THAT(Tokens(c), ElementsAre(3, 2));
  EXPECT_NEAR(c[0].prob, 0.4f / 0.7f, 1e-6);
  EXPECT_NEAR(c[1].prob, 0.3f / 0.7f, 1e-6);
}

TEST(SamplerTest, TopKTiesGoToTheLowerId) {
  SamplingParams p = Sampling(1.0f);
  p.top_k = 2;
  Sampler s(p);
  std::vector<float> logits = {1.0f, 2.0f, 1.0f, 1.0f, 2.0f};
  EXPECT_THAT(Tokens(s.Candidates(logits, {})), ElementsAre(1, 4));
  std::vector<float> logits2 = {1.0f, 0.0f, 1.0f, 1.0f, 2.0f};
  EXPECT_THAT(Tokens(s.Candidates(logits2, {})), ElementsAre(4, 0));
}

TEST(SamplerTest, TopKLargerThanTheVocabularyKeepsAll) {
  SamplingParams p = Sampling(1.0f);
  p.top_k = 100;
  Sampler s(p);
  std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(s.Candidates(logits, {}).size(), 3u);
}

TEST(SamplerTest, TopPKeepsTheShortestPrefixReachingP) {
  std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  struct Case {
    float top_p;
    std::vector<Token> kept;
  };
  // 0.4 | 0.7 | 0.9 | 1.0 cumulative, most likely first.
  const Case cases[] = {{0.05f, {3}}, {0.4f, {3}}, {0.45f, {3, 2}}, {0.65f, {3, 2}}, {0.75f, {3, 2, 1}},
                        {0.95f, {3, 2, 1, 0}}};
  for (const Case& c : cases) {
    SamplingParams p = Sampling(1.0f);
    p.top_p = c.top_p;
    Sampler s(p);
    std::vector<float> logits = LogitsFor(probs);
    EXPECT_EQ(Tokens(s.Candidates(logits, {})), c.kept) << "top_p " << c.top_p;
  }
}

TEST(SamplerTest, TopPUsesTemperatureOneProbabilities) {
  // At temperature 0.1 token 3 alone would hold > 0.95 of the mass; top-p
  // still judges on the unscaled distribution, as llama.cpp's chain does.
  SamplingParams p = Sampling(0.1f);
  p.top_p = 0.65f;
  Sampler s(p);
  std::vector<float> logits = LogitsFor({0.1, 0.2, 0.3, 0.4});
  auto c = s.Candidates(logits, {});
  EXPECT_THAT(Tokens(c), ElementsAre(3, 2));
  // Then the temperature: p ~ exp(log(p) / 0.1) = p^10.
  const double a = std::pow(0.4, 10), b = std::pow(0.3, 10);
  EXPECT_NEAR(c[0].prob, a / (a + b), 1e-5);
}

TEST(SamplerTest, MinPDropsTokensBelowAFractionOfTheBest) {
  SamplingParams p = Sampling(1.0f);
  p.min_p = 0.5f;
  Sampler s(p);
  // Relative to 0.4: 0.3 (0.75) and 0.2 (0.5, kept: >=) stay, 0.1 (0.25) goes.
  std::vector<float> logits = LogitsFor({0.1, 0.2, 0.3, 0.4});
  auto c = s.Candidates(logits, {});
  EXPECT_THAT(Tokens(c), ElementsAre(3, 2, 1));
  EXPECT_NEAR(c[0].prob, 0.4f / 0.9f, 1e-6);
}

TEST(SamplerTest, MinPOfOneKeepsOnlyTheBest) {
  SamplingParams p = Sampling(1.0f);
  p.min_p = 1.0f;
  Sampler s(p);
  std::vector<float> logits = LogitsFor({0.1, 0.2, 0.3, 0.4});
  EXPECT_THAT(Tokens(s.Candidates(logits, {})), ElementsAre(3));
}

TEST(SamplerTest, FiltersComposeInOrder) {
  // top-k 3 -> {5, 4, 3}, renormalized to 0.4, 0.33, 0.27; top-p 0.6 ->
  // {5, 4} (cumulative 0.4, then 0.73); min-p 0.9 drops 4 (0.25 / 0.3 = 0.83),
  // min-p 0.8 keeps it.
  SamplingParams p = Sampling(0.7f);
  p.top_k = 3;
  p.top_p = 0.6f;
  p.min_p = 0.9f;
  Sampler s(p);
  std::vector<float> logits = LogitsFor({0.02, 0.03, 0.05, 0.2, 0.25, 0.3, 0.15});
  EXPECT_THAT(Tokens(s.Candidates(logits, {})), ElementsAre(5));
  p.min_p = 0.8f;
  Sampler s2(p);
  logits = LogitsFor({0.02, 0.03, 0.05, 0.2, 0.25, 0.3, 0.15});
  EXPECT_THAT(Tokens(s2.Candidates(logits, {})), ElementsAre(5, 4));
}

TEST(SamplerTest, MaskedTokensAreNeverDrawn) {
  const float kMasked = -std::numeric_limits<float>::infinity();
  Sampler s(Sampling(1.5f));
  for (int i = 0; i < 200; ++i) {
    std::vector<float> logits = {kMasked, 0.0f, kMasked, 0.1f};
    const Token t = s.Sample(logits, {});
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
}

// ---------------------------------------------------------------------------
// Repetition penalty

TEST(SamplerTest, PenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p = Sampling(0.0f);
  p.repetition_penalty = 1.25f;
  Sampler s(p);
  std::vector<float> logits = {2.0f, -2.0f, 0.0f, 5.0f, 1.0f};
  const std::vector<Token> recent = {0, 1, 2, 1, 1, 0};  // repeats count once
  (void)s.Sample(logits, recent);
  EXPECT_THAT(logits, ElementsAre(1.6f, -2.5f, 0.0f, 5.0f, 1.0f));
}

TEST(SamplerTest, PenaltyBelowOneEncouragesRepeats) {
  SamplingParams p = Sampling(0.0f);
  p.repetition_penalty = 0.5f;
  Sampler s(p);
  std::vector<float> logits = {2.0f, -2.0f};
  const std::vector<Token> recent = {0, 1};
  (void)s.Sample(logits, recent);
  EXPECT_THAT(logits, ElementsAre(4.0f, -1.0f));
}

TEST(SamplerTest, PenaltyLooksOnlyAtTheWindow) {
  SamplingParams p = Sampling(0.0f);
  p.repetition_penalty = 2.0f;
  p.repetition_window = 2;
  Sampler s(p);
  std::vector<float> logits = {4.0f, 4.0f, 4.0f, 4.0f};
  const std::vector<Token> recent = {0, 1, 2, 3, 2};  // window: 3, 2
  (void)s.Sample(logits, recent);
  EXPECT_THAT(logits, ElementsAre(4.0f, 4.0f, 2.0f, 2.0f));
}

TEST(SamplerTest, PenaltyWindowMinusOneCoversEverythingAndZeroNothing) {
  SamplingParams p = Sampling(0.0f);
  p.repetition_penalty = 2.0f;
  p.repetition_window = -1;
  Sampler all(p);
  std::vector<float> logits = {4.0f, 4.0f, 4.0f};
  const std::vector<Token> recent = {0, 1, 2};
  (void)all.Sample(logits, recent);
  EXPECT_THAT(logits, ElementsAre(2.0f, 2.0f, 2.0f));

  p.repetition_window = 0;
  Sampler none(p);
  logits = {4.0f, 4.0f, 4.0f};
  (void)none.Sample(logits, recent);
  EXPECT_THAT(logits, ElementsAre(4.0f, 4.0f, 4.0f));
}

TEST(SamplerTest, PenaltyIgnoresIdsOutsideTheVocabulary) {
  SamplingParams p = Sampling(0.0f);
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> logits = {4.0f, 4.0f};
  const std::vector<Token> recent = {-1, 9, 1};
  EXPECT_EQ(s.Sample(logits, recent), 0);
  EXPECT_THAT(logits, ElementsAre(4.0f, 2.0f));
}

// ---------------------------------------------------------------------------
// Seeded draws

std::vector<Token> Draw(const SamplingParams& p, int n) {
  Sampler s(p);
  std::vector<Token> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = {0.0f, 0.5f, 1.0f, 0.2f, 0.9f, -0.3f, 0.7f, 0.1f};
    out.push_back(s.Sample(logits, {}));
  }
  return out;
}

TEST(SamplerTest, TheSameSeedGivesTheSameTokens) {
  SamplingParams p = Sampling(1.0f);
  p.seed = 1234;
  EXPECT_EQ(Draw(p, 200), Draw(p, 200));
}

TEST(SamplerTest, DifferentSeedsGiveDifferentTokens) {
  SamplingParams a = Sampling(1.0f);
  a.seed = 1;
  SamplingParams b = a;
  b.seed = 2;
  EXPECT_NE(Draw(a, 200), Draw(b, 200));
}

TEST(SamplerTest, TheDrawIsPinnedForSeedZero) {
  // Locks the draw algorithm (mt19937_64 bits -> [0, 1) -> cumulative mass):
  // changing it would silently change every seeded result users rely on.
  SamplingParams p = Sampling(1.0f);
  const std::vector<Token> tokens = Draw(p, 12);
  std::vector<Token> expected;
  std::mt19937_64 rng(0);
  std::vector<float> logits = {0.0f, 0.5f, 1.0f, 0.2f, 0.9f, -0.3f, 0.7f, 0.1f};
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (int i = 0; i < 12; ++i) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    double mass = 0;
    Token pick = 7;
    for (Token t = 0; t < 8; ++t) {
      mass += std::exp(logits[t]) / z;
      if (u < mass) {
        pick = t;
        break;
      }
    }
    expected.push_back(pick);
  }
  EXPECT_EQ(tokens, expected);
}

TEST(SamplerTest, FrequenciesFollowTheDistribution) {
  // A chi-square goodness-of-fit test over 20,000 draws. The seed is fixed,
  // so the statistic is the same number every run: this checks that the draw
  // is unbiased, and cannot flake.
  const std::vector<double> probs = {0.5, 0.25, 0.15, 0.07, 0.03};
  SamplingParams p = Sampling(1.0f);
  p.seed = 42;
  Sampler s(p);
  std::vector<int> counts(probs.size(), 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = LogitsFor(probs);
    ++counts[static_cast<size_t>(s.Sample(logits, {}))];
  }
  double chi2 = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double expected = n * probs[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
  EXPECT_LT(chi2, 18.47) << "counts " << ::testing::PrintToString(counts);
}

TEST(SamplerTest, TemperatureSharpensTheFrequencies) {
  const std::vector<double> probs = {0.6, 0.4};
  auto share_of_best = [&](float temperature) {
    SamplingParams p = Sampling(temperature);
    p.seed = 7;
    Sampler s(p);
    int best = 0;
    for (int i = 0; i < 4000; ++i) {
      std::vector<float> logits = LogitsFor(probs);
      best += s.Sample(logits, {}) == 0;
    }
    return best / 4000.0;
  };
  // Expected shares: 0.6^2/(0.6^2+0.4^2) = 0.69 at 0.5; 0.6 at 1; 0.55 at 2.
  EXPECT_NEAR(share_of_best(0.5f), 0.692, 0.03);
  EXPECT_NEAR(share_of_best(1.0f), 0.6, 0.03);
  EXPECT_NEAR(share_of_best(2.0f), 0.55, 0.03);
}

TEST(SamplerTest, CandidatesDoNotAdvanceTheGenerator) {
  SamplingParams p = Sampling(1.0f);
  p.seed = 99;
  Sampler a(p), b(p);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> la = {0.0f, 0.3f, 0.6f}, lb = la, lc = la;
    (void)b.Candidates(lc, {});
    EXPECT_EQ(a.Sample(la, {}), b.Sample(lb, {}));
  }
}

}  // namespace
}  // namespace kvstack
