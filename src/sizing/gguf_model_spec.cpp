// A GGUF file's metadata read as a ModelSpec (the model component parses the
// file; this maps llama.cpp's hyperparameter keys onto sizing's fields).
#include <string>

#include "kvstack/gguf.h"
#include "kvstack/sizing.h"

namespace kvstack::sizing {
namespace {

// GGUF writers store counts as uint32 or uint64; GetUint64 accepts both.
class Keys {
 public:
  Keys(const GgufFile& file, std::string arch, std::string where)
      : file_(file), arch_(std::move(arch)), where_(std::move(where)) {}

  int64_t Required(std::string_view suffix) {
    const std::string key = arch_ + "." + std::string(suffix);
    if (!file_.Has(key)) {
      Fail(InvalidArgument(where_ + ": missing GGUF key " + key));
      return 0;
    }
    return Optional(suffix, 0);
  }

  int64_t Optional(std::string_view suffix, int64_t fallback) {
    const std::string key = arch_ + "." + std::string(suffix);
    if (!file_.Has(key)) return fallback;
    auto v = file_.GetUint64(key);
    if (!v.ok()) {
      Fail(InvalidArgument(where_ + ": " + v.status().message()));
      return fallback;
    }
    return static_cast<int64_t>(*v);
  }

  bool Has(std::string_view suffix) const { return file_.Has(arch_ + "." + std::string(suffix)); }
  void Fail(Status s) {
    if (status_.ok()) status_ = std::move(s);
  }
  const Status& status() const { return status_; }

 private:
  const GgufFile& file_;
  std::string arch_;
  std::string where_;
  Status status_;
};

int64_t VocabularySize(const GgufFile& file, Keys& keys) {
  if (auto tokens = file.GetStringArray("tokenizer.ggml.tokens"); tokens.ok()) {
    return static_cast<int64_t>(tokens->size());
  }
  if (keys.Has("vocab_size")) return keys.Optional("vocab_size", 0);
  // token_embd is [n_embd, n_vocab] in ggml order.
  if (auto embd = file.FindTensor("token_embd.weight"); embd.ok() && (*embd)->dims.size() == 2) {
    return static_cast<int64_t>((*embd)->dims[1]);
  }
  return 0;
}

}  // namespace

bool GgufSupported() { return true; }

Result<ModelSpec> LoadGgufModel(const std::filesystem::path& path) {
  auto opened = GgufFile::Open(path.string());
  if (!opened.ok()) return opened.status();
  const GgufFile& file = *opened;
  auto arch = file.GetString("general.architecture");
  if (!arch.ok()) return InvalidArgument(path.string() + ": " + arch.status().message());

  Keys keys(file, std::string(*arch), path.string());
  ModelSpec m;
  m.architecture = std::string(*arch);
  auto name = file.GetString("general.name");
  m.name = name.ok() && !name->empty() ? std::string(*name) : path.stem().string();
  m.source = path.string();
  m.layers = keys.Required("block_count");
  m.hidden_size = keys.Required("embedding_length");
  m.attention_heads = keys.Required("attention.head_count");
  m.kv_heads = keys.Optional("attention.head_count_kv", m.attention_heads);
  m.head_dim = keys.Optional("attention.key_length", m.attention_heads > 0 ? m.hidden_size / m.attention_heads : 0);
  m.max_context = keys.Required("context_length");
  m.intermediate_size = keys.Required("feed_forward_length");
  m.vocab_size = VocabularySize(file, keys);
  // llama.cpp falls back to token_embd for the output head when output.weight is absent.
  m.tied_embeddings = !file.FindTensor("output.weight").ok();

  // DeepSeek-V2/V3 (arch "deepseek2"): the cached latent and the RoPE key.
  if (keys.Has("attention.kv_lora_rank")) {
    m.attention = AttentionKind::kMultiLatent;
    m.mla.kv_lora_rank = keys.Required("attention.kv_lora_rank");
    m.mla.qk_rope_head_dim = keys.Required("rope.dimension_count");
    m.mla.qk_nope_head_dim = m.head_dim - m.mla.qk_rope_head_dim;
    m.mla.v_head_dim = keys.Optional("attention.value_length", m.head_dim);
    m.mla.q_lora_rank = keys.Optional("attention.q_lora_rank", 0);
  }
  m.moe.experts = keys.Optional("expert_count", 0);
  if (m.moe.experts > 0) {
    m.moe.experts_per_token = keys.Required("expert_used_count");
    m.moe.shared_experts = keys.Optional("expert_shared_count", 0);
    m.moe.expert_intermediate_size = keys.Optional("expert_feed_forward_length", 0);
    m.moe.dense_layers = keys.Optional("leading_dense_block_count", 0);
  }
  KVSTACK_RETURN_IF_ERROR(keys.status());

  // The file's own element counts, not an estimate. Routed-expert tensors
  // ("*_exps") hold every expert; a token runs expert_used_count of them.
  for (const GgufTensorInfo& t : file.tensors()) {
    const auto n = static_cast<int64_t>(t.n_elements);
    m.parameters += n;
    const bool routed = m.moe.experts > 0 && t.name.find("_exps") != std::string::npos;
    m.active_parameters += routed ? n / m.moe.experts * m.moe.experts_per_token : n;
  }
  KVSTACK_RETURN_IF_ERROR(ValidateModelSpec(m));
  return m;
}

}  // namespace kvstack::sizing
