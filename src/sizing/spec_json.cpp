// Reading and writing kvstack's own preset format (presets/models, presets/gpus).
#include "sizing/spec_json.h"

#include <string>

#include "sizing/json_fields.h"

namespace kvstack::sizing {
namespace {

Result<AttentionKind> ParseAttention(std::string_view text, std::string_view where) {
  if (text == "gqa") return AttentionKind::kGroupedQuery;
  if (text == "mla") return AttentionKind::kMultiLatent;
  return InvalidArgument(std::string(where) + ": \"attention\" is \"" + std::string(text) +
                         "\", expected \"gqa\" (MHA, GQA, MQA) or \"mla\" (multi-head latent)");
}

void ReadMla(JsonFields& f, ModelSpec& m) {
  const nlohmann::json* mla = f.OptionalObject("mla");
  if (mla == nullptr) {
    if (m.attention == AttentionKind::kMultiLatent) {
      f.Fail(InvalidArgument(f.where() + ": \"attention\" is \"mla\" but there is no \"mla\" object"));
    }
    return;
  }
  JsonFields g(*mla, f.where() + " mla");
  g.RejectUnknownKeys({"kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "q_lora_rank"});
  m.mla.kv_lora_rank = g.Int("kv_lora_rank");
  m.mla.qk_rope_head_dim = g.Int("qk_rope_head_dim");
  m.mla.qk_nope_head_dim = g.Int("qk_nope_head_dim");
  m.mla.v_head_dim = g.Int("v_head_dim");
  m.mla.q_lora_rank = g.IntOr("q_lora_rank", 0);
  f.Fail(g.status());
}

void ReadMoe(JsonFields& f, ModelSpec& m) {
  const nlohmann::json* moe = f.OptionalObject("moe");
  if (moe == nullptr) return;
  JsonFields g(*moe, f.where() + " moe");
  g.RejectUnknownKeys(
      {"experts", "experts_per_token", "shared_experts", "expert_intermediate_size", "dense_layers"});
  m.moe.experts = g.Int("experts");
  m.moe.experts_per_token = g.Int("experts_per_token");
  m.moe.shared_experts = g.IntOr("shared_experts", 0);
  m.moe.expert_intermediate_size = g.IntOr("expert_intermediate_size", 0);
  m.moe.dense_layers = g.IntOr("dense_layers", 0);
  f.Fail(g.status());
}

}  // namespace

Result<ModelSpec> ModelSpecFromPresetJson(const nlohmann::json& object, std::string_view where) {
  JsonFields f(object, std::string(where));
  f.RejectUnknownKeys({"name", "source", "notes", "architecture", "attention", "layers", "hidden_size",
                       "attention_heads", "kv_heads", "head_dim", "vocab_size", "intermediate_size",
                       "max_context", "sliding_window", "tied_embeddings", "qkv_bias", "parameters",
                       "active_parameters", "mla", "moe"});
  ModelSpec m;
  m.name = f.String("name");
  m.source = f.StringOr("source", std::string(where));
  m.architecture = f.String("architecture");
  auto attention = ParseAttention(f.StringOr("attention", "gqa"), where);
  if (!attention.ok()) f.Fail(attention.status());
  else m.attention = *attention;
  m.layers = f.Int("layers");
  m.hidden_size = f.Int("hidden_size");
  m.attention_heads = f.Int("attention_heads");
  m.kv_heads = f.Int("kv_heads");
  m.head_dim = f.Int("head_dim");
  m.vocab_size = f.Int("vocab_size");
  m.intermediate_size = f.Int("intermediate_size");
  m.max_context = f.Int("max_context");
  m.sliding_window = f.OptionalInt("sliding_window");
  m.tied_embeddings = f.BoolOr("tied_embeddings", false);
  m.qkv_bias = f.BoolOr("qkv_bias", false);
  const std::optional<int64_t> parameters = f.OptionalInt("parameters");
  const std::optional<int64_t> active = f.OptionalInt("active_parameters");
  ReadMla(f, m);
  ReadMoe(f, m);
  KVSTACK_RETURN_IF_ERROR(f.status());

  // Published counts win; the estimate only fills what a preset leaves out.
  // Validation needs some count in place before the shape can be estimated.
  m.parameters = m.active_parameters = 1;
  KVSTACK_RETURN_IF_ERROR(ValidateModelSpec(m));
  const ParameterEstimate estimate = EstimateParameters(m);
  m.parameters = parameters.value_or(estimate.total);
  m.active_parameters = active.value_or(m.moe.experts > 0 ? estimate.active : m.parameters);
  KVSTACK_RETURN_IF_ERROR(ValidateModelSpec(m));
  return m;
}

Result<GpuSpec> GpuSpecFromPresetJson(const nlohmann::json& object, std::string_view where) {
  JsonFields f(object, std::string(where));
  f.RejectUnknownKeys({"name", "source", "notes", "hbm_bytes", "memory_bandwidth_bytes_per_s",
                       "bf16_dense_flops", "fp8_dense_flops", "interconnect", "interconnect_bytes_per_s"});
  GpuSpec g;
  g.name = f.String("name");
  g.source = f.StringOr("source", std::string(where));
  g.hbm_bytes = f.Int("hbm_bytes");
  g.memory_bandwidth = f.Number("memory_bandwidth_bytes_per_s");
  g.bf16_flops = f.Number("bf16_dense_flops");
  g.fp8_flops = f.OptionalNumber("fp8_dense_flops");
  g.interconnect = f.StringOr("interconnect", "");
  g.interconnect_bandwidth = f.OptionalNumber("interconnect_bytes_per_s").value_or(0);
  KVSTACK_RETURN_IF_ERROR(f.status());
  KVSTACK_RETURN_IF_ERROR(ValidateGpuSpec(g));
  return g;
}

nlohmann::json ModelSpecAsJson(const ModelSpec& m) {
  nlohmann::json j = {
      {"name", m.name},
      {"source", m.source},
      {"architecture", m.architecture},
      {"attention", m.attention == AttentionKind::kMultiLatent ? "mla" : "gqa"},
      {"layers", m.layers},
      {"hidden_size", m.hidden_size},
      {"attention_heads", m.attention_heads},
      {"kv_heads", m.kv_heads},
      {"head_dim", m.head_dim},
      {"vocab_size", m.vocab_size},
      {"intermediate_size", m.intermediate_size},
      {"max_context", m.max_context},
      {"tied_embeddings", m.tied_embeddings},
      {"qkv_bias", m.qkv_bias},
      {"parameters", m.parameters},
      {"active_parameters", m.active_parameters},
  };
  if (m.sliding_window) j["sliding_window"] = *m.sliding_window;
  if (m.attention == AttentionKind::kMultiLatent) {
    j["mla"] = {{"kv_lora_rank", m.mla.kv_lora_rank},
                {"qk_rope_head_dim", m.mla.qk_rope_head_dim},
                {"qk_nope_head_dim", m.mla.qk_nope_head_dim},
                {"v_head_dim", m.mla.v_head_dim},
                {"q_lora_rank", m.mla.q_lora_rank}};
  }
  if (m.moe.experts > 0) {
    j["moe"] = {{"experts", m.moe.experts},
                {"experts_per_token", m.moe.experts_per_token},
                {"shared_experts", m.moe.shared_experts},
                {"expert_intermediate_size", m.moe.expert_intermediate_size},
                {"dense_layers", m.moe.dense_layers}};
  }
  return j;
}

nlohmann::json GpuSpecAsJson(const GpuSpec& g) {
  nlohmann::json j = {
      {"name", g.name},
      {"source", g.source},
      {"hbm_bytes", g.hbm_bytes},
      {"memory_bandwidth_bytes_per_s", g.memory_bandwidth},
      {"bf16_dense_flops", g.bf16_flops},
      {"interconnect", g.interconnect},
      {"interconnect_bytes_per_s", g.interconnect_bandwidth},
  };
  if (g.fp8_flops) j["fp8_dense_flops"] = *g.fp8_flops;
  return j;
}

Result<ModelSpec> LoadModelPreset(const std::filesystem::path& file) {
  auto text = ReadTextFile(file.string());
  if (!text.ok()) return text.status();
  auto object = ParseJsonObject(*text, file.string());
  if (!object.ok()) return object.status();
  return ModelSpecFromPresetJson(*object, file.string());
}

Result<GpuSpec> LoadGpuPreset(const std::filesystem::path& file) {
  auto text = ReadTextFile(file.string());
  if (!text.ok()) return text.status();
  auto object = ParseJsonObject(*text, file.string());
  if (!object.ok()) return object.status();
  return GpuSpecFromPresetJson(*object, file.string());
}

std::string ModelSpecToJson(const ModelSpec& model) { return ModelSpecAsJson(model).dump(2); }
std::string GpuSpecToJson(const GpuSpec& gpu) { return GpuSpecAsJson(gpu).dump(2); }

}  // namespace kvstack::sizing
