// Tests of the sizing component and of `kvstack size`. Every expected number
// below was worked out by hand (the arithmetic is in the comments), not copied
// from the program's output.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/run_kvstack.h"
#include "kvstack/sizing.h"
#include "common/requirement.h"

namespace kvstack::sizing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// H100-80GB: 81559 MiB; H200-141GB: 143771 MiB (what nvidia-smi reports).
constexpr int64_t kH100Bytes = 81559LL * 1024 * 1024;  // 85,520,809,984
constexpr int64_t kH200Bytes = 143771LL * 1024 * 1024;  // 150,754,820,096

const PresetCatalog& Catalog() {
  static const PresetCatalog* catalog = [] {
    auto c = PresetCatalog::Load(KVSTACK_PRESET_DIR);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return new PresetCatalog(std::move(c).value());
  }();
  return *catalog;
}

ModelSpec Model(std::string_view name) {
  auto m = Catalog().FindModel(name);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? *m : ModelSpec{};
}

GpuSpec Gpu(std::string_view name) {
  auto g = Catalog().FindGpu(name);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return g.ok() ? *g : GpuSpec{};
}

// A fresh folder per test, removed at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("kvstack_sizing_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::filesystem::path Write(const std::string& relative, const std::string& text) const {
    const std::filesystem::path file = path_ / relative;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << text;
    return file;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// ---------------------------------------------------------------------------
// Hand-computed sizing of three presets.

