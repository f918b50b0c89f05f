// ModelSpec checks and the arithmetic that follows from a model's shape.
#include <string>

#include "kvstack/sizing.h"

namespace kvstack::sizing {
namespace {

Status Bad(const ModelSpec& m, std::string_view field, int64_t value, std::string_view want) {
  return InvalidArgument("model " + (m.name.empty() ? std::string("(unnamed)") : m.name) + ": " +
                         std::string(field) + " " + std::to_string(value) + ": " + std::string(want));
}

// Attention weights of one layer.
int64_t AttentionParameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  if (m.attention == AttentionKind::kMultiLatent) {
    const MlaSpec& a = m.mla;
    const int64_t qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
    // Low-rank queries add a down-projection and an RMSNorm over the rank.
    const int64_t q = a.q_lora_rank > 0
                          ? h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * m.attention_heads * qk
                          : h * m.attention_heads * qk;
    const int64_t kv_down = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank;
    const int64_t kv_up = a.kv_lora_rank * m.attention_heads * (a.qk_nope_head_dim + a.v_head_dim);
    const int64_t out = m.attention_heads * a.v_head_dim * h;
    return q + kv_down + kv_up + out;
  }
  const int64_t q_width = m.attention_heads * m.head_dim;
  const int64_t kv_width = m.kv_heads * m.head_dim;
  int64_t p = 2 * h * q_width + 2 * h * kv_width;  // q, o, k, v
  if (m.qkv_bias) p += q_width + 2 * kv_width;
  return p;
}

}  // namespace

Status ValidateModelSpec(const ModelSpec& m) {
  if (m.name.empty()) return InvalidArgument("model: name is empty");
  const struct {
    std::string_view field;
    int64_t value;
  } positive[] = {{"layers", m.layers},
                  {"hidden_size", m.hidden_size},
                  {"attention_heads", m.attention_heads},
                  {"kv_heads", m.kv_heads},
                  {"head_dim", m.head_dim},
                  {"vocab_size", m.vocab_size},
                  {"intermediate_size", m.intermediate_size},
                  {"max_context", m.max_context},
                  {"parameters", m.parameters},
                  {"active_parameters", m.active_parameters}};
  for (const auto& p : positive) {
    if (p.value <= 0) return Bad(m, p.field, p.value, "must be positive");
  }
  if (m.kv_heads > m.attention_heads || m.attention_heads % m.kv_heads != 0) {
    return Bad(m, "kv_heads", m.kv_heads,
               "must divide attention_heads " + std::to_string(m.attention_heads));
  }
  if (m.sliding_window && *m.sliding_window <= 0) {
    return Bad(m, "sliding_window", *m.sliding_window, "must be positive when present");
  }
  if (m.active_parameters > m.parameters) {
    return Bad(m, "active_parameters", m.active_parameters,
               "exceeds parameters " + std::to_string(m.parameters));
  }
  if (m.attention == AttentionKind::kMultiLatent) {
    if (m.mla.kv_lora_rank <= 0) return Bad(m, "mla.kv_lora_rank", m.mla.kv_lora_rank, "must be positive for MLA");
    if (m.mla.qk_rope_head_dim <= 0) {
      return Bad(m, "mla.qk_rope_head_dim", m.mla.qk_rope_head_dim, "must be positive for MLA");
    }
    if (m.mla.qk_nope_head_dim <= 0) {
      return Bad(m, "mla.qk_nope_head_dim", m.mla.qk_nope_head_dim, "must be positive for MLA");
    }
    if (m.mla.v_head_dim <= 0) return Bad(m, "mla.v_head_dim", m.mla.v_head_dim, "must be positive for MLA");
    if (m.mla.q_lora_rank < 0) return Bad(m, "mla.q_lora_rank", m.mla.q_lora_rank, "must not be negative");
  }
  const MoeSpec& e = m.moe;
  if (e.experts < 0) return Bad(m, "moe.experts", e.experts, "must not be negative");
  if (e.experts > 0) {
    if (e.experts_per_token < 1 || e.experts_per_token > e.experts) {
      return Bad(m, "moe.experts_per_token", e.experts_per_token,
                 "must be from 1 to experts " + std::to_string(e.experts));
    }
    if (e.shared_experts < 0) return Bad(m, "moe.shared_experts", e.shared_experts, "must not be negative");
    if (e.expert_intermediate_size < 0) {
      return Bad(m, "moe.expert_intermediate_size", e.expert_intermediate_size, "must not be negative");
    }
    if (e.dense_layers < 0 || e.dense_layers > m.layers) {
      return Bad(m, "moe.dense_layers", e.dense_layers, "must be from 0 to layers " + std::to_string(m.layers));
    }
  }
  return Status::Ok();
}

ParameterEstimate EstimateParameters(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t norms = 2 * h;  // RMSNorm before attention and before the MLP
  const int64_t attention = AttentionParameters(m);
  const int64_t dense_mlp = 3 * h * m.intermediate_size;  // SwiGLU: gate, up, down

  int64_t dense_layers = m.layers;
  int64_t moe_total = 0;
  int64_t moe_active = 0;
  if (m.moe.experts > 0) {
    dense_layers = m.moe.dense_layers;
    const int64_t width =
        m.moe.expert_intermediate_size > 0 ? m.moe.expert_intermediate_size : m.intermediate_size;
    const int64_t expert = 3 * h * width;
    const int64_t router = h * m.moe.experts;
    moe_total = (m.moe.experts + m.moe.shared_experts) * expert + router;
    moe_active = (m.moe.experts_per_token + m.moe.shared_experts) * expert + router;
  }
  const int64_t moe_layers = m.layers - dense_layers;
  const int64_t embeddings = m.vocab_size * h * (m.tied_embeddings ? 1 : 2);
  const int64_t common = m.layers * (attention + norms) + dense_layers * dense_mlp + embeddings + h;
  return {.total = common + moe_layers * moe_total, .active = common + moe_layers * moe_active};
}

int64_t KvValuesPerToken(const ModelSpec& m) {
  if (m.attention == AttentionKind::kMultiLatent) {
    return m.layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim);
  }
  return m.layers * 2 * m.kv_heads * m.head_dim;
}

}  // namespace kvstack::sizing
