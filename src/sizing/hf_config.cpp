// A Hugging Face config.json read as a ModelSpec.
#include <string>

#include "kvstack/sizing.h"
#include "sizing/json_fields.h"

namespace kvstack::sizing {
namespace {

// The first key present among `keys` (older configs use GPT-2 names).
std::optional<int64_t> FirstInt(JsonFields& f, std::initializer_list<std::string_view> keys) {
  for (std::string_view k : keys) {
    if (f.Has(k)) return f.OptionalInt(k);
  }
  return std::nullopt;
}

int64_t RequiredInt(JsonFields& f, std::initializer_list<std::string_view> keys) {
  if (auto v = FirstInt(f, keys)) return *v;
  std::string list;
  for (std::string_view k : keys) list += (list.empty() ? "\"" : " or \"") + std::string(k) + "\"";
  f.Fail(InvalidArgument(f.where() + ": missing " + list));
  return 0;
}

void ReadMoe(JsonFields& f, ModelSpec& m) {
  const std::optional<int64_t> experts = FirstInt(f, {"num_local_experts", "n_routed_experts", "num_experts"});
  if (!experts || *experts <= 1) return;
  m.moe.experts = *experts;
  m.moe.experts_per_token = RequiredInt(f, {"num_experts_per_tok"});
  m.moe.shared_experts = f.IntOr("n_shared_experts", 0);
  m.moe.expert_intermediate_size = f.IntOr("moe_intermediate_size", 0);
  m.moe.dense_layers = f.IntOr("first_k_dense_replace", 0);
}

void ReadMla(JsonFields& f, ModelSpec& m) {
  if (!f.Has("kv_lora_rank")) return;
  m.attention = AttentionKind::kMultiLatent;
  m.mla.kv_lora_rank = f.Int("kv_lora_rank");
  m.mla.qk_rope_head_dim = f.Int("qk_rope_head_dim");
  m.mla.qk_nope_head_dim = f.Int("qk_nope_head_dim");
  m.mla.v_head_dim = f.Int("v_head_dim");
  m.mla.q_lora_rank = f.IntOr("q_lora_rank", 0);  // null in DeepSeek-V2-Lite
  m.head_dim = m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim;
}

}  // namespace

Result<ModelSpec> ModelSpecFromHfConfig(std::string_view json_text, std::string name) {
  auto parsed = ParseJsonObject(json_text, "config.json " + name);
  if (!parsed.ok()) return parsed.status();
  // Multimodal models keep the language model's numbers under text_config.
  const nlohmann::json* root = &*parsed;
  if (!root->contains("num_hidden_layers") && root->contains("text_config") && (*root)["text_config"].is_object()) {
    root = &(*root)["text_config"];
  }
  JsonFields f(*root, "config.json " + name);

  ModelSpec m;
  m.name = f.StringOr("_name_or_path", "");
  if (m.name.empty()) m.name = std::move(name);
  m.source = "config.json " + m.name;
  m.architecture = f.StringOr("model_type", "unknown");
  m.layers = RequiredInt(f, {"num_hidden_layers", "n_layer", "num_layers"});
  m.hidden_size = RequiredInt(f, {"hidden_size", "n_embd", "d_model"});
  m.attention_heads = RequiredInt(f, {"num_attention_heads", "n_head"});
  m.kv_heads = f.IntOr("num_key_value_heads", m.attention_heads);
  m.head_dim = f.IntOr("head_dim", m.attention_heads > 0 ? m.hidden_size / m.attention_heads : 0);
  m.vocab_size = RequiredInt(f, {"vocab_size"});
  m.intermediate_size = RequiredInt(f, {"intermediate_size", "n_inner", "ffn_dim"});
  m.max_context = RequiredInt(f, {"max_position_embeddings", "n_positions", "max_sequence_length"});
  m.tied_embeddings = f.BoolOr("tie_word_embeddings", false);
  // Qwen2 projects Q, K and V with biases and says so only through its type.
  m.qkv_bias = f.BoolOr("attention_bias", m.architecture == "qwen2");
  // Only Mistral-family configs window every layer; others (Qwen2, Gemma)
  // either switch windows off or apply them to some layers only, and taking
  // the window for all layers would undercount their KV.
  if ((m.architecture == "mistral" || m.architecture == "mixtral") && f.Has("sliding_window")) {
    m.sliding_window = f.OptionalInt("sliding_window");
  }
  ReadMoe(f, m);
  ReadMla(f, m);
  KVSTACK_RETURN_IF_ERROR(f.status());

  m.parameters = m.active_parameters = 1;  // so that the shape validates
  KVSTACK_RETURN_IF_ERROR(ValidateModelSpec(m));
  const ParameterEstimate estimate = EstimateParameters(m);
  m.parameters = estimate.total;
  m.active_parameters = estimate.active;
  return m;
}

}  // namespace kvstack::sizing