TEST(SizingArithmetic, Llama31_8B_GqaOnOneH100) {
  const ModelSpec m = Model("Llama-3.1-8B");
  ASSERT_EQ(m.attention, AttentionKind::kGroupedQuery);
  SizingOptions o;
  o.context_tokens = 8192;
  o.sequences = 64;
  auto r = ComputeSizing(m, Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();

  // 32 layers x 2 (K, V) x 8 KV heads x 128 dims = 65,536 values; x 2 bytes.
  EXPECT_EQ(r->kv_values_per_token, 65536);
  EXPECT_EQ(r->kv_bytes_per_token, 131072);
  EXPECT_EQ(r->kv_bytes_per_token_per_gpu, 131072);
  EXPECT_EQ(r->kv_heads_per_gpu, 8);
  // 8,192 tokens x 131,072 B = 1 GiB per sequence; 64 sequences = 64 GiB.
  EXPECT_EQ(r->kv_bytes_per_sequence, 1073741824);
  EXPECT_EQ(r->requested_kv_bytes, 68719476736);
  // 8,030,261,248 parameters x 2 B.
  EXPECT_EQ(r->weight_bytes, 16060522496);
  EXPECT_EQ(r->weight_bytes_per_gpu, 16060522496);
  EXPECT_EQ(r->hbm_bytes_per_gpu, kH100Bytes);
  // floor(85,520,809,984 x 0.1).
  EXPECT_EQ(r->workspace_bytes_per_gpu, 8552080998);
  // 85,520,809,984 - 16,060,522,496 - 8,552,080,998.
  EXPECT_EQ(r->kv_budget_bytes_per_gpu, 60908206490);
  EXPECT_TRUE(r->weights_fit);
  EXPECT_EQ(r->shortfall_bytes_per_gpu, 0);
  // floor(60,908,206,490 / 131,072) = 464,692; / 8,192 = 56.7 -> 56.
  EXPECT_EQ(r->tokens_that_fit, 464692);
  EXPECT_EQ(r->sequences_that_fit, 56);
  // 64 GiB wanted, 56.7 GiB left.
  EXPECT_FALSE(r->requested_fits);
  EXPECT_TRUE(r->notes.empty());
}

TEST(SizingArithmetic, Llama31_8B_KvPrecisions) {
  const ModelSpec m = Model("Llama-3.1-8B");
  SizingOptions o;
  o.context_tokens = 1;
  // 65,536 values x 4 / 2 B. fp8, int8 and int4 are kvstack's real layouts
  // (kv_arena.h), 256 K/V head pairs (32 layers x 8 heads) of 16-token
  // blocks: fp8 K 16x128 + 16 + 128 (a row's scale code, a channel's
  // offset) and V 16x128 + 16 = 4,256 B a block, 68,096 B a token; int8 K
  // 16x128 + 4 + 128 and V 16x128 + 16x2x2 = 4,292 B a block, 68,672 B a
  // token; int4 K 16x64 + 8 + 64 + 128 (scale steps and channel
  // offsets) and V 16x64 + 64 = 2,312 B, 36,992.
  const std::pair<Precision, int64_t> cases[] = {{Precision::kF32, 262144}, {Precision::kBf16, 131072},
                                                 {Precision::kF16, 131072}, {Precision::kFp8, 68096},
                                                 {Precision::kInt8, 68672}, {Precision::kInt4, 36992}};
  for (const auto& [kv, bytes] : cases) {
    o.kv = kv;
    auto r = ComputeSizing(m, Gpu("H100-80GB"), o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->kv_bytes_per_token, bytes) << PrecisionName(kv);
  }
  // int4 weights: 8,030,261,248 x 33/64 = 4,140,603,456 B exactly.
  o.kv = Precision::kBf16;
  o.weights = Precision::kInt4;
  auto r = ComputeSizing(m, Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->weight_bytes, 4140603456);
}

TEST(SizingArithmetic, Llama31_70B_TensorParallelOnFourH100) {
  const ModelSpec m = Model("Llama-3.1-70B");
  SizingOptions o;
  o.gpus = 4;
  o.context_tokens = 32768;
  o.sequences = 8;
  auto r = ComputeSizing(m, Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();

  // 80 layers x 2 x 8 KV heads x 128 x 2 B = 327,680 B for the whole model;
  // each of 4 GPUs holds 2 KV heads: 80 x 2 x 2 x 128 x 2 = 81,920 B.
  EXPECT_EQ(r->kv_bytes_per_token, 327680);
  EXPECT_EQ(r->kv_heads_per_gpu, 2);
  EXPECT_EQ(r->kv_bytes_per_token_per_gpu, 81920);
  // 70,553,706,496 x 2 = 141,107,412,992 B; / 4 = 35,276,853,248 B per GPU.
  EXPECT_EQ(r->weight_bytes, 141107412992);
  EXPECT_EQ(r->weight_bytes_per_gpu, 35276853248);
  // 85,520,809,984 - 35,276,853,248 - 8,552,080,998 = 41,691,875,738.
  EXPECT_EQ(r->kv_budget_bytes_per_gpu, 41691875738);
  // floor(41,691,875,738 / 81,920) = 508,934; / 32,768 = 15.5 -> 15.
  EXPECT_EQ(r->tokens_that_fit, 508934);
  EXPECT_EQ(r->sequences_that_fit, 15);
  // 8 x 32,768 x 81,920 = 21,474,836,480 B per GPU: fits.
  EXPECT_EQ(r->requested_kv_bytes_per_gpu, 21474836480);
  EXPECT_EQ(r->requested_kv_bytes, 8LL * 32768 * 327680);
  EXPECT_TRUE(r->requested_fits);
}

TEST(SizingArithmetic, Llama31_70B_DoesNotFitOneH100) {
  SizingOptions o;
  o.context_tokens = 8192;
  auto r = ComputeSizing(Model("Llama-3.1-70B"), Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->weights_fit);
  EXPECT_FALSE(r->requested_fits);
  // 141,107,412,992 + 8,552,080,998 - 85,520,809,984.
  EXPECT_EQ(r->shortfall_bytes_per_gpu, 64138684006);
  EXPECT_EQ(r->kv_budget_bytes_per_gpu, 0);
  EXPECT_EQ(r->tokens_that_fit, 0);
  EXPECT_EQ(r->sequences_that_fit, 0);
  ASSERT_FALSE(r->notes.empty());
  EXPECT_THAT(r->notes.back(), HasSubstr("--gpus"));
}

TEST(SizingArithmetic, Llama31_70B_KvHeadsReplicatedPastEightGpus) {
  SizingOptions o;
  o.gpus = 16;
  o.context_tokens = 1024;
  auto r = ComputeSizing(Model("Llama-3.1-70B"), Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // One KV head per GPU: 80 x 2 x 1 x 128 x 2 = 40,960 B.
  EXPECT_EQ(r->kv_heads_per_gpu, 1);
  EXPECT_EQ(r->kv_bytes_per_token_per_gpu, 40960);
  // ceil(141,107,412,992 / 16) = 8,819,213,312.
  EXPECT_EQ(r->weight_bytes_per_gpu, 8819213312);
  EXPECT_THAT(r->notes, testing::Contains(HasSubstr("replicated on 2 GPUs")));
}

TEST(SizingArithmetic, DeepSeekV3_MlaOnEightH200) {
  const ModelSpec m = Model("DeepSeek-V3");
  ASSERT_EQ(m.attention, AttentionKind::kMultiLatent);
  SizingOptions o;
  o.gpus = 8;
  o.weights = Precision::kFp8;
  o.kv = Precision::kFp8;
  o.context_tokens = 32768;
  o.sequences = 43;
  auto r = ComputeSizing(m, Gpu("H200-141GB"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();

  // 61 layers x (512 latent + 64 RoPE key) = 35,136 values; not split by
  // tensor parallelism. In fp8, priced as kvstack stores 576-wide rows: 30
  // K/V pairs and one more row as K, a block of K 16x576 + 16 + 576 (scale
  // codes, channel offsets) and V 16x576 + 16: (30 x 19,040 + 9,808) / 16 =
  // 36,313 B.
  EXPECT_EQ(r->kv_values_per_token, 35136);
  EXPECT_EQ(r->kv_bytes_per_token, 36313);
  EXPECT_EQ(r->kv_bytes_per_token_per_gpu, 36313);
  EXPECT_EQ(r->kv_heads_per_gpu, 0);
  // 671,026,404,352 parameters x 1 B / 8 GPUs = 83,878,300,544 B.
  EXPECT_EQ(r->weight_bytes, 671026404352);
  EXPECT_EQ(r->weight_bytes_per_gpu, 83878300544);
  // floor(150,754,820,096 x 0.1) = 15,075,482,009;
  // 150,754,820,096 - 83,878,300,544 - 15,075,482,009 = 51,801,037,543.
  EXPECT_EQ(r->hbm_bytes_per_gpu, kH200Bytes);
  EXPECT_EQ(r->workspace_bytes_per_gpu, 15075482009);
  EXPECT_EQ(r->kv_budget_bytes_per_gpu, 51801037543);
  // floor(51,801,037,543 / 36,313) = 1,426,514; / 32,768 = 43.53 -> 43.
  EXPECT_EQ(r->tokens_that_fit, 1426514);
  EXPECT_EQ(r->sequences_that_fit, 43);
  EXPECT_TRUE(r->requested_fits);  // exactly the 43 that fit
  EXPECT_THAT(r->notes, testing::Contains(HasSubstr("MLA latent")));
}

TEST(SizingArithmetic, DeepSeekV3_Bf16LatentIs70272BytesPerToken) {
  SizingOptions o;
  o.context_tokens = 4096;
  o.gpus = 8;
  auto r = ComputeSizing(Model("DeepSeek-V3"), Gpu("B200"), o);
  ASSERT_TRUE(r.ok());
  // 61 x 576 x 2 B.
  EXPECT_EQ(r->kv_bytes_per_token, 70272);
  EXPECT_EQ(r->kv_bytes_per_sequence, 4096LL * 70272);
}

TEST(SizingArithmetic, WorkspaceAsBytes) {
  SizingOptions o;
  o.context_tokens = 8192;
  o.workspace = WorkspaceReserve::Bytes(4LL << 30);
  auto r = ComputeSizing(Model("Llama-3.1-8B"), Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->workspace_bytes_per_gpu, 4294967296);
  // 85,520,809,984 - 16,060,522,496 - 4,294,967,296.
  EXPECT_EQ(r->kv_budget_bytes_per_gpu, 65165320192);
}

TEST(SizingArithmetic, ContextPastModelMaximumIsNoted) {
  SizingOptions o;
  o.context_tokens = 65536;
  auto r = ComputeSizing(Model("Mistral-7B"), Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->notes, testing::Contains(HasSubstr("exceeds the 32,768-token maximum")));
}

// ---------------------------------------------------------------------------
// Specs and presets.

TEST(SizingSpecs, EstimateMatchesEveryPresetParameterCount) {
  ASSERT_GE(Catalog().models().size(), 9u);
  for (const ModelSpec& m : Catalog().models()) {
    const ParameterEstimate e = EstimateParameters(m);
    EXPECT_EQ(e.total, m.parameters) << m.name;
    EXPECT_EQ(e.active, m.active_parameters) << m.name;
  }
}

TEST(SizingSpecs, PublishedParameterCounts) {
  // Dense: published safetensors totals.
  EXPECT_EQ(Model("Llama-3.1-8B").parameters, 8030261248);
  EXPECT_EQ(Model("Llama-3.2-1B").parameters, 1235814400);
  EXPECT_EQ(Model("Qwen2.5-7B").parameters, 7615616512);
  // MoE: all experts resident, 2 of 8 active.
  EXPECT_EQ(Model("Mixtral-8x7B").parameters, 46702792704);
  EXPECT_EQ(Model("Mixtral-8x7B").active_parameters, 12879925248);
  // DeepSeek-V3's "671B total, 37B active".
  EXPECT_EQ(Model("DeepSeek-V3").parameters / 1000000000, 671);
  EXPECT_EQ(Model("DeepSeek-V3").active_parameters / 1000000000, 37);
}

TEST(SizingSpecs, RequiredPresetsArePresent) {
  for (const char* name : {"Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.1-405B", "Llama-3.2-1B", "Qwen2.5-7B",
                           "Qwen2.5-72B", "Mistral-7B", "Mixtral-8x7B", "DeepSeek-V3"}) {
    EXPECT_TRUE(Catalog().FindModel(name).ok()) << name;
  }
  for (const char* name : {"A100-80GB", "H100-80GB", "H200-141GB", "B200", "L40S"}) {
    auto g = Catalog().FindGpu(name);
    ASSERT_TRUE(g.ok()) << name;
    EXPECT_FALSE(g->source.empty()) << name;
  }
  for (const ModelSpec& m : Catalog().models()) EXPECT_THAT(m.source, HasSubstr("huggingface.co")) << m.name;
  EXPECT_FALSE(Gpu("A100-80GB").fp8_flops.has_value());
}

TEST(SizingSpecs, LookupIgnoresCase) {
  auto m = Catalog().FindModel("llama-3.1-8b");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->name, "Llama-3.1-8B");
}

TEST(SizingSpecs, UnknownPresetListsTheAvailableNames) {
  auto m = Catalog().FindModel("Llama-9");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr("\"Llama-9\""));
  EXPECT_THAT(m.status().message(), HasSubstr("Llama-3.1-8B"));
  EXPECT_THAT(m.status().message(), HasSubstr("DeepSeek-V3"));
  auto g = ResolveGpu(Catalog(), "H300");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), HasSubstr("H100-80GB"));
}

TEST(SizingSpecs, PresetRoundTripsThroughJson) {
  TempDir dir;
  for (const ModelSpec& m : Catalog().models()) {
    auto back = LoadModelPreset(dir.Write(m.name + ".json", ModelSpecToJson(m)));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->parameters, m.parameters);
    EXPECT_EQ(KvValuesPerToken(*back), KvValuesPerToken(m));
  }
  const GpuSpec h100 = Gpu("H100-80GB");
  auto back = LoadGpuPreset(dir.Write("gpu.json", GpuSpecToJson(h100)));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->hbm_bytes, h100.hbm_bytes);
  EXPECT_EQ(back->fp8_flops, h100.fp8_flops);
}

