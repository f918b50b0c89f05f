// Generated models: every key and tensor read back through the GGUF reader,
// for several shapes, architectures and weight types; determinism; the
// weights' statistics; the vocabulary; validation errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/kernels.h"
#include "kvstack/model_gen.h"
#include "modelgen/gen_model_weights.h"
#include "modelgen/temp_dir.h"

namespace kvstack {
namespace {

using ::testing::HasSubstr;

struct Shape {
  std::string label;
  GenModelSpec spec;
};

GenModelSpec Make(std::string arch, int layers, int embd, int heads, int kv, int head_dim, int ff, int ctx,
                  GgmlType type, bool tied) {
  GenModelSpec s;
  s.architecture = std::move(arch);
  s.n_layer = layers;
  s.n_embd = embd;
  s.n_head = heads;
  s.n_head_kv = kv;
  s.head_dim = head_dim;
  s.n_ff = ff;
  s.n_ctx = ctx;
  s.weight_type = type;
  s.tied_embeddings = tied;
  return s;
}

std::vector<Shape> Shapes() {
  return {
      {"tiny_f32", GenModelSpec{}},
      {"qwen2_f16_tied_mha", Make("qwen2", 2, 64, 4, 4, 0, 96, 256, GgmlType::kF16, true)},
      {"llama_bf16_wide_heads", Make("llama", 1, 64, 4, 2, 32, 64, 128, GgmlType::kBF16, false)},
      {"llama_q8_0_mqa", Make("llama", 2, 96, 3, 1, 0, 160, 300, GgmlType::kQ8_0, false)},
      {"llama_q4_0", Make("llama", 1, 64, 2, 2, 0, 128, 64, GgmlType::kQ4_0, true)},
      {"llama_q4_k", Make("llama", 1, 256, 4, 2, 0, 512, 1024, GgmlType::kQ4_K, false)},
      {"qwen2_q6_k", Make("qwen2", 1, 256, 8, 2, 0, 256, 2048, GgmlType::kQ6_K, false)},
  };
}

struct Expected {
  std::vector<uint64_t> dims;
  GgmlType type;
};

// The tensor table a spec must produce, by name.
std::map<std::string, Expected> ExpectedTensors(const GenModelSpec& s) {
  const uint64_t vocab = GetGenModelVocab().tokens.size();
  const uint64_t embd = s.n_embd, ff = s.n_ff;
  const uint64_t q = static_cast<uint64_t>(s.n_head) * s.HeadDim();
  const uint64_t kv = static_cast<uint64_t>(s.n_head_kv) * s.HeadDim();
  const GgmlType w = s.weight_type, f32 = GgmlType::kF32;
  std::map<std::string, Expected> t;
  t["token_embd.weight"] = {{embd, vocab}, w};
  t["output_norm.weight"] = {{embd}, f32};
  if (!s.tied_embeddings) t["output.weight"] = {{embd, vocab}, w};
  if (s.rope_scaling) t["rope_freqs.weight"] = {{static_cast<uint64_t>(s.HeadDim() / 2)}, f32};
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    t[b + "attn_norm.weight"] = {{embd}, f32};
    t[b + "attn_q.weight"] = {{embd, q}, w};
    t[b + "attn_k.weight"] = {{embd, kv}, w};
    t[b + "attn_v.weight"] = {{embd, kv}, w};
    t[b + "attn_output.weight"] = {{q, embd}, w};
    t[b + "ffn_norm.weight"] = {{embd}, f32};
    t[b + "ffn_gate.weight"] = {{embd, ff}, w};
    t[b + "ffn_up.weight"] = {{embd, ff}, w};
    t[b + "ffn_down.weight"] = {{ff, embd}, w};
    if (s.architecture == "qwen2") {
      t[b + "attn_q.bias"] = {{q}, f32};
      t[b + "attn_k.bias"] = {{kv}, f32};
      t[b + "attn_v.bias"] = {{kv}, f32};
    }
  }
  return t;
}

void CheckModel(const GgufFile& f, const GenModelSpec& s) {
  auto hp = ReadLlamaHParams(f);
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->architecture, s.architecture);
  EXPECT_EQ(hp->n_layer, static_cast<uint32_t>(s.n_layer));
  EXPECT_EQ(hp->n_embd, static_cast<uint32_t>(s.n_embd));
  EXPECT_EQ(hp->n_head, static_cast<uint32_t>(s.n_head));
  EXPECT_EQ(hp->n_head_kv, static_cast<uint32_t>(s.n_head_kv));
  EXPECT_EQ(hp->head_dim, static_cast<uint32_t>(s.HeadDim()));
  EXPECT_EQ(hp->head_dim_v, static_cast<uint32_t>(s.HeadDim()));
  EXPECT_EQ(hp->n_rot, static_cast<uint32_t>(s.HeadDim()));
  EXPECT_EQ(hp->n_ff, static_cast<uint32_t>(s.n_ff));
  EXPECT_EQ(hp->n_ctx_train, static_cast<uint32_t>(s.n_ctx));
  EXPECT_EQ(hp->n_vocab, GetGenModelVocab().tokens.size());
  EXPECT_EQ(hp->rope_freq_base, s.rope_freq_base);
  EXPECT_EQ(hp->rms_eps, s.rms_eps);
  EXPECT_EQ(hp->rope_scaling, RopeScalingType::kNone);

