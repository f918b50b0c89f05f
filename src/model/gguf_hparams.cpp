// ReadLlamaHParams: the Llama-family keys ({arch}.*) with llama.cpp's
// defaults, cross-checked so the engine can size its tensors without
// re-validating.
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "kvstack/gguf.h"

namespace kvstack {
namespace {

// Reads "{arch}.{suffix}" with the full key in every message.
class ArchKeys {
 public:
  ArchKeys(const GgufFile& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  std::string Key(std::string_view suffix) const { return fmt::format("{}.{}", arch_, suffix); }

  Result<uint32_t> Positive(std::string_view suffix) const {
    const std::string key = Key(suffix);
    auto v = file_.GetUint32(key);
    if (!v.ok()) return v.status();
    if (*v == 0) return InvalidArgument(fmt::format("metadata key '{}' is 0: it must be positive", key));
    return *v;
  }

  Result<uint32_t> PositiveOr(std::string_view suffix, uint32_t fallback) const {
    return file_.Has(Key(suffix)) ? Positive(suffix) : Result<uint32_t>(fallback);
  }

  Result<float> PositiveFloatOr(std::string_view suffix, float fallback) const {
    const std::string key = Key(suffix);
    auto v = file_.GetFloat32Or(key, fallback);
    if (!v.ok()) return v.status();
    if (!std::isfinite(*v) || *v <= 0.0f) {
      return InvalidArgument(fmt::format("metadata key '{}' is {}: it must be a positive finite number", key, *v));
    }
    return *v;
  }

 private:
  const GgufFile& file_;
  std::string arch_;
};

// Assigns `*out` from a Result or returns its error from the enclosing function.
#define KVSTACK_ASSIGN_OR_RETURN_HP(out, expr) \
  do {                                        \
    auto r_ = (expr);                         \
    if (!r_.ok()) return r_.status();         \
    (out) = *r_;                              \
  } while (0)

Result<uint32_t> ReadVocabSize(const GgufFile& file, const ArchKeys& keys) {
  const std::string vocab_key = keys.Key("vocab_size");
  if (file.Has("tokenizer.ggml.tokens")) {
    auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
    if (!tokens.ok()) return tokens.status();
    if (tokens->empty() || tokens->size() > UINT32_MAX) {
      return InvalidArgument(fmt::format("metadata key 'tokenizer.ggml.tokens' holds {} tokens: it must hold 1 to {}",
                                     tokens->size(), UINT32_MAX));
    }
    const auto n = static_cast<uint32_t>(tokens->size());
    if (file.Has(vocab_key)) {
      auto declared = file.GetUint32(vocab_key);
      if (!declared.ok()) return declared.status();
      if (*declared != n) {
        return InvalidArgument(fmt::format("metadata key '{}' is {}, but 'tokenizer.ggml.tokens' holds {} tokens", vocab_key,
                                   *declared, n));
      }
    }
    return n;
  }
  if (file.Has(vocab_key)) return keys.Positive("vocab_size");
  auto embd = file.FindTensor("token_embd.weight");
  if (embd.ok() && (*embd)->dims.size() >= 2 && (*embd)->dims[1] <= UINT32_MAX) {
    return static_cast<uint32_t>((*embd)->dims[1]);
  }
  return InvalidArgument(fmt::format(
      "no vocabulary size: neither 'tokenizer.ggml.tokens', '{}' nor a 2-D tensor 'token_embd.weight' is present",
      vocab_key));
}

Status ReadRopeScaling(const GgufFile& file, const ArchKeys& keys, LlamaHParams& hp) {
  const std::string type_key = keys.Key("rope.scaling.type");
  if (file.Has(type_key)) {
    auto type = file.GetString(type_key);
    if (!type.ok()) return type.status();
    if (*type == "none") hp.rope_scaling = RopeScalingType::kNone;
    else if (*type == "linear") hp.rope_scaling = RopeScalingType::kLinear;
    else if (*type == "yarn") hp.rope_scaling = RopeScalingType::kYarn;
    else return InvalidArgument(fmt::format("metadata key '{}' is '{}': supported are none, linear and yarn", type_key, *type));
  }
  // Older converters wrote only the linear factor.
  const std::string legacy_key = keys.Key("rope.scale_linear");
  const bool has_factor = file.Has(keys.Key("rope.scaling.factor"));
  if (!has_factor && file.Has(legacy_key)) {
    KVSTACK_ASSIGN_OR_RETURN_HP(hp.rope_scaling_factor, keys.PositiveFloatOr("rope.scale_linear", 1.0f));
    if (!file.Has(type_key) && hp.rope_scaling_factor != 1.0f) hp.rope_scaling = RopeScalingType::kLinear;
  } else {
    KVSTACK_ASSIGN_OR_RETURN_HP(hp.rope_scaling_factor, keys.PositiveFloatOr("rope.scaling.factor", 1.0f));
  }
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.rope_original_ctx,
                              keys.PositiveOr("rope.scaling.original_context_length", hp.n_ctx_train));
  return Status::Ok();
}

Status CheckConsistency(const ArchKeys& keys, const LlamaHParams& hp) {
  if (hp.n_head % hp.n_head_kv != 0) {
    return InvalidArgument(fmt::format("metadata key '{}' is {}: it must divide '{}' = {}",
                               keys.Key("attention.head_count_kv"), hp.n_head_kv, keys.Key("attention.head_count"),
                               hp.n_head));
  }
  if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0) {
    return InvalidArgument(fmt::format("metadata key '{}' is {}: it must be even and at most the head dimension {}",
                               keys.Key("rope.dimension_count"), hp.n_rot, hp.head_dim));
  }
  return Status::Ok();
}

}  // namespace