TEST(SizingSpecs, MalformedPresetNamesFileAndField) {
  TempDir dir;
  auto f = dir.Write("bad.json", R"({"name": "X", "architecture": "llama", "layers": "many"})");
  auto m = LoadModelPreset(f);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("bad.json"));
  EXPECT_THAT(m.status().message(), HasSubstr("\"layers\""));

  auto typo = LoadModelPreset(dir.Write("typo.json", R"({"name": "X", "kv_head": 8})"));
  ASSERT_FALSE(typo.ok());
  EXPECT_THAT(typo.status().message(), HasSubstr("unknown key \"kv_head\""));

  auto not_json = LoadGpuPreset(dir.Write("g.json", "{ nope"));
  ASSERT_FALSE(not_json.ok());
  EXPECT_EQ(not_json.status().code(), StatusCode::kDataLoss);

  EXPECT_EQ(LoadModelPreset(dir.path() / "absent.json").status().code(), StatusCode::kNotFound);
}

TEST(SizingSpecs, CatalogRejectsABrokenPresetFolder) {
  TempDir dir;
  auto missing = PresetCatalog::Load(dir.path() / "nowhere");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("--preset-dir"));
  dir.Write("models/broken.json", R"({"name": "B"})");
  dir.Write("gpus/.keep", "");
  auto broken = PresetCatalog::Load(dir.path());
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), HasSubstr("broken.json"));
}

