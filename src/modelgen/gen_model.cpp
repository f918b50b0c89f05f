// BuildGenModel: the metadata and tensor list of a generated Llama-family
// model, laid out as llama.cpp's converter lays out a real one.
#include <cmath>
#include <cstring>
#include <numbers>
#include <vector>

#include <fmt/format.h>

#include "kvstack/model_gen.h"
#include "modelgen/gen_model_weights.h"

namespace kvstack {
namespace {

using modelgen::WeightInit;

// llama.cpp's llama_ftype for a file whose matrices are all `type` (its
// "mostly" types; pure Q4_K is closest to Q4_K_S).
uint32_t FileType(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return 0;
    case GgmlType::kF16: return 1;
    case GgmlType::kQ4_0: return 2;
    case GgmlType::kQ8_0: return 7;
    case GgmlType::kQ4_K: return 14;
    case GgmlType::kQ6_K: return 18;
    case GgmlType::kBF16: return 32;
    default: return 0;
  }
}

bool IsQuantized(GgmlType type) {
  return type != GgmlType::kF32 && type != GgmlType::kF16 && type != GgmlType::kBF16;
}

// llama.cpp's converter (generate_extra_tensors for Llama 3.1+): one divisor
// per rotated pair, 1 for high frequencies, `factor` for low ones, smoothly
// in between.
std::vector<float> Llama3RopeFactors(const Llama3RopeScaling& r, float base, int head_dim) {
  const double low_wavelen = r.original_context / r.low_freq_factor;
  const double high_wavelen = r.original_context / r.high_freq_factor;
  std::vector<float> factors;
  for (int i = 0; i < head_dim; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(base), static_cast<double>(i) / head_dim);
    const double wavelen = 2.0 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(r.factor);
    } else {
      const double smooth = (r.original_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      factors.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / r.factor + smooth)));
    }
  }
  return factors;
}

std::vector<std::byte> FloatBytes(const std::vector<float>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

Status SetMetadata(const GenModelSpec& spec, GgufWriter& w) {
  const std::string& arch = spec.architecture;
  const GenModelVocab& vocab = GetGenModelVocab();
  const int hd = spec.HeadDim();
  auto key = [&](std::string_view suffix) { return fmt::format("{}.{}", arch, suffix); };
  const std::string name =
      !spec.name.empty() ? spec.name
                         : fmt::format("kvstack-gen {} {}x{} {} seed {}", arch, spec.n_layer, spec.n_embd,
                                       GetGgmlTypeTraits(spec.weight_type).name, spec.seed);

  KVSTACK_RETURN_IF_ERROR(w.SetString("general.architecture", arch));
  KVSTACK_RETURN_IF_ERROR(w.SetString("general.name", name));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32("general.file_type", FileType(spec.weight_type)));
  if (IsQuantized(spec.weight_type)) KVSTACK_RETURN_IF_ERROR(w.SetUint32("general.quantization_version", 2));

  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("vocab_size"), static_cast<uint32_t>(vocab.tokens.size())));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("context_length"), static_cast<uint32_t>(spec.n_ctx)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("embedding_length"), static_cast<uint32_t>(spec.n_embd)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("block_count"), static_cast<uint32_t>(spec.n_layer)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("feed_forward_length"), static_cast<uint32_t>(spec.n_ff)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("rope.dimension_count"), static_cast<uint32_t>(hd)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("attention.head_count"), static_cast<uint32_t>(spec.n_head)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("attention.head_count_kv"), static_cast<uint32_t>(spec.n_head_kv)));
  // Readers default the head dimension to n_embd / n_head; say it only when
  // it differs (as llama.cpp's converter does).
  if (spec.n_embd % spec.n_head != 0 || hd != spec.n_embd / spec.n_head) {
    KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("attention.key_length"), static_cast<uint32_t>(hd)));
    KVSTACK_RETURN_IF_ERROR(w.SetUint32(key("attention.value_length"), static_cast<uint32_t>(hd)));
  }
  KVSTACK_RETURN_IF_ERROR(w.SetFloat32(key("rope.freq_base"), spec.rope_freq_base));
  KVSTACK_RETURN_IF_ERROR(w.SetFloat32(key("attention.layer_norm_rms_epsilon"), spec.rms_eps));

  KVSTACK_RETURN_IF_ERROR(w.SetString("tokenizer.ggml.model", "llama"));
  KVSTACK_RETURN_IF_ERROR(w.SetStringArray("tokenizer.ggml.tokens", vocab.tokens));
  KVSTACK_RETURN_IF_ERROR(w.SetFloat32Array("tokenizer.ggml.scores", vocab.scores));
  KVSTACK_RETURN_IF_ERROR(w.SetInt32Array("tokenizer.ggml.token_type", vocab.token_types));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.bos_id)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab.eos_id)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(vocab.unk_id)));
  KVSTACK_RETURN_IF_ERROR(w.SetUint32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(vocab.im_end_id)));
  KVSTACK_RETURN_IF_ERROR(w.SetBool("tokenizer.ggml.add_bos_token", true));
  KVSTACK_RETURN_IF_ERROR(w.SetBool("tokenizer.ggml.add_eos_token", false));
  KVSTACK_RETURN_IF_ERROR(w.SetBool("tokenizer.ggml.add_space_prefix", true));
  KVSTACK_RETURN_IF_ERROR(w.SetString("tokenizer.chat_template", vocab.chat_template));
  return Status::Ok();
}

// One tensor to generate: its shape (ne[0] = row length first) and values.
struct TensorPlan {
  std::string name;
  std::vector<uint64_t> dims;
  GgmlType type;
  WeightInit init;
};

int64_t Rows(const TensorPlan& t) {
  uint64_t rows = 1;
  for (size_t i = 1; i < t.dims.size(); ++i) rows *= t.dims[i];
  return static_cast<int64_t>(rows);
}

