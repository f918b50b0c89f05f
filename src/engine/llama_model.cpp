#include "engine/llama_model.h"

#include "kvstack/model_identity.h"

#include <cstring>

#include <fmt/format.h>

namespace kvstack::engine {
namespace {

std::string Dims(std::span<const uint64_t> d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// A tensor must exist with exactly these ggml dims (ne[0] first).
Result<const GgufTensorInfo*> Expect(const GgufFile& f, const std::string& name, std::vector<uint64_t> dims) {
  auto t = f.FindTensor(name);
  if (!t.ok()) return NotFound(fmt::format("tensor '{}' is missing", name));
  const GgufTensorInfo* info = *t;
  std::vector<uint64_t> got = info->dims;
  while (got.size() > dims.size() && got.back() == 1) got.pop_back();
  if (got != dims) {
    return InvalidArgument(fmt::format("tensor '{}' has shape {}, expected {}", name, Dims(info->dims), Dims(dims)));
  }
  return info;
}

Result<kernels::WeightMatrix> Matrix(const GgufFile& f, const std::string& name, uint64_t cols, uint64_t rows) {
  auto t = Expect(f, name, {cols, rows});
  if (!t.ok()) return t.status();
  const GgufTensorInfo* info = *t;
  if (!kernels::IsSupportedWeightType(info->type)) {
    return InvalidArgument(fmt::format("tensor '{}' has type {}, which the engine cannot multiply by", name,
                                       GetGgmlTypeTraits(info->type).name));
  }
  kernels::WeightMatrix w;
  w.type = info->type;
  w.data = info->data.data();
  w.rows = static_cast<int64_t>(rows);
  w.cols = static_cast<int64_t>(cols);
  w.row_bytes = info->size_bytes / rows;
  return w;
}

Result<std::vector<float>> Vector(const GgufFile& f, const std::string& name, uint64_t n) {
  auto t = Expect(f, name, {n});
  if (!t.ok()) return t.status();
  const GgufTensorInfo* info = *t;
  std::vector<float> out(n);
  if (info->type == GgmlType::kF32) {
    std::memcpy(out.data(), info->data.data(), n * sizeof(float));
  } else if (kernels::IsSupportedWeightType(info->type) && n % GetGgmlTypeTraits(info->type).block_elements == 0) {
    kernels::DequantizeRow(info->type, info->data.data(), out.data(), static_cast<int64_t>(n));
  } else {
    return InvalidArgument(fmt::format("tensor '{}' has type {}; expected F32", name, GetGgmlTypeTraits(info->type).name));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& path) {
  auto file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  auto model = FromGguf(std::make_shared<const GgufFile>(std::move(file).value()));
  if (!model.ok()) return Status(model.status().code(), path + ": " + model.status().message());
  return model;
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::FromGguf(std::shared_ptr<const GgufFile> file) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  m->file_ = std::move(file);
  auto hp = ReadLlamaHParams(*m->file_);
  if (!hp.ok()) return hp.status();
  m->hp_ = *hp;
  KVSTACK_RETURN_IF_ERROR(m->Bind());
  return m;
}

Status LlamaModel::Bind() {
  const GgufFile& f = *file_;
  const LlamaHParams& h = hp_;
  if (h.architecture != "llama" && h.architecture != "qwen2") {
    return InvalidArgument(fmt::format("general.architecture '{}': the engine runs llama and qwen2", h.architecture));
  }
  if (h.head_dim_v != h.head_dim) {
    return InvalidArgument(fmt::format("attention.value_length {} differs from key_length {}: not supported",
                                       h.head_dim_v, h.head_dim));
  }
  if (h.n_rot == 0 || h.n_rot % 2 != 0 || h.n_rot > h.head_dim) {
    return InvalidArgument(fmt::format("rope.dimension_count {}: must be even and at most head_dim {}", h.n_rot, h.head_dim));
  }
  rope_style_ = h.architecture == "qwen2" ? RopeStyle::kNeox : RopeStyle::kNormal;
  const uint64_t E = h.n_embd, V = h.n_vocab, Q = uint64_t{h.n_head} * h.head_dim,
                 KV = uint64_t{h.n_head_kv} * h.head_dim, F = h.n_ff;

  auto embd = Matrix(f, "token_embd.weight", E, V);
  if (!embd.ok()) return embd.status();
  token_embd_ = *embd;
  auto onorm = Vector(f, "output_norm.weight", E);
  if (!onorm.ok()) return onorm.status();
  output_norm_ = std::move(onorm).value();
  if (f.FindTensor("output.weight").ok()) {
    auto out = Matrix(f, "output.weight", E, V);
    if (!out.ok()) return out.status();
    output_ = *out;
  } else {
    output_ = token_embd_;
    tied_ = true;
  }
  if (f.FindTensor("rope_freqs.weight").ok()) {
    auto factors = Vector(f, "rope_freqs.weight", h.n_rot / 2);
    if (!factors.ok()) return factors.status();
    rope_freq_factors_ = std::move(factors).value();
  }

  layers_.resize(h.n_layer);
  for (uint32_t i = 0; i < h.n_layer; ++i) {
    LayerWeights& L = layers_[i];
    const std::string p = fmt::format("blk.{}.", i);
    auto vec = [&](const char* n, uint64_t len, std::vector<float>* out) -> Status {
      auto r = Vector(f, p + n, len);
      if (!r.ok()) return r.status();
      *out = std::move(r).value();
      return Status::Ok();
    };
    auto mat = [&](const char* n, uint64_t cols, uint64_t rows, kernels::WeightMatrix* out) -> Status {
      auto r = Matrix(f, p + n, cols, rows);
      if (!r.ok()) return r.status();
      *out = *r;
      return Status::Ok();
    };
    KVSTACK_RETURN_IF_ERROR(vec("attn_norm.weight", E, &L.attn_norm));
    KVSTACK_RETURN_IF_ERROR(mat("attn_q.weight", E, Q, &L.wq));
    KVSTACK_RETURN_IF_ERROR(mat("attn_k.weight", E, KV, &L.wk));
    KVSTACK_RETURN_IF_ERROR(mat("attn_v.weight", E, KV, &L.wv));
    KVSTACK_RETURN_IF_ERROR(mat("attn_output.weight", Q, E, &L.wo));
    KVSTACK_RETURN_IF_ERROR(vec("ffn_norm.weight", E, &L.ffn_norm));
    KVSTACK_RETURN_IF_ERROR(mat("ffn_gate.weight", E, F, &L.w_gate));
    KVSTACK_RETURN_IF_ERROR(mat("ffn_up.weight", E, F, &L.w_up));
    KVSTACK_RETURN_IF_ERROR(mat("ffn_down.weight", F, E, &L.w_down));
    if (f.FindTensor(p + "attn_q.bias").ok() || h.architecture == "qwen2") {
      KVSTACK_RETURN_IF_ERROR(vec("attn_q.bias", Q, &L.bq));
      KVSTACK_RETURN_IF_ERROR(vec("attn_k.bias", KV, &L.bk));
      KVSTACK_RETURN_IF_ERROR(vec("attn_v.bias", KV, &L.bv));
    }
  }
  for (const GgufTensorInfo& t : f.tensors()) weight_bytes_ += t.size_bytes;

  identity_ = ModelIdentity(f, h);
  return Status::Ok();
}

}  // namespace kvstack::engine
