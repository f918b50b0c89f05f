// Quantized KV in the engine: llama.cpp's greedy completions with int8 KV,
// teacher-forced accuracy of every type against f32 KV (the targets of issue
// 12, with margins), and prefix hits and batching that never change an
// output with quantized KV.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <tuple>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/requirement.h"
#include "engine/forward.h"
#include "engine/kv_accuracy.h"
#include "engine/kv_block_convert.h"
#include "engine/llama_model.h"
#include "kvstack/engine.h"
#include "kvstack/model_gen.h"
#include "kvstack/tokenizer.h"

namespace kvstack {
namespace {

const std::string kShared = KVSTACK_SHARED_DIR;
std::string SharedPath(const std::string& rel) { return kShared + "/" + rel; }

// ../shared is installed by the project: under CI=true its absence fails.
#define REQUIRE_SHARED(path) \
  if (!std::filesystem::exists(path)) KVSTACK_SKIP_MISSING() << (path) << " is absent (../shared not available)"

std::unique_ptr<Engine> MakeEngine(const std::string& model, KvDType k, KvDType v) {
  EngineOptions o;
  o.model_path = model;
  o.threads = 1;
  o.kv_dtype = k;
  o.kv_dtype_v = v;
  o.kv_memory_bytes = 16 << 20;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

std::map<RequestId, std::vector<Token>> RunAll(Engine& e) {
  std::map<RequestId, std::vector<Token>> out;
  std::vector<GenerationEvent> events;
  while (e.HasWork()) {
    events.clear();
    Status s = e.Step(&events);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) break;
    for (const GenerationEvent& ev : events) out[ev.id].insert(out[ev.id].end(), ev.tokens.begin(), ev.tokens.end());
  }
  return out;
}

GenerationRequest Greedy(std::vector<Token> prompt, int n) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.max_tokens = n;
  return r;
}

// Teacher-forced logits of `tokens` with KV of type kv: row i predicts token i + 1.
std::vector<std::vector<float>> TeacherForced(const engine::LlamaModel& m, KvDType kv, const std::vector<Token>& tokens) {
  const LlamaHParams& h = m.hparams();
  const int B = 16;
  const int32_t blocks = static_cast<int32_t>(tokens.size()) / B + 1;
  auto arena = KvArena::Create(KvShape{.num_layers = static_cast<int32_t>(h.n_layer),
                                       .num_kv_heads = static_cast<int32_t>(h.n_head_kv),
                                       .head_dim = static_cast<int32_t>(h.head_dim), .block_size = B, .dtype = kv},
                               blocks, KvStorageMode::kAllocate);
  EXPECT_TRUE(arena.ok());
  kernels::ThreadPool pool(1);
  engine::Forward fwd(m, &*arena, &pool);
  std::vector<BlockId> table(static_cast<size_t>(blocks));
  for (int32_t i = 0; i < blocks; ++i) table[i] = static_cast<BlockId>(i);
  engine::KvResidual residual(arena->shape());
  engine::ForwardBatch batch;
  batch.tables = {table};
  batch.residuals = {&residual};
  for (size_t i = 0; i < tokens.size(); ++i) {
    batch.tokens.push_back({.token = tokens[i], .position = static_cast<int32_t>(i), .table = 0, .want_logits = true});
  }
  std::vector<float> logits;
  EXPECT_TRUE(fwd.Run(batch, &logits).ok());
  std::vector<std::vector<float>> rows;
  for (size_t i = 0; i < tokens.size(); ++i) {
    rows.emplace_back(logits.begin() + i * h.n_vocab, logits.begin() + (i + 1) * h.n_vocab);
  }
  return rows;
}

// llama.cpp's completions with int8 KV: equal, or the first differing
// position is a near tie (the int8 logit gap between the two tokens < 0.5).
TEST(KvQuantEngineTest, Stories260KInt8KeepsLlamaCppGreedyCompletions) {
  const std::string model = SharedPath("models/stories260K.gguf");
  REQUIRE_SHARED(model);
  std::ifstream in(SharedPath("golden/stories260K_greedy.json"));
  const nlohmann::json golden = nlohmann::json::parse(in);
  auto e = MakeEngine(model, KvDType::kInt8, KvDType::kInt8);
  ASSERT_NE(e, nullptr);
  auto m = engine::LlamaModel::Load(model);
  ASSERT_TRUE(m.ok());
  for (const auto& p : golden["prompts"]) {
    const std::vector<Token> prompt = p["prompt_token_ids_with_bos"].get<std::vector<Token>>();
    const std::vector<Token> want = p["completion_token_ids"].get<std::vector<Token>>();
    auto id = e->Submit(Greedy(prompt, static_cast<int>(want.size())));
    ASSERT_TRUE(id.ok());
    const std::vector<Token> got = RunAll(*e)[*id];
    size_t first = 0;
    while (first < want.size() && first < got.size() && got[first] == want[first]) ++first;
    if (first == want.size()) continue;
    ASSERT_LT(first, got.size()) << p["name"] << ": stopped early";
    std::vector<Token> forced = prompt;
    forced.insert(forced.end(), want.begin(), want.begin() + static_cast<long>(first));
    const std::vector<float> row = TeacherForced(**m, KvDType::kInt8, forced).back();
    const float gap = row[got[first]] - row[want[first]];
    std::printf("%s: int8 KV differs from llama.cpp at completion token %zu (%d instead of %d), logit gap %.4f\n",
                p["name"].get<std::string>().c_str(), first, got[first], want[first], gap);
    EXPECT_LT(gap, 0.5f) << p["name"] << " at completion token " << first;
  }
}

struct Target {
  KvDType k, v;
  double min_top1;
  double max_mean_kl;  // < 0: reported, not asserted
  std::optional<KvDType> via_tier = std::nullopt;  // blocks come back from tiers storing this type
};

void ExpectAccuracy(const std::string& model, int64_t positions, int32_t context, const std::vector<Target>& targets) {
  engine::KvAccuracyOptions o;
  o.model_path = model;
  o.positions = positions;
  o.context = context;
  for (const Target& t : targets) o.candidates.push_back({t.k, t.v, t.via_tier});
  auto rep = engine::MeasureKvAccuracy(o);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->results.size(), targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    const engine::KvAccuracy& r = rep->results[i];
    std::string name = std::string(KvDTypeName(r.k_type)) + "/" + std::string(KvDTypeName(r.v_type));
    if (r.via_tier) name += std::string(" via ") + std::string(KvDTypeName(*r.via_tier)) + " tiers";
    std::printf("%s %s: %lld positions, top-1 %.4f, mean KL %.3e, p99 KL %.3e, max KL %.3e\n",
                std::filesystem::path(model).filename().c_str(), name.c_str(), static_cast<long long>(r.positions),
                r.top1_agreement, r.mean_kl, r.p99_kl, r.max_kl);
    EXPECT_GE(r.positions, positions);
    EXPECT_GE(r.top1_agreement, targets[i].min_top1) << name;
    if (targets[i].max_mean_kl >= 0) {
      EXPECT_LE(r.mean_kl, targets[i].max_mean_kl) << name;
    }
  }
}