TEST(SizingSpecs, ValidationNamesTheField) {
  ModelSpec m = Model("Llama-3.1-8B");
  m.kv_heads = 5;
  Status s = ValidateModelSpec(m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("kv_heads 5"));
  m = Model("DeepSeek-V3");
  m.mla.kv_lora_rank = 0;
  EXPECT_THAT(ValidateModelSpec(m).message(), HasSubstr("mla.kv_lora_rank"));
}

// ---------------------------------------------------------------------------
// Hugging Face config.json.

constexpr char kLlama8BConfig[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rope_theta": 500000.0, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "vocab_size": 128256
})";

TEST(SizingHfConfig, Llama31_8B) {
  TempDir dir;
  const auto file = dir.Write("Meta-Llama-3.1-8B/config.json", kLlama8BConfig);
  auto m = ResolveModel(Catalog(), file.string());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "Meta-Llama-3.1-8B");  // the snapshot folder
  EXPECT_EQ(m->architecture, "llama");
  EXPECT_EQ(m->layers, 32);
  EXPECT_EQ(m->kv_heads, 8);
  EXPECT_EQ(m->head_dim, 128);  // 4096 / 32
  EXPECT_EQ(m->max_context, 131072);
  EXPECT_EQ(m->parameters, 8030261248);
  EXPECT_EQ(KvValuesPerToken(*m), 65536);
  // The folder works as well as the file.
  auto by_folder = ResolveModel(Catalog(), file.parent_path().string());
  ASSERT_TRUE(by_folder.ok()) << by_folder.status().ToString();
  EXPECT_EQ(by_folder->parameters, 8030261248);
}

