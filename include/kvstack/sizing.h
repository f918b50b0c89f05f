// Sizing: how much KV cache a model needs and how much of it fits on a GPU.
//
// This component describes models (ModelSpec) and accelerators (GpuSpec),
// reads them from preset files, Hugging Face config.json files or GGUF files,
// and does the memory arithmetic of a deployment: bytes of KV per token,
// weights per GPU, the HBM left for KV after weights and a workspace reserve,
// how many tokens fit, and how many sequences of a given context run at once.
// `kvstack size` is its command-line face; `kvstack plan` reuses the specs and
// the catalog. Nothing here allocates device memory: it is arithmetic only.
//
// All arithmetic is exact integer arithmetic on bytes (precisions are exact
// fractions of a byte), so tests compare against hand-computed values with ==.
//
// Thread safety: every function is pure (or reads files and returns a value);
// a PresetCatalog never changes after Load(), so a const catalog may be shared
// between threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/status.h"

namespace kvstack::sizing {

// ---------------------------------------------------------------------------
// Precisions

// How weights or KV values are stored. For weights, scales of fp8 and int8
// (one per tensor or per channel) are negligible and not counted; KV bytes
// are kvstack's real layouts, scales included (KvBytesForValues). int4 is counted with its
// group scales: 4 bits per value plus one 16-bit scale per group of 128 values
// (the GPTQ/AWQ layout), 4.125 bits = 33/64 byte per value.
enum class Precision { kF32, kBf16, kF16, kFp8, kInt8, kInt4 };

// The bytes one value takes, as an exact fraction (int4: 33/64).
struct BytesPerValue {
  int64_t numerator = 0;
  int64_t denominator = 1;
};

// "f32" (or "fp32"), "bf16", "fp16" (or "f16"), "fp8" (or "e4m3", "e5m2"),
// "int8" (or "q8"), "int4" (or "q4"); case-insensitive.
// On failure: kInvalidArgument naming the text and listing the accepted names.
Result<Precision> ParsePrecision(std::string_view text);
// The canonical name: "f32", "bf16", "fp16", "fp8", "int8", "int4".
std::string_view PrecisionName(Precision precision);
BytesPerValue PrecisionBytes(Precision precision);
// The bytes that `count` values of `precision` occupy, rounded up to a byte.
// REQUIRES: 0 <= count <= 2^56 (no overflow of the exact product).
int64_t BytesForValues(int64_t count, Precision precision);

// ---------------------------------------------------------------------------
// Model and GPU specs

// How a model caches attention state per token and layer.
enum class AttentionKind {
  kGroupedQuery,  // K and V per KV head (covers MHA, GQA and MQA)
  kMultiLatent,   // one compressed latent plus a decoupled RoPE key (MLA)
};

// Multi-head latent attention (DeepSeek-V2/V3). Only kv_lora_rank and
// qk_rope_head_dim are cached; the rest feed the parameter estimate.
struct MlaSpec {
  int64_t kv_lora_rank = 0;      // width of the cached latent c_kv
  int64_t qk_rope_head_dim = 0;  // width of the cached shared RoPE key
  int64_t qk_nope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t q_lora_rank = 0;       // 0: queries are projected without a low-rank step
};

// Mixture of experts. experts == 0 means a dense model.
struct MoeSpec {
  int64_t experts = 0;            // routed experts in each MoE layer
  int64_t experts_per_token = 0;  // routed experts each token activates
  int64_t shared_experts = 0;     // experts every token runs (DeepSeek)
  int64_t expert_intermediate_size = 0;  // 0: the model's intermediate_size
  int64_t dense_layers = 0;       // leading layers with a dense MLP (DeepSeek first_k_dense_replace)
};

// The architecture numbers sizing and planning need. Field names follow the
// Hugging Face config.json meaning (layers = num_hidden_layers, ...).
struct ModelSpec {
  std::string name;
  std::string architecture;  // config.json model_type or GGUF general.architecture
  std::string source;        // where the numbers came from (URL, file path)
  AttentionKind attention = AttentionKind::kGroupedQuery;
  int64_t layers = 0;
  int64_t hidden_size = 0;
  int64_t attention_heads = 0;
  int64_t kv_heads = 0;       // == attention_heads for MHA; MLA: heads after up-projection
  int64_t head_dim = 0;       // query/key head width (MLA: qk_nope + qk_rope)
  int64_t vocab_size = 0;
  int64_t intermediate_size = 0;  // dense MLP width
  int64_t max_context = 0;        // tokens (max_position_embeddings)
  // Tokens of attention window when every layer attends only to the last
  // `sliding_window` tokens (Mistral-7B-v0.1): caps the KV a sequence keeps.
  std::optional<int64_t> sliding_window;
  bool tied_embeddings = false;  // the output head reuses the input embedding
  bool qkv_bias = false;         // Q, K and V projections carry biases (Qwen2)
  int64_t parameters = 0;         // all weights, every expert included
  int64_t active_parameters = 0;  // weights one token runs through (== parameters when dense)
  MlaSpec mla;
  MoeSpec moe;
};

// Checks that the numbers describe a model that sizing can reason about:
// positive sizes, kv_heads dividing attention_heads, MLA widths present for
// kMultiLatent, experts_per_token <= experts, active <= total parameters.
// On failure: kInvalidArgument naming the model, the field and its value.
Status ValidateModelSpec(const ModelSpec& model);

// Weights of a decoder-only transformer with this shape: embeddings (twice
// unless tied), attention (GQA or MLA projections), the MLP (SwiGLU, three
// matrices; MoE counts every expert plus the router) and RMSNorm weights.
// Reproduces the safetensors totals of the bundled dense and Mixtral presets
// exactly. Not counted: biases other than Q/K/V, DeepSeek's per-expert router
// bias, and multi-token-prediction modules.
struct ParameterEstimate {
  int64_t total = 0;
  int64_t active = 0;  // MoE: experts_per_token + shared experts only
};
// REQUIRES: ValidateModelSpec(model).ok(), ignoring parameters.
ParameterEstimate EstimateParameters(const ModelSpec& model);

// Values cached per token, over all layers: GQA layers x 2 (K and V) x
// kv_heads x head_dim; MLA layers x (kv_lora_rank + qk_rope_head_dim).
// REQUIRES: ValidateModelSpec(model).ok().
int64_t KvValuesPerToken(const ModelSpec& model);

// The bytes kvstack's KV cache stores for `values` cached values in rows of
// `row_width` (a head's head_dim; MLA's latent row), scales included, in
// blocks of 16 tokens (kv_arena.h's layouts): fp8 1 byte per value; int8 1
// plus a binary16 scale per group; int4 half a byte plus, for K, a byte per
// channel per block and, for V, a binary16 scale per group (values are half
// K, half V). Float precisions are their element size. Rounded up to a byte.
// REQUIRES: values >= 0; row_width >= 1 (even for int4).
int64_t KvBytesForValues(int64_t values, int64_t row_width, Precision kv);

// A GPU's memory and speed. Rates are per second and dense (no sparsity).
struct GpuSpec {
  std::string name;
  std::string source;
  int64_t hbm_bytes = 0;                 // memory the driver reports (nvidia-smi total)
  double memory_bandwidth = 0;           // bytes/s, peak
  double bf16_flops = 0;                 // dense bf16 tensor FLOP/s, peak
  std::optional<double> fp8_flops;       // dense fp8 FLOP/s; absent: no fp8 tensor cores
  double interconnect_bandwidth = 0;     // bytes/s per GPU, both directions together
  std::string interconnect;              // "NVLink 4", "PCIe Gen4 x16"
};

// On failure: kInvalidArgument naming the GPU, the field and its value.
Status ValidateGpuSpec(const GpuSpec& gpu);

// ---------------------------------------------------------------------------
// Reading specs from files

// A preset file of kvstack's own format (see presets/models/*.json and
// presets/gpus/*.json). On failure: kNotFound (no such file), kDataLoss (not
// JSON), kInvalidArgument (a field missing or of the wrong type; the message
// names the file and the field), or a ValidateModelSpec/ValidateGpuSpec error.
Result<ModelSpec> LoadModelPreset(const std::filesystem::path& file);
Result<GpuSpec> LoadGpuPreset(const std::filesystem::path& file);

// A Hugging Face config.json (its text). Reads num_hidden_layers, hidden_size,
// num_attention_heads, num_key_value_heads (default: heads), head_dim
// (default: hidden / heads), vocab_size, intermediate_size,
// max_position_embeddings, tie_word_embeddings, the MoE fields
// (num_local_experts / n_routed_experts / num_experts, num_experts_per_tok,
// n_shared_experts, moe_intermediate_size, first_k_dense_replace) and the MLA
// fields (kv_lora_rank, qk_rope_head_dim, qk_nope_head_dim, v_head_dim,
// q_lora_rank). The parameter count is estimated with EstimateParameters.
// `name` is used unless the file has a non-empty _name_or_path.
// On failure: kDataLoss (not JSON) or kInvalidArgument naming the key.
Result<ModelSpec> ModelSpecFromHfConfig(std::string_view json_text, std::string name);

// True when this build can read GGUF files (the model component was built).
bool GgufSupported();
// A GGUF file's metadata: general.architecture, {arch}.block_count,
// {arch}.embedding_length, {arch}.attention.head_count(_kv),
// {arch}.attention.key_length (default: embedding / heads),
// {arch}.context_length, {arch}.feed_forward_length, the vocabulary from
// tokenizer.ggml.tokens; MoE ({arch}.expert_count, .expert_used_count, ...)
// and MLA ({arch}.attention.kv_lora_rank, .rope.dimension_count) when present.
// parameters = the sum of the tensors' element counts (active: routed-expert
// tensors "*_exps" scaled by used/experts); embeddings are tied when the file
// has no output.weight.
// On failure: the GGUF reader's error, kInvalidArgument naming a missing key,
// or kFailedPrecondition when !GgufSupported().
Result<ModelSpec> LoadGgufModel(const std::filesystem::path& file);

// Every preset under `dir`/models/*.json and `dir`/gpus/*.json.
class PresetCatalog {
 public:
  // On failure: kNotFound when `dir` or a subfolder is missing, or the first
  // preset file that does not load (its error names the file).
  static Result<PresetCatalog> Load(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  // Sorted by name.
  const std::vector<ModelSpec>& models() const { return models_; }
  const std::vector<GpuSpec>& gpus() const { return gpus_; }

  // Case-insensitive match on the preset's name ("llama-3.1-8b").
  // On failure: kNotFound naming `name` and listing every available name.
  Result<ModelSpec> FindModel(std::string_view name) const;
  Result<GpuSpec> FindGpu(std::string_view name) const;

 private:
  PresetCatalog() = default;
  std::filesystem::path dir_;
  std::vector<ModelSpec> models_;
  std::vector<GpuSpec> gpus_;
};

// What a user typed for --model: a preset name, a path to a preset .json, a
// config.json (or a folder holding one), or a .gguf file. A path is taken as a
// path when it exists or looks like one (has a '/' or ends in .json/.gguf).
// On failure: the loader's error, or kNotFound for a missing file or an unknown
// preset (listing the presets).
Result<ModelSpec> ResolveModel(const PresetCatalog& catalog, std::string_view name_or_path);
// The same for --gpu: a preset name or a path to a GPU preset .json.
Result<GpuSpec> ResolveGpu(const PresetCatalog& catalog, std::string_view name_or_path);

// ---------------------------------------------------------------------------
// Quantities typed by users

// HBM held back from KV for activations, CUDA graphs, the allocator's slack:
// a fraction of each GPU's HBM, or a fixed number of bytes per GPU.
class WorkspaceReserve {
 public:
  // REQUIRES: 0 <= fraction < 1.
  static WorkspaceReserve Fraction(double fraction) { return WorkspaceReserve(false, fraction, 0); }
  // REQUIRES: bytes >= 0.
  static WorkspaceReserve Bytes(int64_t bytes) { return WorkspaceReserve(true, 0, bytes); }