// Floors a little below what was measured (BENCHMARKS.md, on 2,044 and
// 1,022 positions), so that a change that makes a type less accurate fails.
// The targets (int8 and fp8-e4m3 >= 99% top-1, mean KL <= 1e-3;
// int4 >= 95%) are asserted where they hold: int8 and int4 everywhere (since
// the partial block waits at f16 in the sequence's residual, and int4 keys
// are centred per channel), fp8-e4m3 since its rows carry a chosen scale and
// its keys are centred per channel (stories260K's 8-dim keys had 96%).
TEST(KvQuantEngineTest, Stories260KAccuracyAgainstF32Kv) {
  const std::string model = SharedPath("models/stories260K.gguf");
  REQUIRE_SHARED(model);
  ExpectAccuracy(model, 2000, 512,
                 {{KvDType::kInt8, KvDType::kInt8, 0.99, 1e-3},      // measured 0.9961, 8.2e-5
                  {KvDType::kF32, KvDType::kInt8, 0.995, 5e-5},      // V alone: 0.9990, 1.6e-6
                  {KvDType::kFp8E4M3, KvDType::kFp8E4M3, 0.99, 1e-3},  // 0.9951, 3.5e-4
                  {KvDType::kInt8, KvDType::kInt4, 0.975, -1},       // 0.989
                  {KvDType::kInt4, KvDType::kInt4, 0.95, -1},        // 0.965
                  // --tier-kv-type int8: f16 KV whose full blocks come back
                  // from int8 tiers (channel scales over the whole block).
                  {KvDType::kF16, KvDType::kF16, 0.985, 2.5e-4, KvDType::kInt8}});  // 0.9941, 8.3e-5
}