TEST(SizingHfConfig, QwenBiasesAndExplicitHeadDim) {
  auto m = ModelSpecFromHfConfig(R"({"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
      "max_position_embeddings": 131072, "num_attention_heads": 28, "num_hidden_layers": 28,
      "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": false,
      "sliding_window": 131072, "use_sliding_window": false})",
                                 "Qwen2.5-7B");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->qkv_bias);
  EXPECT_FALSE(m->sliding_window.has_value());
  EXPECT_EQ(m->parameters, 7615616512);
  // 28 x 2 x 4 x 128 x 2 B = 57,344 B.
  EXPECT_EQ(BytesForValues(KvValuesPerToken(*m), Precision::kBf16), 57344);
}

TEST(SizingHfConfig, DeepSeekV3IsMla) {
  auto m = ModelSpecFromHfConfig(R"({"model_type": "deepseek_v3", "hidden_size": 7168,
      "intermediate_size": 18432, "kv_lora_rank": 512, "max_position_embeddings": 163840,
      "moe_intermediate_size": 2048, "n_routed_experts": 256, "n_shared_experts": 1,
      "num_attention_heads": 128, "num_experts_per_tok": 8, "num_hidden_layers": 61,
      "num_key_value_heads": 128, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
      "qk_rope_head_dim": 64, "v_head_dim": 128, "first_k_dense_replace": 3,
      "vocab_size": 129280, "tie_word_embeddings": false})",
                                 "DeepSeek-V3");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->attention, AttentionKind::kMultiLatent);
  EXPECT_EQ(KvValuesPerToken(*m), 61 * 576);
  EXPECT_EQ(m->parameters, Model("DeepSeek-V3").parameters);
  EXPECT_EQ(m->active_parameters, Model("DeepSeek-V3").active_parameters);
}

TEST(SizingHfConfig, MistralSlidingWindowCapsTheSequence) {
  auto m = ModelSpecFromHfConfig(R"({"model_type": "mistral", "hidden_size": 4096,
      "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32,
      "num_hidden_layers": 32, "num_key_value_heads": 8, "sliding_window": 4096, "vocab_size": 32000})",
                                 "Mistral-7B-v0.1");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(m->sliding_window.has_value());
  SizingOptions o;
  o.context_tokens = 32768;
  auto r = ComputeSizing(*m, Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens_per_sequence, 4096);
  EXPECT_EQ(r->kv_bytes_per_sequence, 4096LL * 131072);
}