  bool is_fraction() const { return !is_bytes_; }
  double fraction() const { return fraction_; }
  int64_t bytes() const { return bytes_; }
  // The reserve on a GPU with `hbm_bytes` (a fraction is rounded down to a byte).
  int64_t BytesOn(int64_t hbm_bytes) const;

 private:
  WorkspaceReserve(bool is_bytes, double fraction, int64_t bytes)
      : is_bytes_(is_bytes), fraction_(fraction), bytes_(bytes) {}
  bool is_bytes_;
  double fraction_;
  int64_t bytes_;
};

// "0.1" or "10%" (a fraction of HBM, below 1), or a size ("4GiB", "4GB",
// "512MiB", "4G" = 4 GiB, "1073741824B"). On failure: kInvalidArgument
// quoting the text and the accepted forms.
Result<WorkspaceReserve> ParseWorkspace(std::string_view text);
// "4GiB", "4G" (binary), "4GB" (decimal), "4096MiB", "123B" or "123" (bytes).
// Units K, M, G, T with or without "iB" are binary; "KB", "MB", "GB", "TB" are
// decimal; case does not matter. On failure: kInvalidArgument quoting the text.
Result<int64_t> ParseByteSize(std::string_view text);
// A token count: "8192", "32k" (32768), "128K" (131072), "1M" (1048576).
// On failure: kInvalidArgument quoting the text. Zero and negatives fail.
Result<int64_t> ParseTokenCount(std::string_view text);
// "16.0 GiB", "128 KiB", "1.50 MiB", "512 B": binary units, three significant digits.
std::string FormatBytes(int64_t bytes);
// "8,030,261,248".
std::string FormatCount(int64_t count);

// ---------------------------------------------------------------------------
// The computation

struct SizingOptions {
  int64_t gpus = 1;  // tensor-parallel degree: weights and KV heads split across them
  Precision weights = Precision::kBf16;
  Precision kv = Precision::kBf16;
  int64_t context_tokens = 0;  // per sequence
  int64_t sequences = 1;       // sequences the caller wants to run at once
  WorkspaceReserve workspace = WorkspaceReserve::Fraction(0.10);
};

// Everything `kvstack size` reports. Byte counts are exact; "per GPU" values
// apply to each of the `gpus` GPUs alike.
struct SizingReport {
  ModelSpec model;
  GpuSpec gpu;
  SizingOptions options;