TEST(KvQuantEngineTest, TinyqAAccuracyAgainstF32Kv) {
  for (const char* type : {"q8_0", "q4_k_m"}) {
    const std::string model = SharedPath(std::string("models/tinyq-a-") + type + ".gguf");
    REQUIRE_SHARED(model);
    ExpectAccuracy(model, 600, 0,
                   {{KvDType::kInt8, KvDType::kInt8, 0.99, 1e-3},     // 0.998-0.999, 3.6e-5 to 3.9e-5
                    // 1,022 positions: one disagreement is 0.1%, so the
                    // top-1 floor sits below the 99%, which the
                    // 20,440-position figures meet (BENCHMARKS.md).
                    {KvDType::kFp8E4M3, KvDType::kFp8E4M3, 0.985, 1e-3},  // 0.988-0.995, 6.2e-4 to 7.1e-4
                    {KvDType::kInt4, KvDType::kInt4, 0.95, -1}});  // 0.960-0.969
  }
}

// A block converted to the tiers' int8 layout and widened back (what
// --tier-kv-type int8 does to an offloaded block) stays within half an int8
// step of its f16 values (plus the f16 rounding of the result): keys per
// channel over the block, values per token group. Widening to f32 and back
// is exact.
TEST(KvBlockConvertTest, Int8RoundTripWithinHalfAStep) {
  const KvShape f16{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_size = 16, .dtype = KvDType::kF16};
  auto tier = engine::TierKvShape(f16, KvDType::kInt8);
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  const int B = 16, D = 64, H = 2;
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<std::byte> block(f16.block_bytes()), small(tier->block_bytes()), back(f16.block_bytes());
  // Values as f16 rows; one outlier channel in the keys, as real keys have.
  std::vector<float> values(static_cast<size_t>(2 * 2 * H * B * D));
  for (size_t i = 0; i < values.size(); ++i) values[i] = n(rng) * ((i % D) == 5 ? 12.0f : 1.0f);
  auto head = [&](std::vector<std::byte>& b, const KvShape& s, int l, int part, int h) {
    return b.data() + static_cast<size_t>(l) * s.layer_bytes() +
           (part == 0 ? static_cast<size_t>(h) * s.k_head_bytes()
                      : static_cast<size_t>(H) * s.k_head_bytes() + static_cast<size_t>(h) * s.v_head_bytes());
  };
  auto row = [&](int l, int part, int h, int t) { return values.data() + (((l * 2 + part) * H + h) * B + t) * D; };
  for (int l = 0; l < 2; ++l)
    for (int part = 0; part < 2; ++part)
      for (int h = 0; h < H; ++h)
        for (int t = 0; t < B; ++t) {
          kernels::QuantizeKvRow(KvDType::kF16, part ? KvPart::kValue : KvPart::kKey, head(block, f16, l, part, h), B,
                                 D, t, row(l, part, h, t));
          // What the block really holds: f16-rounded values.
          kernels::DequantizeKvRow(KvDType::kF16, KvPart::kKey, head(block, f16, l, part, h), B, D, t,
                                   row(l, part, h, t));
        }
  engine::ConvertKvBlock(f16, block.data(), *tier, small.data());
  engine::ConvertKvBlock(*tier, small.data(), f16, back.data());
  std::vector<float> got(static_cast<size_t>(D));
  for (int l = 0; l < 2; ++l)
    for (int part = 0; part < 2; ++part)
      for (int h = 0; h < H; ++h)
        for (int t = 0; t < B; ++t) {
          kernels::DequantizeKvRow(KvDType::kF16, KvPart::kKey, head(back, f16, l, part, h), B, D, t, got.data());
          float top = 0;
          for (int r = 0; r < B; ++r)
            for (int d = 0; d < D; ++d) top = std::max(top, std::fabs(row(l, part, h, r)[d]));
          for (int d = 0; d < D; ++d) {
            const float x = row(l, part, h, t)[d];
            float amax = 0;
            if (part == 0) {
              for (int r = 0; r < B; ++r) amax = std::max(amax, std::fabs(row(l, 0, h, r)[d]));
            } else {
              for (int e = 0; e < D; ++e) amax = std::max(amax, std::fabs(row(l, 1, h, t)[e]));
            }
            const float step = part == 0 ? amax / 127 + top / 127 / 255 : amax / 127;
            const float bound = 0.5f * step * 1.01f + std::fabs(x) * 0x1p-10f + 1e-6f;
            ASSERT_LE(std::fabs(got[d] - x), bound) << "layer " << l << (part ? " V" : " K") << " head " << h
                                                    << " token " << t << " d " << d;
          }
        }
  KvShape f32 = f16;
  f32.dtype = KvDType::kF32;
  std::vector<std::byte> wide(f32.block_bytes()), again(f16.block_bytes());
  engine::ConvertKvBlock(f16, block.data(), f32, wide.data());
  engine::ConvertKvBlock(f32, wide.data(), f16, again.data());
  EXPECT_EQ(again, block);
}