TEST(SizingHfConfig, ErrorsNameTheKey) {
  auto missing = ModelSpecFromHfConfig(R"({"model_type": "llama", "hidden_size": 4096})", "m");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("num_hidden_layers"));
  auto wrong = ModelSpecFromHfConfig(R"({"num_hidden_layers": "32"})", "m");
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("\"num_hidden_layers\" is \"32\", expected an integer"));
  EXPECT_EQ(ModelSpecFromHfConfig("not json", "m").status().code(), StatusCode::kDataLoss);
  auto absent = ResolveModel(Catalog(), "/no/such/config.json");
  ASSERT_FALSE(absent.ok());
  EXPECT_EQ(absent.status().code(), StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------
// GGUF files.

std::filesystem::path Stories260K() {
  return std::filesystem::path(KVSTACK_SHARED_DIR) / "models" / "stories260K.gguf";
}

TEST(SizingGguf, Stories260K) {
  if (!GgufSupported()) GTEST_SKIP() << "this build has no GGUF reader (src/model is absent)";
  if (!std::filesystem::exists(Stories260K())) {
    KVSTACK_SKIP_MISSING() << Stories260K() << " is absent; set KVSTACK_SHARED_DIR to the shared test assets";
  }
  auto m = ResolveModel(Catalog(), Stories260K().string());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->architecture, "llama");
  EXPECT_EQ(m->layers, 5);
  EXPECT_EQ(m->hidden_size, 64);
  EXPECT_EQ(m->attention_heads, 8);
  EXPECT_EQ(m->kv_heads, 4);
  EXPECT_EQ(m->head_dim, 8);  // 64 / 8
  EXPECT_EQ(m->intermediate_size, 172);
  EXPECT_EQ(m->vocab_size, 512);
  EXPECT_EQ(m->attention, AttentionKind::kGroupedQuery);
  // Embeddings stored twice (token_embd and output): 2 x 512 x 64 = 65,536;
  // each layer 64 + 64x64 + 2 x 64x32 + 64x64 + 64 + 3 x 64x172 = 45,440,
  // x 5 = 227,200; the final norm 64. Total 292,800.
  EXPECT_FALSE(m->tied_embeddings);
  EXPECT_EQ(m->parameters, 292800);
  EXPECT_EQ(m->active_parameters, 292800);
  EXPECT_EQ(EstimateParameters(*m).total, 292800);
  // f32 KV: 5 layers x 2 x 4 KV heads x 8 dims x 4 B = 1,280 B per token,
  // 20,480 B for a 16-token block.
  SizingOptions o;
  o.kv = Precision::kF32;
  o.weights = Precision::kF32;
  o.context_tokens = m->max_context;
  auto r = ComputeSizing(*m, Gpu("L40S"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->kv_bytes_per_token, 1280);
  EXPECT_EQ(r->weight_bytes, 292800 * 4);
}

TEST(SizingGguf, NotAGgufFile) {
  if (!GgufSupported()) GTEST_SKIP() << "this build has no GGUF reader (src/model is absent)";
  TempDir dir;
  auto m = ResolveModel(Catalog(), dir.Write("junk.gguf", "this is not gguf").string());
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("junk.gguf"));
}

// ---------------------------------------------------------------------------
// Bad inputs.

TEST(SizingInputs, Precisions) {
  EXPECT_EQ(*ParsePrecision("BF16"), Precision::kBf16);
  EXPECT_EQ(*ParsePrecision("e4m3"), Precision::kFp8);
  EXPECT_EQ(*ParsePrecision("fp16"), Precision::kF16);
  auto bad = ParsePrecision("fp4");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("\"fp4\""));
  EXPECT_THAT(bad.status().message(), HasSubstr("int4"));
}