  // KV per token. Under tensor parallelism GQA splits KV heads across GPUs
  // (replicating them when there are fewer heads than GPUs); the MLA latent is
  // not split, every GPU keeps all of it.
  int64_t kv_values_per_token = 0;       // whole model, all layers
  int64_t kv_bytes_per_token = 0;        // whole model, summed over GPUs' distinct heads
  int64_t kv_heads_per_gpu = 0;          // GQA only; 0 for MLA
  int64_t kv_bytes_per_token_per_gpu = 0;

  // One sequence of options.context_tokens (capped by a sliding window).
  int64_t tokens_per_sequence = 0;
  int64_t kv_bytes_per_sequence = 0;  // whole model
  int64_t kv_bytes_per_sequence_per_gpu = 0;

  // Memory of each GPU.
  int64_t weight_bytes = 0;          // parameters x bytes per weight, whole model
  int64_t weight_bytes_per_gpu = 0;  // weight_bytes / gpus, rounded up
  int64_t hbm_bytes_per_gpu = 0;
  int64_t workspace_bytes_per_gpu = 0;
  int64_t kv_budget_bytes_per_gpu = 0;   // HBM - weights - workspace, or 0
  int64_t shortfall_bytes_per_gpu = 0;   // how far weights + workspace exceed HBM, or 0
  bool weights_fit = false;