TEST(KvBlockConvertTest, TierTypeMustBeNarrowerThanFloatDeviceKv) {
  const KvShape f16{.num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .block_size = 16, .dtype = KvDType::kF16};
  EXPECT_TRUE(engine::TierKvShape(f16, KvDType::kInt4).ok());
  EXPECT_TRUE(engine::TierKvShape(f16, KvDType::kFp8E4M3).ok());
  EXPECT_FALSE(engine::TierKvShape(f16, KvDType::kBF16).ok());
  KvShape int8 = f16;
  int8.dtype = KvDType::kInt8;
  auto refused = engine::TierKvShape(int8, KvDType::kInt4);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("already quantized"), std::string::npos) << refused.status().ToString();
}

// With quantized KV a prompt served again from the prefix cache, batched
// with another request that hits its blocks, produces what it produced cold.
// (The other request is not compared with its own cold run: its shared block
// was computed in a different batch, where K can differ in the last bits of
// the float products, and a quantized store can round those differently:
// outputs are reproducible per prompt, not across batch compositions.)
TEST(KvQuantEngineTest, PrefixHitsKeepOutputsWithQuantizedKv) {
  const std::string model = SharedPath("models/stories260K.gguf");
  REQUIRE_SHARED(model);
  for (auto [k, v] : {std::pair{KvDType::kInt8, KvDType::kInt8}, std::pair{KvDType::kInt4, KvDType::kInt4},
                      std::pair{KvDType::kInt8, KvDType::kInt4}, std::pair{KvDType::kFp8E4M3, KvDType::kFp8E4M3}}) {
    auto e = MakeEngine(model, k, v);
    ASSERT_NE(e, nullptr);
    const std::vector<Token> a =
        e->tokenizer().Encode("Once upon a time, there was a little girl named Lily. She", {.add_bos = true});
    std::vector<Token> b = a;
    for (Token t : e->tokenizer().Encode(" loved to play outside with her dog", {.add_bos = false})) b.push_back(t);
    auto ida = e->Submit(Greedy(a, 40));
    ASSERT_TRUE(ida.ok());
    const std::vector<Token> alone_a = RunAll(*e)[*ida];
    auto id1 = e->Submit(Greedy(b, 40));
    auto id2 = e->Submit(Greedy(a, 40));
    auto out = RunAll(*e);
    if (k == KvDType::kInt4) {
      // 4-bit keys on stories260K (head_dim 8) agree with f32 on only ~96%
      // of positions: there, the float sums' order (a prompt chunk of one
      // size or another, batched with another request or not, each SIMD
      // level's kernels) moves a key across a rounding step, and greedy
      // decoding can part late in the completion (seen at token 25 of 40 on
      // an AVX2 machine, never on AVX-512). The served blocks are the same
      // bytes; what is held exactly is the start of the completion.
      const size_t n = 16;
      ASSERT_GE(out[*id2].size(), n);
      ASSERT_GE(alone_a.size(), n);
      EXPECT_TRUE(std::equal(alone_a.begin(), alone_a.begin() + n, out[*id2].begin()))
          << KvDTypeName(k) << "/" << KvDTypeName(v) << ": the first " << n << " tokens differ";
    } else {
      EXPECT_EQ(out[*id2], alone_a) << KvDTypeName(k) << "/" << KvDTypeName(v);
    }
    EXPECT_EQ(out[*id1].size(), 40u);
    EXPECT_GT(e->cache().Metrics().prefix.hit_tokens, 0u);
  }
}

