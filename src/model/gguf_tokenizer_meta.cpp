// ReadTokenizerMetadata: the tokenizer.* keys gathered and checked against the
// token count, so a tokenizer can index its tables without bounds checks.
#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "kvstack/gguf.h"

namespace kvstack {
namespace {

constexpr uint32_t kNoToken = std::numeric_limits<uint32_t>::max();  // llama.cpp writes -1 as uint32

Result<std::optional<uint32_t>> SpecialId(const GgufFile& file, std::string_view key, size_t n_tokens) {
  if (!file.Has(key)) return std::optional<uint32_t>();
  auto id = file.GetUint32(key);
  if (!id.ok()) return id.status();
  if (*id == kNoToken) return std::optional<uint32_t>();
  if (*id >= n_tokens) {
    return InvalidArgument(
        fmt::format("metadata key '{}' is {}: not a token id (the vocabulary has {} tokens)", key, *id, n_tokens));
  }
  return std::optional<uint32_t>(*id);
}

Result<std::optional<bool>> OptionalBool(const GgufFile& file, std::string_view key) {
  if (!file.Has(key)) return std::optional<bool>();
  auto b = file.GetBool(key);
  if (!b.ok()) return b.status();
  return std::optional<bool>(*b);
}

Status CheckLength(std::string_view key, size_t actual, size_t n_tokens) {
  if (actual == n_tokens) return Status::Ok();
  return InvalidArgument(fmt::format("metadata key '{}' holds {} entries, but 'tokenizer.ggml.tokens' holds {}", key,
                                     actual, n_tokens));
}

}  // namespace

Result<GgufTokenizerMetadata> ReadTokenizerMetadata(const GgufFile& file) {
  GgufTokenizerMetadata meta;
  auto model = file.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  meta.model = *model;
  if (file.Has("tokenizer.ggml.pre")) {
    auto pre = file.GetString("tokenizer.ggml.pre");
    if (!pre.ok()) return pre.status();
    meta.pre = *pre;
  }
  auto tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  if (tokens->empty()) return InvalidArgument("metadata key 'tokenizer.ggml.tokens' is an empty array");
  meta.tokens = *tokens;
  const size_t n = meta.tokens.size();

  if (file.Has("tokenizer.ggml.scores")) {
    auto scores = file.GetFloat32Array("tokenizer.ggml.scores");
    if (!scores.ok()) return scores.status();
    KVSTACK_RETURN_IF_ERROR(CheckLength("tokenizer.ggml.scores", scores->size(), n));
    meta.scores = *scores;
  }
  if (file.Has("tokenizer.ggml.token_type")) {
    auto types = file.GetInt32Array("tokenizer.ggml.token_type");
    if (!types.ok()) return types.status();
    KVSTACK_RETURN_IF_ERROR(CheckLength("tokenizer.ggml.token_type", types->size(), n));
    meta.token_types = *types;
  }
  if (file.Has("tokenizer.ggml.merges")) {
    auto merges = file.GetStringArray("tokenizer.ggml.merges");
    if (!merges.ok()) return merges.status();
    meta.merges = *merges;
  }

  struct IdKey {
    std::string_view key;
    std::optional<uint32_t> GgufTokenizerMetadata::*field;
  };
  // "seperator" is llama.cpp's spelling of the key.
  constexpr IdKey kIds[] = {
      {"tokenizer.ggml.bos_token_id", &GgufTokenizerMetadata::bos_id},
      {"tokenizer.ggml.eos_token_id", &GgufTokenizerMetadata::eos_id},
      {"tokenizer.ggml.unknown_token_id", &GgufTokenizerMetadata::unk_id},
      {"tokenizer.ggml.seperator_token_id", &GgufTokenizerMetadata::sep_id},
      {"tokenizer.ggml.padding_token_id", &GgufTokenizerMetadata::pad_id},
      {"tokenizer.ggml.eot_token_id", &GgufTokenizerMetadata::eot_id},
  };
  for (const IdKey& id : kIds) {
    auto value = SpecialId(file, id.key, n);
    if (!value.ok()) return value.status();
    meta.*id.field = *value;
  }

  struct BoolKey {
    std::string_view key;
    std::optional<bool> GgufTokenizerMetadata::*field;
  };
  constexpr BoolKey kBools[] = {
      {"tokenizer.ggml.add_bos_token", &GgufTokenizerMetadata::add_bos},
      {"tokenizer.ggml.add_eos_token", &GgufTokenizerMetadata::add_eos},
      {"tokenizer.ggml.add_space_prefix", &GgufTokenizerMetadata::add_space_prefix},
  };
  for (const BoolKey& b : kBools) {
    auto value = OptionalBool(file, b.key);
    if (!value.ok()) return value.status();
    meta.*b.field = *value;
  }

  if (file.Has("tokenizer.chat_template")) {
    auto tmpl = file.GetString("tokenizer.chat_template");
    if (!tmpl.ok()) return tmpl.status();
    meta.chat_template = *tmpl;
  }
  return meta;
}

}  // namespace kvstack