  const std::string arch = s.architecture;
  const bool default_head_dim = s.n_embd % s.n_head == 0 && s.HeadDim() == s.n_embd / s.n_head;
  EXPECT_EQ(f.Has(arch + ".attention.key_length"), !default_head_dim);
  EXPECT_EQ(f.Has(arch + ".attention.value_length"), !default_head_dim);
  EXPECT_EQ(*f.GetString("general.architecture"), arch);
  EXPECT_THAT(std::string(*f.GetString("general.name")), HasSubstr("kvstack-gen"));
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.version(), 3u);
  const bool quantized = s.weight_type != GgmlType::kF32 && s.weight_type != GgmlType::kF16 &&
                         s.weight_type != GgmlType::kBF16;
  EXPECT_EQ(f.Has("general.quantization_version"), quantized);

  auto tok = ReadTokenizerMetadata(f);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const GenModelVocab& v = GetGenModelVocab();
  EXPECT_EQ(tok->model, "llama");
  EXPECT_EQ(tok->tokens.size(), v.tokens.size());
  EXPECT_TRUE(std::equal(tok->tokens.begin(), tok->tokens.end(), v.tokens.begin()));
  EXPECT_EQ(tok->scores.size(), v.tokens.size());
  EXPECT_EQ(tok->token_types.size(), v.tokens.size());
  EXPECT_EQ(tok->bos_id, 1u);
  EXPECT_EQ(tok->eos_id, 2u);
  EXPECT_EQ(tok->unk_id, 0u);
  EXPECT_EQ(tok->eot_id, static_cast<uint32_t>(v.im_end_id));
  EXPECT_EQ(tok->add_bos, true);
  EXPECT_EQ(tok->add_eos, false);
  EXPECT_EQ(tok->add_space_prefix, true);
  ASSERT_TRUE(tok->chat_template.has_value());
  EXPECT_THAT(std::string(*tok->chat_template), HasSubstr("<|im_start|>"));

  const auto expected = ExpectedTensors(s);
  EXPECT_EQ(f.tensors().size(), expected.size());
  for (const auto& [name, e] : expected) {
    auto t = f.FindTensor(name);
    ASSERT_TRUE(t.ok()) << name;
    EXPECT_EQ((*t)->dims, e.dims) << name;
    EXPECT_EQ((*t)->type, e.type) << name;
  }
}

class GenModelShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(GenModelShapeTest, EveryKeyAndTensorReadsBack) {
  TempDir dir;
  const GenModelSpec& spec = GetParam().spec;
  const std::string path = dir.File("model.gguf");
  ASSERT_TRUE(WriteGenModel(spec, path).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  CheckModel(*f, spec);
  EXPECT_EQ(std::filesystem::file_size(path), BuildGenModel(spec).value().FileSize());
}

INSTANTIATE_TEST_SUITE_P(Shapes, GenModelShapeTest, ::testing::ValuesIn(Shapes()),
                         [](const auto& info) { return info.param.label; });

// ---------------------------------------------------------------------------
// Determinism

std::vector<std::byte> Serialized(const GenModelSpec& spec) {
  auto w = BuildGenModel(spec);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  auto bytes = w->Serialize();
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

uint64_t Hash(const std::vector<std::byte>& bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

TEST(GenModelTest, TheSameSpecGivesTheSameBytes) {
  for (GgmlType type : {GgmlType::kF32, GgmlType::kQ8_0}) {
    GenModelSpec spec;
    spec.weight_type = type;
    spec.seed = 5;
    EXPECT_EQ(Hash(Serialized(spec)), Hash(Serialized(spec)));
  }
  TempDir dir;
  GenModelSpec spec;
  ASSERT_TRUE(WriteGenModel(spec, dir.File("a.gguf")).ok());
  ASSERT_TRUE(WriteGenModel(spec, dir.File("b.gguf")).ok());
  auto a = GgufFile::Open(dir.File("a.gguf"));
  auto b = GgufFile::Open(dir.File("b.gguf"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(std::ranges::equal(a->bytes(), b->bytes()));
}

TEST(GenModelTest, TheTinyModelsBytesArePinned) {
  // Same bytes on every machine and build: the generator uses no libm, no
  // distribution classes and no floating-point reductions. A change here
  // changes every generated model; update the value only on purpose.
  EXPECT_EQ(Hash(Serialized(GenModelSpec{})), 0xbcdc1e3bb6331728ull) << std::hex << Hash(Serialized(GenModelSpec{}));
}

TEST(GenModelTest, DifferentSeedsGiveDifferentWeights) {
  GenModelSpec a, b;
  b.seed = 1;
  auto fa = Serialized(a), fb = Serialized(b);
  EXPECT_EQ(fa.size(), fb.size());
  EXPECT_NE(Hash(fa), Hash(fb));
}

// ---------------------------------------------------------------------------
// Values

std::vector<float> F32Values(const GgufTensorInfo& t) {
  std::vector<float> v(t.n_elements);
  std::memcpy(v.data(), t.data.data(), t.size_bytes);
  return v;
}

struct Moments {
  double mean = 0, stddev = 0;
};

Moments Stats(const std::vector<float>& v) {
  Moments m;
  for (float x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  for (float x : v) m.stddev += (x - m.mean) * (x - m.mean);
  m.stddev = std::sqrt(m.stddev / static_cast<double>(v.size()));
  return m;
}

TEST(GenModelTest, WeightsAreScaledByFanIn) {
  GenModelSpec spec;  // embd 64, ff 128, tied off: embeddings unit scale
  auto bytes = Serialized(spec);
  auto f = GgufFile::Parse(bytes);
  ASSERT_TRUE(f.ok());
  const std::pair<const char*, double> cases[] = {
      {"blk.0.attn_q.weight", 1 / 8.0},        {"blk.1.ffn_gate.weight", 1 / 8.0},
      {"blk.0.ffn_down.weight", 1 / std::sqrt(128.0)}, {"blk.0.attn_output.weight", 1 / 8.0},
      {"output.weight", 1 / 8.0},              {"token_embd.weight", 1.0},
  };
  for (const auto& [name, stddev] : cases) {
    const Moments m = Stats(F32Values(**f->FindTensor(name)));
    EXPECT_NEAR(m.mean, 0.0, 0.05 * stddev) << name;
    EXPECT_NEAR(m.stddev, stddev, 0.05 * stddev) << name;
  }
  const Moments norm = Stats(F32Values(**f->FindTensor("blk.0.attn_norm.weight")));
  EXPECT_NEAR(norm.mean, 1.0, 0.02);
  EXPECT_NEAR(norm.stddev, 0.05, 0.015);
  // Distinct tensors get distinct streams.
  EXPECT_NE(F32Values(**f->FindTensor("blk.0.attn_k.weight")), F32Values(**f->FindTensor("blk.0.attn_v.weight")));
}

TEST(GenModelTest, TiedEmbeddingsTakeTheOutputScale) {
  GenModelSpec spec;
  spec.tied_embeddings = true;
  auto bytes = Serialized(spec);
  auto f = GgufFile::Parse(bytes);
  ASSERT_TRUE(f.ok());
  EXPECT_NEAR(Stats(F32Values(**f->FindTensor("token_embd.weight"))).stddev, 1 / 8.0, 0.05 / 8);
}

TEST(GenModelTest, EveryTypeStoresTheSameValues) {
  GenModelSpec spec;
  spec.n_embd = 256;
  spec.n_ff = 256;
  spec.n_layer = 1;
  auto f32_bytes = Serialized(spec);
  auto f32 = GgufFile::Parse(f32_bytes);
  ASSERT_TRUE(f32.ok());
  const std::vector<float> truth = F32Values(**f32->FindTensor("blk.0.attn_q.weight"));
  const double stddev = 1 / 16.0;
  // Tolerances relative to the values' scale: the half formats' rounding,
  // then roughly each quantizer's step.
  const std::pair<GgmlType, double> cases[] = {
      {GgmlType::kF16, 0.001}, {GgmlType::kBF16, 0.01}, {GgmlType::kQ8_0, 0.02},
      {GgmlType::kQ6_K, 0.05}, {GgmlType::kQ4_0, 0.25}, {GgmlType::kQ4_K, 0.25},
  };
  for (const auto& [type, tolerance] : cases) {
    spec.weight_type = type;
    auto bytes = Serialized(spec);
    auto f = GgufFile::Parse(bytes);
    ASSERT_TRUE(f.ok());
    const GgufTensorInfo& t = **f->FindTensor("blk.0.attn_q.weight");
    std::vector<float> values(t.n_elements);
    const size_t row_bytes = t.size_bytes / t.dims[1];
    for (uint64_t r = 0; r < t.dims[1]; ++r) {
      kernels::DequantizeRowReference(type, t.data.data() + r * row_bytes, values.data() + r * t.dims[0],
                                      static_cast<int64_t>(t.dims[0]));
    }
    double sq = 0;
    for (size_t i = 0; i < values.size(); ++i) sq += (values[i] - truth[i]) * (values[i] - truth[i]);
    const double rms_error = std::sqrt(sq / static_cast<double>(values.size()));
    EXPECT_LT(rms_error, tolerance * stddev) << GetGgmlTypeTraits(type).name;
  }
}

TEST(GenModelTest, HalfConversionsRoundToNearestEven) {
  using modelgen::FloatToBf16;
  using modelgen::FloatToHalf;
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);                  // ties to even: infinity
  EXPECT_EQ(FloatToHalf(1.0f + 0x1.0p-11f), 0x3C00);         // tie -> even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * 0x1.0p-11f), 0x3C02);     // tie -> even (up)
  EXPECT_EQ(FloatToHalf(0x1.0p-24f), 0x0001);                // smallest subnormal
  EXPECT_EQ(FloatToHalf(0x1.0p-14f), 0x0400);                // smallest normal
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie -> even
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(FloatToBf16(std::bit_cast<float>(0x3F808001u)), 0x3F81);
}

// ---------------------------------------------------------------------------
// The vocabulary

TEST(GenModelVocabTest, Layout) {
  const GenModelVocab& v = GetGenModelVocab();
  ASSERT_GT(v.tokens.size(), 259u + 300u);
  EXPECT_LT(v.tokens.size(), 2000u);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.token_types[0], 2);
  EXPECT_EQ(v.token_types[1], 3);
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.tokens[3 + 0x0A], "<0x0A>");
  EXPECT_EQ(v.tokens[258], "<0xFF>");
  for (int i = 3; i < 259; ++i) EXPECT_EQ(v.token_types[i], 6) << i;
  EXPECT_EQ(v.tokens[v.im_start_id], "<|im_start|>");
  EXPECT_EQ(v.tokens[v.im_end_id], "<|im_end|>");
  EXPECT_EQ(v.token_types[v.im_end_id], 3);
  EXPECT_EQ(std::set<std::string>(v.tokens.begin(), v.tokens.end()).size(), v.tokens.size());
  EXPECT_EQ(v.scores.size(), v.tokens.size());
  EXPECT_EQ(v.token_types.size(), v.tokens.size());
}

TEST(GenModelVocabTest, PiecesMergeAllTheWayAndScoresDecrease) {
  const GenModelVocab& v = GetGenModelVocab();
  const std::set<std::string> pieces(v.tokens.begin(), v.tokens.end());
  const std::string space = "\xE2\x96\x81";
  float last = 1.0f;
  size_t words = 0;
  for (size_t i = 259; i < v.tokens.size(); ++i) {
    if (v.token_types[i] != 1) continue;
    EXPECT_LT(v.scores[i], last) << v.tokens[i];
    last = v.scores[i];
    const std::string& t = v.tokens[i];
    if (t.rfind(space, 0) == 0 && t.size() > space.size() + 1) {
      ++words;
      // Every word-start piece's prefixes are pieces too (see the vocab's comment).
      EXPECT_TRUE(pieces.count(t.substr(0, t.size() - 1))) << t;
    }
  }
  EXPECT_GT(words, 100u);
  for (const char* w : {"\xE2\x96\x81the", "\xE2\x96\x81Once", "\xE2\x96\x81little", "ing", "e", "\xE2\x96\x81"}) {
    EXPECT_TRUE(pieces.count(w)) << w;
  }
}

// ---------------------------------------------------------------------------
// Presets

TEST(GenModelPresetTest, Llama32OneBShape) {
  auto spec = GenModelPreset("llama-3.2-1b-shape");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->n_layer, 16);
  EXPECT_EQ(spec->n_embd, 2048);
  EXPECT_EQ(spec->n_head, 32);
  EXPECT_EQ(spec->n_head_kv, 8);
  EXPECT_EQ(spec->HeadDim(), 64);
  EXPECT_EQ(spec->n_ff, 8192);
  EXPECT_EQ(spec->n_ctx, 4096);
  EXPECT_TRUE(spec->tied_embeddings);
  EXPECT_EQ(spec->rope_freq_base, 500000.0f);
  ASSERT_TRUE(spec->rope_scaling.has_value());
  EXPECT_EQ(spec->rope_scaling->factor, 32.0f);
  EXPECT_EQ(spec->rope_scaling->original_context, 8192u);
  EXPECT_TRUE(spec->Validate().ok());
}

TEST(GenModelPresetTest, Llama32OneBShapeWritesRopeFactors) {
  // One layer of the real shape keeps the file small (~35 MB in Q4_0).
  auto spec = GenModelPreset("llama-3.2-1b-shape");
  ASSERT_TRUE(spec.ok());
  spec->n_layer = 1;
  spec->n_ctx = 131072;
  spec->weight_type = GgmlType::kQ4_0;
  TempDir dir;
  ASSERT_TRUE(WriteGenModel(*spec, dir.File("1b.gguf")).ok());
  auto f = GgufFile::Open(dir.File("1b.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  CheckModel(*f, *spec);
  const std::vector<float> factors = F32Values(**f->FindTensor("rope_freqs.weight"));
  ASSERT_EQ(factors.size(), 32u);
  EXPECT_EQ(factors.front(), 1.0f);  // highest frequency: unscaled
  EXPECT_EQ(factors.back(), 32.0f);  // lowest: the full factor
  for (size_t i = 1; i < factors.size(); ++i) EXPECT_GE(factors[i], factors[i - 1]) << i;
  const auto between = std::count_if(factors.begin(), factors.end(), [](float x) { return x > 1 && x < 32; });
  EXPECT_GT(between, 0);
}

TEST(GenModelPresetTest, StoriesAndTinyAreValid) {
  for (std::string_view name : GenModelPresetNames()) {
    auto spec = GenModelPreset(name);
    ASSERT_TRUE(spec.ok()) << name;
    EXPECT_TRUE(spec->Validate().ok()) << name;
  }
  EXPECT_EQ(GenModelPreset("stories")->n_embd, 288);
}

TEST(GenModelPresetTest, UnknownPresetListsTheNames) {
  auto spec = GenModelPreset("huge");
  EXPECT_EQ(spec.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(spec.status().message(), HasSubstr("tiny, stories, llama-3.2-1b-shape"));
}

// ---------------------------------------------------------------------------
// Validation

TEST(GenModelSpecTest, BadShapesNameTheField) {
  struct Case {
    void (*mutate)(GenModelSpec&);
    const char* message;
  };
  const Case cases[] = {
      {[](GenModelSpec& s) { s.architecture = "mistral"; }, "architecture 'mistral'"},
      {[](GenModelSpec& s) { s.n_layer = 0; }, "n_layer 0"},
      {[](GenModelSpec& s) { s.n_embd = -4; }, "n_embd -4"},
      {[](GenModelSpec& s) { s.n_ff = 1 << 20; }, "n_ff 1048576"},
      {[](GenModelSpec& s) { s.n_ctx = 0; }, "n_ctx 0"},
      {[](GenModelSpec& s) { s.n_head_kv = 3; }, "n_head_kv 3: must divide n_head 4"},
      {[](GenModelSpec& s) { s.n_head = 3; s.n_head_kv = 1; }, "n_head 3: must divide n_embd 64"},
      {[](GenModelSpec& s) { s.head_dim = 15; }, "head_dim 15: must be even"},
      {[](GenModelSpec& s) { s.head_dim = -2; }, "head_dim -2"},
      {[](GenModelSpec& s) { s.rope_freq_base = 0; }, "rope_freq_base 0"},
      {[](GenModelSpec& s) { s.rms_eps = -1; }, "rms_eps -1"},
      {[](GenModelSpec& s) { s.weight_type = GgmlType::kQ5_1; }, "weight_type Q5_1"},
      {[](GenModelSpec& s) { s.weight_type = GgmlType::kQ4_K; }, "n_embd 64: must be a multiple of 256, the Q4_K block"},
      {[](GenModelSpec& s) { s.n_ff = 100; s.weight_type = GgmlType::kQ8_0; }, "n_ff 100: must be a multiple of 32"},
      {[](GenModelSpec& s) { s.head_dim = 10; s.weight_type = GgmlType::kQ4_0; }, "n_head x head_dim 40"},
      {[](GenModelSpec& s) { s.architecture = "qwen2"; s.rope_scaling = Llama3RopeScaling{}; }, "is for architecture llama"},
      {[](GenModelSpec& s) { s.rope_scaling = Llama3RopeScaling{.factor = 0.5f}; }, "rope_scaling.factor 0.5"},
      {[](GenModelSpec& s) { s.rope_scaling = Llama3RopeScaling{.low_freq_factor = 4, .high_freq_factor = 1}; }, "0 < low < high"},
  };
  for (const Case& c : cases) {
    GenModelSpec spec;
    c.mutate(spec);
    const Status s = spec.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
    EXPECT_EQ(BuildGenModel(spec).status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(GenModelSpecTest, NonDividingHeadsAreFineWithAnExplicitHeadDim) {
  GenModelSpec spec;
  spec.n_head = 3;
  spec.n_head_kv = 1;
  spec.head_dim = 16;
  EXPECT_TRUE(spec.Validate().ok());
}

// ---------------------------------------------------------------------------
// Progress

TEST(GenModelTest, ProgressReportsEveryTensorOnce) {
  std::vector<GenModelProgress> seen;
  std::vector<std::string> names;
  auto w = BuildGenModel(GenModelSpec{}, [&](const GenModelProgress& p) {
    seen.push_back(p);
    names.emplace_back(p.tensor);
  });
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Serialize().ok());
  ASSERT_EQ(seen.size(), w->tensor_count());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].tensors_done, i + 1);
    EXPECT_EQ(seen[i].tensors_total, w->tensor_count());
    if (i > 0) {
      EXPECT_GT(seen[i].bytes_done, seen[i - 1].bytes_done);
    }
  }
  EXPECT_EQ(seen.back().bytes_done, w->tensor_bytes());
  EXPECT_EQ(seen.back().bytes_total, w->tensor_bytes());
  EXPECT_EQ(names.front(), "token_embd.weight");
  EXPECT_EQ(names.back(), "output.weight");
}

}  // namespace
}  // namespace kvstack
