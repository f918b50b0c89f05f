// The paged, batched forward pass against the naive reference: steps that mix
// prefill chunks, decode tokens and prefix hits, for block sizes 1, 16, 32.
// Error measure: max |engine - reference| over the vocabulary, divided by the
// largest |reference logit| at that position.
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "engine/forward.h"
#include "engine/model_fixtures.h"
#include "engine/reference_forward.h"
#include "kvstack/kv_cache.h"

namespace kvstack::engine {
namespace {

double RelError(std::span<const float> got, const std::vector<double>& want) {
  double max_ref = 1e-30, max_diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(want[i]));
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - want[i]));
  }
  return max_diff / max_ref;
}

struct Case {
  std::string model;  // a fixture name (see model_fixtures.h)
  int block_size;
};

class ForwardTest : public ::testing::TestWithParam<Case> {};

// Three sequences run side by side. A: a prompt in uneven prefill chunks, then
// decode. B: starts later, decoding while A prefills. C: shares A's first
// tokens and is admitted after A computed them, so its prefix comes from the
// cache (never recomputed). Every logit the engine produces is compared with
// the reference run of the same sequence.
TEST_P(ForwardTest, PagedBatchedMatchesNaiveReference) {
  auto model = LoadFixture(GetParam().model);
  if (!model.ok()) GTEST_SKIP() << model.status().ToString();
  const LlamaModel& m = **model;
  const LlamaHParams& h = m.hparams();
  const int B = GetParam().block_size;

  KvCacheConfig cfg;
  cfg.num_blocks = 4 * 96 / B + 16;
  cfg.shape = KvShape{.num_layers = static_cast<int32_t>(h.n_layer), .num_kv_heads = static_cast<int32_t>(h.n_head_kv),
                      .head_dim = static_cast<int32_t>(h.head_dim), .block_size = B, .dtype = KvDType::kF32};
  auto cache = KvCache::Create(cfg);
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  kernels::ThreadPool pool(2);
  Forward fwd(m, &(*cache)->arena(), &pool);

  std::mt19937 rng(7);
  auto tokens = [&](int n) {
    std::vector<Token> t(n);
    for (Token& x : t) x = static_cast<Token>(1 + rng() % (h.n_vocab - 1));
    return t;
  };
  std::vector<Token> a = tokens(45);
  std::vector<Token> b = tokens(7);
  std::vector<Token> c(a.begin(), a.begin() + 40);
  const std::vector<Token> c_tail = tokens(6);
  c.insert(c.end(), c_tail.begin(), c_tail.end());

  struct Seq {
    std::vector<Token> tokens;  // everything to feed, prompt then "decode"
    int prompt;
    SequenceId id;
    int computed = 0;
    testing::ReferenceForward ref;
    std::vector<std::vector<double>> ref_logits;
  };
  std::vector<std::unique_ptr<Seq>> seqs;
  auto admit = [&](const std::vector<Token>& all, int prompt) {
    auto s = std::make_unique<Seq>(Seq{all, prompt, {}, 0, testing::ReferenceForward(m), {}});
    std::vector<Token> p(all.begin(), all.begin() + prompt);
    AdmissionRequest req{.tokens = p, .keys = {.model_id = m.identity()}};
    auto id = (*cache)->Admit(req, (*cache)->PlanAdmission(req));
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    s->id = *id;
    s->computed = (*cache)->Info(*id)->hit_tokens;
    for (Token t : all) s->ref_logits.push_back(s->ref.Step(t));
    seqs.push_back(std::move(s));
    return seqs.back().get();
  };

  double worst = 0;
  int compared = 0;
  // Runs one step: `take[i]` tokens of seqs[i] (0 = skip), logits for all.
  auto step = [&](std::vector<int> take) {
    ForwardBatch batch;
    std::vector<std::pair<Seq*, int>> rows;
    for (size_t i = 0; i < take.size(); ++i) {
      Seq* s = seqs[i].get();
      if (take[i] == 0) continue;
      const int end = s->computed + take[i];
      ASSERT_LE(end, static_cast<int>(s->tokens.size()));
      if (end > s->prompt && (*cache)->Info(s->id)->num_tokens < end) {
        std::vector<Token> add(s->tokens.begin() + std::max(s->prompt, s->computed), s->tokens.begin() + end);
        const int have = (*cache)->Info(s->id)->num_tokens;
        add.assign(s->tokens.begin() + have, s->tokens.begin() + end);
        ASSERT_TRUE((*cache)->Append(s->id, add).ok());
      }
      batch.tables.push_back((*cache)->BlockTable(s->id));
      for (int p = s->computed; p < end; ++p) {
        batch.tokens.push_back({s->tokens[p], p, static_cast<int32_t>(batch.tables.size() - 1), true});
        rows.push_back({s, p});
      }
    }
    std::vector<float> logits;
    ASSERT_TRUE(fwd.Run(batch, &logits).ok());
    const size_t V = h.n_vocab;
    for (size_t r = 0; r < rows.size(); ++r) {
      const double err = RelError({&logits[r * V], V}, rows[r].first->ref_logits[rows[r].second]);
      worst = std::max(worst, err);
      ++compared;
    }
    for (size_t i = 0; i < take.size(); ++i) {
      if (take[i] == 0) continue;
      Seq* s = seqs[i].get();
      s->computed += take[i];
      ASSERT_TRUE((*cache)->MarkComputed(s->id, s->computed).ok());
    }
  };

  admit(a, 40);
  step({13});
  step({9});
  admit(b, 3);
  step({18, 3});  // A finishes its prompt (40) while B prefills
  step({1, 1});   // decode both
  Seq* sc = admit(c, 44);
  // The 40 shared tokens' full blocks come from the cache, never recomputed.
  EXPECT_EQ(sc->computed, 40 / B * B) << "C's prefix should come from the cache";
  step({1, 1, 44 - sc->computed});  // C prefills only what missed
  for (int i = 0; i < 2; ++i) step({1, 1, 1});
  EXPECT_GE(compared, 57);
  EXPECT_LE(worst, 1e-4) << "max relative logit error over " << compared << " positions";
  RecordProperty("max_rel_error", std::to_string(worst));
  std::cout << GetParam().model << " B=" << B << ": max relative logit error " << worst << " over " << compared
            << " positions\n";
}

std::vector<Case> Cases() {
  std::vector<Case> out;
  for (const std::string& m : FixtureNames()) {
    for (int b : {1, 16, 32}) out.push_back({m, b});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Models, ForwardTest, ::testing::ValuesIn(Cases()), [](const auto& info) {
  std::string n = info.param.model + "_B" + std::to_string(info.param.block_size);
  for (char& ch : n) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return n;
});

}  // namespace
}  // namespace kvstack::engine
