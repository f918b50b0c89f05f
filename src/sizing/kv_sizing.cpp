// The memory arithmetic of one deployment: weights, workspace and KV per GPU.
#include <algorithm>
#include <limits>
#include <string>

#include "kvstack/sizing.h"

namespace kvstack::sizing {
namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

// Request sizes come from users; a product past int64 means "does not fit",
// not undefined behaviour.
int64_t SaturatingMul(int64_t a, int64_t b) {
  if (a != 0 && b > kMaxInt64 / a) return kMaxInt64;
  return a * b;
}

Status CheckOptions(const ModelSpec& model, const GpuSpec& gpu, const SizingOptions& o) {
  if (o.gpus < 1) return InvalidArgument("--gpus " + std::to_string(o.gpus) + ": must be at least 1");
  if (o.context_tokens < 1) {
    return InvalidArgument("--context " + std::to_string(o.context_tokens) + ": must be at least 1 token");
  }
  if (o.sequences < 1) return InvalidArgument("--sequences " + std::to_string(o.sequences) + ": must be at least 1");
  if (o.workspace.is_fraction() && !(o.workspace.fraction() >= 0 && o.workspace.fraction() < 1)) {
    return InvalidArgument("--workspace " + std::to_string(o.workspace.fraction()) +
                           ": a fraction of HBM must be from 0 to below 1");
  }
  if (!o.workspace.is_fraction() && (o.workspace.bytes() < 0 || o.workspace.bytes() >= gpu.hbm_bytes)) {
    return InvalidArgument("--workspace " + FormatBytes(o.workspace.bytes()) + ": must be below the " +
                           FormatBytes(gpu.hbm_bytes) + " of HBM of one " + gpu.name);
  }
  // vLLM's rule: every GPU gets the same number of query heads.
  if (model.attention_heads % o.gpus != 0) {
    return InvalidArgument("--gpus " + std::to_string(o.gpus) + ": tensor parallelism must divide the " +
                           std::to_string(model.attention_heads) + " attention heads of " + model.name);
  }
  if (model.attention == AttentionKind::kGroupedQuery && model.kv_heads % o.gpus != 0 &&
      o.gpus % model.kv_heads != 0) {
    return InvalidArgument("--gpus " + std::to_string(o.gpus) + ": must divide the " +
                           std::to_string(model.kv_heads) + " KV heads of " + model.name +
                           " or be a multiple of them");
  }
  return Status::Ok();
}

void AddNotes(const SizingOptions& o, SizingReport& r) {
  const ModelSpec& m = r.model;
  if (o.context_tokens > m.max_context) {
    r.notes.push_back("context " + FormatCount(o.context_tokens) + " exceeds the " + FormatCount(m.max_context) +
                      "-token maximum of " + m.name);
  }
  if (r.tokens_per_sequence < o.context_tokens) {
    r.notes.push_back("sliding window: each sequence keeps KV for its last " + FormatCount(r.tokens_per_sequence) +
                      " tokens only");
  }
  if (m.attention == AttentionKind::kGroupedQuery && o.gpus > m.kv_heads) {
    r.notes.push_back("each of the " + std::to_string(m.kv_heads) + " KV heads is replicated on " +
                      std::to_string(o.gpus / m.kv_heads) + " GPUs");
  }
  if (m.attention == AttentionKind::kMultiLatent && o.gpus > 1) {
    r.notes.push_back("the MLA latent is not split by tensor parallelism: every GPU holds all of it");
  }
  if (!r.gpu.fp8_flops && (o.weights == Precision::kFp8 || o.kv == Precision::kFp8)) {
    r.notes.push_back(r.gpu.name + " has no fp8 tensor cores: fp8 saves memory, but math runs in bf16");
  }
  if (!r.weights_fit) {
    r.notes.push_back("weights (" + FormatBytes(r.weight_bytes_per_gpu) + " per GPU) and workspace exceed HBM by " +
                      FormatBytes(r.shortfall_bytes_per_gpu) +
                      ": use more GPUs (--gpus) or fewer bytes per weight (--weights)");
  }
}

}  // namespace

Result<SizingReport> ComputeSizing(const ModelSpec& model, const GpuSpec& gpu, const SizingOptions& options) {
  KVSTACK_RETURN_IF_ERROR(ValidateModelSpec(model));
  KVSTACK_RETURN_IF_ERROR(ValidateGpuSpec(gpu));
  KVSTACK_RETURN_IF_ERROR(CheckOptions(model, gpu, options));

  SizingReport r;
  r.model = model;
  r.gpu = gpu;
  r.options = options;

  r.kv_values_per_token = KvValuesPerToken(model);
  // kvstack's real bytes: scales included (KvBytesForValues).
  const int64_t row = model.attention == AttentionKind::kMultiLatent
                          ? model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
                          : model.head_dim;
  r.kv_bytes_per_token = KvBytesForValues(r.kv_values_per_token, row, options.kv);
  int64_t values_per_gpu = r.kv_values_per_token;
  if (model.attention == AttentionKind::kGroupedQuery) {
    r.kv_heads_per_gpu = std::max<int64_t>(1, model.kv_heads / options.gpus);
    values_per_gpu = model.layers * 2 * r.kv_heads_per_gpu * model.head_dim;
  }
  r.kv_bytes_per_token_per_gpu = KvBytesForValues(values_per_gpu, row, options.kv);

  r.tokens_per_sequence = std::min(options.context_tokens, model.sliding_window.value_or(kMaxInt64));
  r.kv_bytes_per_sequence = SaturatingMul(r.tokens_per_sequence, r.kv_bytes_per_token);
  r.kv_bytes_per_sequence_per_gpu = SaturatingMul(r.tokens_per_sequence, r.kv_bytes_per_token_per_gpu);

  r.weight_bytes = BytesForValues(model.parameters, options.weights);
  r.weight_bytes_per_gpu = (r.weight_bytes + options.gpus - 1) / options.gpus;
  r.hbm_bytes_per_gpu = gpu.hbm_bytes;
  r.workspace_bytes_per_gpu = options.workspace.BytesOn(gpu.hbm_bytes);
  const int64_t left = r.hbm_bytes_per_gpu - r.weight_bytes_per_gpu - r.workspace_bytes_per_gpu;
  r.weights_fit = left >= 0;
  r.kv_budget_bytes_per_gpu = std::max<int64_t>(0, left);
  r.shortfall_bytes_per_gpu = std::max<int64_t>(0, -left);

  r.tokens_that_fit = r.kv_budget_bytes_per_gpu / r.kv_bytes_per_token_per_gpu;
  r.sequences_that_fit = r.tokens_that_fit / r.tokens_per_sequence;
  r.requested_kv_bytes = SaturatingMul(options.sequences, r.kv_bytes_per_sequence);
  r.requested_kv_bytes_per_gpu = SaturatingMul(options.sequences, r.kv_bytes_per_sequence_per_gpu);
  r.requested_fits = r.weights_fit && r.requested_kv_bytes_per_gpu <= r.kv_budget_bytes_per_gpu;
  AddNotes(options, r);
  return r;
}

}  // namespace kvstack::sizing