Result<LlamaHParams> ReadLlamaHParams(const GgufFile& file) {
  LlamaHParams hp;
  auto arch = file.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  if (*arch != "llama" && *arch != "qwen2") {
    return InvalidArgument(fmt::format("metadata key 'general.architecture' is '{}': supported are llama and qwen2", *arch));
  }
  hp.architecture = std::string(*arch);
  const ArchKeys keys(file, hp.architecture);

  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_layer, keys.Positive("block_count"));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_embd, keys.Positive("embedding_length"));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_ff, keys.Positive("feed_forward_length"));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_ctx_train, keys.Positive("context_length"));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_head, keys.Positive("attention.head_count"));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_head_kv, keys.PositiveOr("attention.head_count_kv", hp.n_head));

  if (file.Has(keys.Key("attention.key_length"))) {
    KVSTACK_ASSIGN_OR_RETURN_HP(hp.head_dim, keys.Positive("attention.key_length"));
  } else if (hp.n_embd % hp.n_head != 0) {
    return InvalidArgument(fmt::format("metadata key '{}' is {}: it must divide '{}' = {} when '{}' is absent",
                               keys.Key("attention.head_count"), hp.n_head, keys.Key("embedding_length"), hp.n_embd,
                               keys.Key("attention.key_length")));
  } else {
    hp.head_dim = hp.n_embd / hp.n_head;
  }
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.head_dim_v, keys.PositiveOr("attention.value_length", hp.head_dim));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_rot, keys.PositiveOr("rope.dimension_count", hp.head_dim));

  const std::string eps_key = keys.Key("attention.layer_norm_rms_epsilon");
  if (!file.Has(eps_key)) return NotFound(fmt::format("metadata key '{}' not found", eps_key));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.rms_eps, keys.PositiveFloatOr("attention.layer_norm_rms_epsilon", 0.0f));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.rope_freq_base, keys.PositiveFloatOr("rope.freq_base", 10000.0f));
  KVSTACK_RETURN_IF_ERROR(ReadRopeScaling(file, keys, hp));
  KVSTACK_ASSIGN_OR_RETURN_HP(hp.n_vocab, ReadVocabSize(file, keys));
  KVSTACK_RETURN_IF_ERROR(CheckConsistency(keys, hp));
  return hp;
}

#undef KVSTACK_ASSIGN_OR_RETURN_HP

}  // namespace kvstack