  // Capacity. Each token occupies its KV slice on every GPU of the group.
  int64_t tokens_that_fit = 0;
  int64_t sequences_that_fit = 0;  // of tokens_per_sequence each

  // The caller's footprint: options.sequences x tokens_per_sequence tokens.
  // Saturates at INT64_MAX for absurd requests (which then do not fit).
  int64_t requested_kv_bytes = 0;  // whole model
  int64_t requested_kv_bytes_per_gpu = 0;
  bool requested_fits = false;

  // Things the numbers do not show: context past the model's maximum, KV
  // heads replicated by tensor parallelism, fp8 on a GPU without fp8 cores.
  std::vector<std::string> notes;
};

// On failure: kInvalidArgument for gpus < 1, a tensor-parallel degree that does
// not divide the attention heads (or the KV heads, or is not a multiple of
// them), context_tokens < 1, sequences < 1, a workspace fraction outside
// [0, 1) or workspace bytes >= HBM; or a ValidateModelSpec/ValidateGpuSpec
// error. Weights that do not fit are not an error: weights_fit is false.
Result<SizingReport> ComputeSizing(const ModelSpec& model, const GpuSpec& gpu,
                                   const SizingOptions& options);

// The report as a JSON document (pretty-printed), for `kvstack size --json`.
std::string SizingReportToJson(const SizingReport& report);
// A spec as a JSON object in the preset file format (round-trips through
// LoadModelPreset / LoadGpuPreset).
std::string ModelSpecToJson(const ModelSpec& model);
std::string GpuSpecToJson(const GpuSpec& gpu);
// {"models": [...], "gpus": [...]}, each entry in the preset file format.
std::string CatalogToJson(const PresetCatalog& catalog);

}  // namespace kvstack::sizing
