// GenModelSpec: validation and the named presets.
#include <array>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kvstack/model_gen.h"

namespace kvstack {
namespace {

// Far beyond any real Llama-family shape, yet small enough that no element
// count (n_ff * n_embd, n_ctx) overflows int64 or GGUF's uint32 keys.
constexpr int kMaxLayers = 1024;
constexpr int kMaxWidth = 1 << 17;  // n_embd, n_ff, n_head * head_dim
constexpr int kMaxHeads = 1024;
constexpr int kMaxContext = 1 << 24;

bool IsSupportedWeightType(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K:
      return true;
    default:
      return false;
  }
}

Status CheckRange(std::string_view field, int value, int max) {
  if (value >= 1 && value <= max) return Status::Ok();
  return InvalidArgument(fmt::format("{} {}: must be from 1 to {}", field, value, max));
}

// Every matrix row (ne[0]) must be whole quantization blocks.
Status CheckBlocks(std::string_view field, int value, GgmlType type) {
  const GgmlTypeTraits& t = GetGgmlTypeTraits(type);
  if (value % static_cast<int>(t.block_elements) == 0) return Status::Ok();
  return InvalidArgument(fmt::format("{} {}: must be a multiple of {}, the {} block (weight rows are whole blocks)",
                                     field, value, t.block_elements, t.name));
}

Status CheckRopeScaling(const GenModelSpec& spec) {
  if (!spec.rope_scaling) return Status::Ok();
  if (spec.architecture != "llama") {
    return InvalidArgument(fmt::format("rope_scaling: Llama 3 scaling is for architecture llama, not {}",
                                       spec.architecture));
  }
  const Llama3RopeScaling& r = *spec.rope_scaling;
  if (!std::isfinite(r.factor) || r.factor < 1.0f) {
    return InvalidArgument(fmt::format("rope_scaling.factor {}: must be a finite number >= 1", r.factor));
  }
  if (!(r.low_freq_factor > 0.0f && r.high_freq_factor > r.low_freq_factor && std::isfinite(r.high_freq_factor))) {
    return InvalidArgument(fmt::format("rope_scaling low/high frequency factors {}/{}: need 0 < low < high",
                                       r.low_freq_factor, r.high_freq_factor));
  }
  if (r.original_context < 1) return InvalidArgument("rope_scaling.original_context 0: must be positive");
  return Status::Ok();
}

}  // namespace

int GenModelSpec::HeadDim() const { return head_dim != 0 ? head_dim : (n_head > 0 ? n_embd / n_head : 0); }

Status GenModelSpec::Validate() const {
  if (architecture != "llama" && architecture != "qwen2") {
    return InvalidArgument(fmt::format("architecture '{}': must be llama or qwen2", architecture));
  }
  KVSTACK_RETURN_IF_ERROR(CheckRange("n_layer", n_layer, kMaxLayers));
  KVSTACK_RETURN_IF_ERROR(CheckRange("n_embd", n_embd, kMaxWidth));
  KVSTACK_RETURN_IF_ERROR(CheckRange("n_head", n_head, kMaxHeads));
  KVSTACK_RETURN_IF_ERROR(CheckRange("n_head_kv", n_head_kv, kMaxHeads));
  KVSTACK_RETURN_IF_ERROR(CheckRange("n_ff", n_ff, kMaxWidth));
  KVSTACK_RETURN_IF_ERROR(CheckRange("n_ctx", n_ctx, kMaxContext));
  if (n_head % n_head_kv != 0) {
    return InvalidArgument(
        fmt::format("n_head_kv {}: must divide n_head {} (each KV head serves a whole group of query heads)",
                    n_head_kv, n_head));
  }
  if (head_dim == 0 && n_embd % n_head != 0) {
    return InvalidArgument(
        fmt::format("n_head {}: must divide n_embd {} unless head_dim is given", n_head, n_embd));
  }
  if (head_dim < 0) return InvalidArgument(fmt::format("head_dim {}: must be positive (0: n_embd / n_head)", head_dim));
  const int hd = HeadDim();
  if (hd % 2 != 0) return InvalidArgument(fmt::format("head_dim {}: must be even (RoPE rotates pairs)", hd));
  if (static_cast<int64_t>(hd) * n_head > kMaxWidth) {
    return InvalidArgument(fmt::format("n_head x head_dim = {} x {}: must be at most {}", n_head, hd, kMaxWidth));
  }
  if (!std::isfinite(rope_freq_base) || rope_freq_base <= 0.0f) {
    return InvalidArgument(fmt::format("rope_freq_base {}: must be a positive finite number", rope_freq_base));
  }
  if (!std::isfinite(rms_eps) || rms_eps <= 0.0f) {
    return InvalidArgument(fmt::format("rms_eps {}: must be a positive finite number", rms_eps));
  }
  KVSTACK_RETURN_IF_ERROR(CheckRopeScaling(*this));
  if (!IsSupportedWeightType(weight_type)) {
    return InvalidArgument(fmt::format("weight_type {}: must be one of F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K",
                                       GetGgmlTypeTraits(weight_type).name));
  }
  // The rows: n_embd (token_embd, output, q/k/v, gate, up), n_ff (down) and
  // n_head * head_dim (attn_output).
  KVSTACK_RETURN_IF_ERROR(CheckBlocks("n_embd", n_embd, weight_type));
  KVSTACK_RETURN_IF_ERROR(CheckBlocks("n_ff", n_ff, weight_type));
  KVSTACK_RETURN_IF_ERROR(CheckBlocks("n_head x head_dim", n_head * hd, weight_type));
  return Status::Ok();
}

std::span<const std::string_view> GenModelPresetNames() {
  static constexpr std::array<std::string_view, 3> kNames = {"tiny", "stories", "llama-3.2-1b-shape"};
  return kNames;
}

Result<GenModelSpec> GenModelPreset(std::string_view name) {
  GenModelSpec spec;
  if (name == "tiny") {
    return spec;  // the struct's defaults are the tiny shape
  }
  if (name == "stories") {
    // stories15M (karpathy/llama2.c): 6 x 288, 6 heads, ff 768, context 256.
    spec.n_layer = 6;
    spec.n_embd = 288;
    spec.n_head = 6;
    spec.n_head_kv = 6;
    spec.n_ff = 768;
    spec.n_ctx = 256;
    return spec;
  }
  if (name == "llama-3.2-1b-shape") {
    spec.n_layer = 16;
    spec.n_embd = 2048;
    spec.n_head = 32;
    spec.n_head_kv = 8;  // head dim 2048 / 32 = 64
    spec.n_ff = 8192;
    // The real model's 131072 is allowed; 4096 keeps KV sizing modest by default.
    spec.n_ctx = 4096;
    spec.rope_freq_base = 500000.0f;
    spec.rope_scaling = Llama3RopeScaling{.factor = 32.0f, .low_freq_factor = 1.0f, .high_freq_factor = 4.0f,
                                          .original_context = 8192};
    spec.tied_embeddings = true;
    return spec;
  }
  return NotFound(fmt::format("preset '{}': known presets are {}", name, fmt::join(GenModelPresetNames(), ", ")));
}

}  // namespace kvstack