TEST(SizingInputs, Workspace) {
  EXPECT_DOUBLE_EQ(ParseWorkspace("0.1")->fraction(), 0.1);
  EXPECT_DOUBLE_EQ(ParseWorkspace("15%")->fraction(), 0.15);
  EXPECT_EQ(ParseWorkspace("4GiB")->bytes(), 4294967296);
  EXPECT_EQ(ParseWorkspace("4G")->bytes(), 4294967296);
  EXPECT_EQ(ParseWorkspace("4GB")->bytes(), 4000000000);
  EXPECT_EQ(ParseWorkspace("512MiB")->bytes(), 536870912);
  EXPECT_FALSE(ParseWorkspace("512MiB")->is_fraction());
  for (const char* bad : {"4", "100%", "lots", "-0.1", "4XB", ""}) {
    auto w = ParseWorkspace(bad);
    EXPECT_FALSE(w.ok()) << bad;
    EXPECT_THAT(w.status().message(), HasSubstr("--workspace")) << bad;
  }
}

TEST(SizingInputs, TokenCounts) {
  EXPECT_EQ(*ParseTokenCount("8192"), 8192);
  EXPECT_EQ(*ParseTokenCount("32k"), 32768);
  EXPECT_EQ(*ParseTokenCount("128K"), 131072);
  EXPECT_EQ(*ParseTokenCount("1M"), 1048576);
  for (const char* bad : {"0", "-5", "abc", "12q", "", "1.5k"}) EXPECT_FALSE(ParseTokenCount(bad).ok()) << bad;
}

TEST(SizingInputs, Formatting) {
  EXPECT_EQ(FormatCount(8030261248), "8,030,261,248");
  EXPECT_EQ(FormatCount(999), "999");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(131072), "128 KiB");
  EXPECT_EQ(FormatBytes(1073741824), "1.00 GiB");
  EXPECT_EQ(FormatBytes(68719476736), "64.0 GiB");
}

TEST(SizingInputs, ComputeSizingRejectsBadOptions) {
  const ModelSpec m = Model("Llama-3.1-8B");
  const GpuSpec g = Gpu("H100-80GB");
  SizingOptions o;
  o.context_tokens = 8192;
  o.gpus = 3;  // does not divide 32 heads
  auto r = ComputeSizing(m, g, o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("--gpus 3"));
  EXPECT_THAT(r.status().message(), HasSubstr("32 attention heads"));
  o.gpus = 0;
  EXPECT_THAT(ComputeSizing(m, g, o).status().message(), HasSubstr("--gpus 0"));
  o.gpus = 1;
  o.context_tokens = 0;
  EXPECT_THAT(ComputeSizing(m, g, o).status().message(), HasSubstr("--context 0"));
  o.context_tokens = 8192;
  o.sequences = 0;
  EXPECT_THAT(ComputeSizing(m, g, o).status().message(), HasSubstr("--sequences 0"));
  o.sequences = 1;
  o.workspace = WorkspaceReserve::Bytes(g.hbm_bytes);
  EXPECT_THAT(ComputeSizing(m, g, o).status().message(), HasSubstr("--workspace"));
  o.workspace = WorkspaceReserve::Fraction(1.5);
  EXPECT_EQ(ComputeSizing(m, g, o).status().code(), StatusCode::kInvalidArgument);
}

TEST(SizingInputs, HugeRequestsSaturateInsteadOfOverflowing) {
  SizingOptions o;
  o.context_tokens = 1LL << 40;
  o.sequences = 1LL << 40;
  auto r = ComputeSizing(Model("Llama-3.1-405B"), Gpu("B200"), o);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->requested_fits);
  EXPECT_EQ(r->requested_kv_bytes, std::numeric_limits<int64_t>::max());
}

TEST(SizingReport, JsonCarriesTheNumbers) {
  SizingOptions o;
  o.context_tokens = 8192;
  auto r = ComputeSizing(Model("Llama-3.1-8B"), Gpu("H100-80GB"), o);
  ASSERT_TRUE(r.ok());
  const auto j = nlohmann::json::parse(SizingReportToJson(*r));
  EXPECT_EQ(j["kv"]["bytes_per_token"], 131072);
  EXPECT_EQ(j["tokens_that_fit"], 464692);
  EXPECT_EQ(j["memory_per_gpu"]["kv_budget_bytes"], 60908206490);
  EXPECT_EQ(j["inputs"]["kv"], "bf16");
  EXPECT_EQ(j["model"]["name"], "Llama-3.1-8B");
}

// ---------------------------------------------------------------------------
// The real `kvstack size` binary.

using test_support::CommandRun;
using test_support::RunKvstack;