// The same --kv-memory holds >= 1.9x the tokens of f16 with int8 KV and
// >= 3.5x with int4, scales included, at the head sizes real models use.
TEST(KvQuantEngineTest, CapacityAtTheSameKvMemory) {
  for (int head_dim : {64, 128}) {
    GenModelSpec spec;
    spec.n_layer = 2;
    spec.n_head = 4;
    spec.n_head_kv = 2;
    spec.head_dim = head_dim;
    spec.n_embd = 4 * head_dim;
    spec.n_ff = 64;
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("kvstack-kvcap-" + std::to_string(head_dim) + "-" + std::to_string(::getpid()) + ".gguf"))
                                 .string();
    ASSERT_TRUE(WriteGenModel(spec, path).ok());
    std::map<std::string, int64_t> tokens;
    for (auto [name, k, v] : {std::tuple{"f16", KvDType::kF16, KvDType::kF16},
                              std::tuple{"int8", KvDType::kInt8, KvDType::kInt8},
                              std::tuple{"int4", KvDType::kInt4, KvDType::kInt4}}) {
      EngineOptions o;
      o.model_path = path;
      o.threads = 1;
      o.kv_dtype = k;
      o.kv_dtype_v = v;
      o.kv_memory_bytes = 8 << 20;
      auto e = Engine::Create(o);
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      const CacheMetrics m = (*e)->cache().Metrics();
      tokens[name] = int64_t{m.total_blocks} * m.block_size;
      EXPECT_EQ((*e)->info().kv_types, name);
    }
    std::filesystem::remove(path);
    const double int8 = double(tokens["int8"]) / double(tokens["f16"]);
    const double int4 = double(tokens["int4"]) / double(tokens["f16"]);
    std::printf("head_dim %d: f16 %lld tokens, int8 %.3fx, int4 %.3fx\n", head_dim,
                static_cast<long long>(tokens["f16"]), int8, int4);
    EXPECT_GE(int8, 1.9) << head_dim;
    EXPECT_GE(int4, 3.5) << head_dim;
  }
}

}  // namespace
}  // namespace kvstack