std::vector<TensorPlan> PlanTensors(const GenModelSpec& spec) {
  const auto n_vocab = static_cast<uint64_t>(GetGenModelVocab().tokens.size());
  const auto embd = static_cast<uint64_t>(spec.n_embd);
  const auto ff = static_cast<uint64_t>(spec.n_ff);
  const auto q_width = static_cast<uint64_t>(spec.n_head) * static_cast<uint64_t>(spec.HeadDim());
  const auto kv_width = static_cast<uint64_t>(spec.n_head_kv) * static_cast<uint64_t>(spec.HeadDim());
  const GgmlType wt = spec.weight_type;
  // Standard deviation 1/sqrt(fan_in) keeps each matrix product's outputs
  // near unit scale; norms are 1 with a little noise; biases are small.
  auto matrix = [](uint64_t fan_in) { return WeightInit{0.0f, 1.0f / std::sqrt(static_cast<float>(fan_in))}; };
  const WeightInit norm{1.0f, 0.05f};
  const WeightInit bias{0.0f, 0.02f};

  std::vector<TensorPlan> plan;
  // When tied, token_embd is also the output projection and takes its scale;
  // otherwise embeddings are unit scale like the residual stream they start.
  plan.push_back({"token_embd.weight", {embd, n_vocab}, wt, spec.tied_embeddings ? matrix(embd) : WeightInit{}});
  for (int i = 0; i < spec.n_layer; ++i) {
    auto name = [i](std::string_view suffix) { return fmt::format("blk.{}.{}", i, suffix); };
    plan.push_back({name("attn_norm.weight"), {embd}, GgmlType::kF32, norm});
    plan.push_back({name("attn_q.weight"), {embd, q_width}, wt, matrix(embd)});
    if (spec.architecture == "qwen2") plan.push_back({name("attn_q.bias"), {q_width}, GgmlType::kF32, bias});
    plan.push_back({name("attn_k.weight"), {embd, kv_width}, wt, matrix(embd)});
    if (spec.architecture == "qwen2") plan.push_back({name("attn_k.bias"), {kv_width}, GgmlType::kF32, bias});
    plan.push_back({name("attn_v.weight"), {embd, kv_width}, wt, matrix(embd)});
    if (spec.architecture == "qwen2") plan.push_back({name("attn_v.bias"), {kv_width}, GgmlType::kF32, bias});
    plan.push_back({name("attn_output.weight"), {q_width, embd}, wt, matrix(q_width)});
    plan.push_back({name("ffn_norm.weight"), {embd}, GgmlType::kF32, norm});
    plan.push_back({name("ffn_gate.weight"), {embd, ff}, wt, matrix(embd)});
    plan.push_back({name("ffn_up.weight"), {embd, ff}, wt, matrix(embd)});
    plan.push_back({name("ffn_down.weight"), {ff, embd}, wt, matrix(ff)});
  }
  plan.push_back({"output_norm.weight", {embd}, GgmlType::kF32, norm});
  if (!spec.tied_embeddings) plan.push_back({"output.weight", {embd, n_vocab}, wt, matrix(embd)});
  return plan;
}

}  // namespace

Result<GgufWriter> BuildGenModel(const GenModelSpec& spec, GenModelProgressFn progress) {
  KVSTACK_RETURN_IF_ERROR(spec.Validate());
  GgufWriter w;
  KVSTACK_RETURN_IF_ERROR(SetMetadata(spec, w));

  if (spec.rope_scaling) {
    // Computed, not random: converters put it first, and so do we.
    std::vector<float> factors = Llama3RopeFactors(*spec.rope_scaling, spec.rope_freq_base, spec.HeadDim());
    const uint64_t n = factors.size();
    KVSTACK_RETURN_IF_ERROR(w.AddTensor("rope_freqs.weight", {n}, GgmlType::kF32, FloatBytes(factors)));
  }

  const std::vector<TensorPlan> plan = PlanTensors(spec);
  // Progress is precomputed per tensor, so the fillers stay stateless and the
  // writer may run them any number of times.
  std::vector<uint64_t> sizes;
  uint64_t bytes_total = w.tensor_bytes();
  for (const TensorPlan& t : plan) {
    auto size = GgmlTensorBytes(t.type, t.dims);
    if (!size.ok()) return Internal(fmt::format("tensor '{}': {}", t.name, size.status().message()));
    sizes.push_back(*size);
    bytes_total += *size;
  }
  const size_t tensors_total = w.tensor_count() + plan.size();
  uint64_t bytes_done = w.tensor_bytes();
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorPlan& t = plan[i];
    bytes_done += sizes[i];
    GenModelProgress after{.tensor = {}, .tensors_done = w.tensor_count() + 1, .tensors_total = tensors_total,
                           .bytes_done = bytes_done, .bytes_total = bytes_total};
    auto filler = [seed = spec.seed, t, after, progress](std::span<std::byte> out) -> Status {
      KVSTACK_RETURN_IF_ERROR(modelgen::FillWeights(seed, t.name, t.init, t.type, static_cast<int64_t>(t.dims[0]), Rows(t),
                                                    out));
      if (progress) {
        GenModelProgress p = after;
        p.tensor = t.name;
        progress(p);
      }
      return Status::Ok();
    };
    KVSTACK_RETURN_IF_ERROR(w.AddTensor(t.name, t.dims, t.type, std::move(filler)));
  }
  return w;
}

Status WriteGenModel(const GenModelSpec& spec, const std::string& path, GenModelProgressFn progress) {
  auto writer = BuildGenModel(spec, std::move(progress));
  if (!writer.ok()) return writer.status();
  return writer->WriteFile(path);
}

}  // namespace kvstack