TEST(SizingCommand, HelpExplainsEveryInput) {
  const CommandRun run = RunKvstack("size --help");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const char* option : {"--model", "--gpu", "--gpus", "--tp", "--weights", "--kv", "--context", "--sequences",
                             "--workspace", "--preset-dir", "--json", "--list"}) {
    EXPECT_THAT(run.output, HasSubstr(option)) << option;
  }
  for (const char* text : {"Default: H100-80GB", "Default: bf16", "Default: 0.1", "Default: 1.",
                           "maximum context", "0.515625", "kv_lora_rank + qk_rope_head_dim", "config.json", ".gguf"}) {
    EXPECT_THAT(run.output, HasSubstr(text)) << text;
  }
}

TEST(SizingCommand, TableForLlama8B) {
  const CommandRun run = RunKvstack("size --model Llama-3.1-8B --gpu H100-80GB --context 8k --sequences 64");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("131,072 B"));
  EXPECT_THAT(run.output, HasSubstr("32 layers x 2 (K, V) x 8 KV heads x 128 dims x 2 B"));
  EXPECT_THAT(run.output, HasSubstr("464,692"));
  EXPECT_THAT(run.output, HasSubstr("60,908,206,490 B"));
  EXPECT_THAT(run.output, HasSubstr("does not fit"));
}

TEST(SizingCommand, JsonForDeepSeek) {
  const CommandRun run = RunKvstack(
      "size --model deepseek-v3 --gpu H200-141GB --tp 8 --weights fp8 --kv fp8 --context 32k --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto j = nlohmann::json::parse(run.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << run.output;
  EXPECT_EQ(j["kv"]["bytes_per_token"], 36313);
  EXPECT_EQ(j["tokens_that_fit"], 1426514);
  EXPECT_EQ(j["sequences_that_fit"], 43);
}

TEST(SizingCommand, ConfigJsonStandsInForAPreset) {
  TempDir dir;
  const auto file = dir.Write("llama/config.json", kLlama8BConfig);
  const CommandRun run = RunKvstack("size --model " + file.string() + " --context 8192 --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto j = nlohmann::json::parse(run.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << run.output;
  EXPECT_EQ(j["tokens_that_fit"], 464692);
}

TEST(SizingCommand, GgufStandsInForAPreset) {
  if (!GgufSupported()) GTEST_SKIP() << "this build has no GGUF reader (src/model is absent)";
  if (!std::filesystem::exists(Stories260K())) KVSTACK_SKIP_MISSING() << Stories260K() << " is absent";
  const CommandRun run = RunKvstack("size --model " + Stories260K().string() + " --gpu L40S --kv f32 --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto j = nlohmann::json::parse(run.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << run.output;
  EXPECT_EQ(j["kv"]["bytes_per_token"], 1280);
  EXPECT_EQ(j["model"]["layers"], 5);
}

TEST(SizingCommand, ListsPresets) {
  const CommandRun run = RunKvstack("size --list");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("Llama-3.1-405B"));
  EXPECT_THAT(run.output, HasSubstr("L40S"));
}

TEST(SizingCommand, BadInputsExitTwoWithAReason) {
  const struct {
    const char* args;
    const char* says;
  } cases[] = {
      {"size --model NoSuchModel", "Llama-3.1-8B"},
      {"size --model Llama-3.1-8B --gpu H300", "H100-80GB"},
      {"size --model Llama-3.1-8B --kv fp4", "--kv"},
      {"size --model Llama-3.1-8B --weights int3", "--weights"},
      {"size --model Llama-3.1-8B --gpus 3", "--gpus 3"},
      {"size --model Llama-3.1-8B --gpus two", "--gpus \"two\""},
      {"size --model Llama-3.1-8B --context 8q", "--context"},
      {"size --model Llama-3.1-8B --sequences 0", "--sequences"},
      {"size --model Llama-3.1-8B --workspace 5", "--workspace"},
      {"size", "--model is required"},
      {"size --model /no/such/config.json", "does not exist"},
      {"size --model Llama-3.1-8B --preset-dir /no/such/dir", "--preset-dir"},
  };
  for (const auto& c : cases) {
    const CommandRun run = RunKvstack(c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr(c.says)) << c.args;
    EXPECT_THAT(run.output, Not(HasSubstr("terminate"))) << c.args;
  }
}

}  // namespace
}  // namespace kvstack::sizing
