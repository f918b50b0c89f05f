// Model generation: synthetic Llama-family GGUF models (`kvstack gen-model`).
//
// A GenModelSpec describes a model's shape (layers, widths, heads, context),
// its weight type and a seed; WriteGenModel turns it into a GGUF file that
// llama.cpp and kvstack both load: tensors named and shaped as llama.cpp's
// converter names them, the `{arch}.*` hyperparameter keys, and a small
// byte-level SentencePiece-style vocabulary (3 special tokens, the 256 byte
// tokens, a few hundred English pieces, and the ChatML control tokens with a
// ChatML chat template) so any text tokenizes and chat prompts render. The
// weights are pseudo-random but a pure function of the seed and the tensor's
// name (never of the type or the write order), scaled by 1/sqrt(fan_in) so
// activations stay in range and outputs are not degenerate: the same spec
// always gives the same bytes, on any machine. Quantized types go through
// kernels::QuantizeRow.
//
// Callers: the CLI, tests and benchmarks that need a model of a given shape,
// and the demo path when no model is given.
// Thread safety: the functions are pure apart from writing the file; the
// vocabulary returned by GenModelVocab is immutable.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/gguf_writer.h"
#include "kvstack/status.h"

namespace kvstack {

// Llama 3's frequency-dependent RoPE scaling. llama.cpp's converter stores it
// as the tensor rope_freqs.weight (one divisor per rotated dimension pair),
// not as metadata, and so does the generator.
struct Llama3RopeScaling {
  float factor = 32.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  uint32_t original_context = 8192;
};

struct GenModelSpec {
  std::string architecture = "llama";  // "llama" or "qwen2" (adds q/k/v biases)
  std::string name;                    // general.name; empty: derived from the shape
  int n_layer = 2;
  int n_embd = 64;
  int n_head = 4;
  int n_head_kv = 2;
  int head_dim = 0;  // 0: n_embd / n_head (then n_head must divide n_embd)
  int n_ff = 128;
  int n_ctx = 512;  // {arch}.context_length
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  std::optional<Llama3RopeScaling> rope_scaling;  // llama only
  bool tied_embeddings = false;  // no output.weight: the output reuses token_embd
  // Of every matrix, token_embd and output included; norms, biases and
  // rope_freqs are always F32. One of F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
  GgmlType weight_type = GgmlType::kF32;
  uint64_t seed = 0;

  // head_dim, or its default.
  int HeadDim() const;
  // OK, or InvalidArgument naming the field and its value and what it must be
  // ("n_embd 100: must be a multiple of 32, the Q8_0 block (weight rows are
  // whole blocks)"). Also bounds the sizes so no count overflows.
  Status Validate() const;
};

// Named shapes: "tiny" (2 layers, 64 wide: unit tests), "stories" (the
// stories15M shape: 6 layers, 288 wide, 6 heads), "llama-3.2-1b-shape" (16
// layers, 2048 wide, 32 heads, 8 KV heads, head dim 64, ff 8192, tied, rope
// base 500000 with Llama 3 scaling; context 4096 unless the caller raises it,
// up to the real model's 131072). NotFound listing the names otherwise.
Result<GenModelSpec> GenModelPreset(std::string_view name);
std::span<const std::string_view> GenModelPresetNames();

// The vocabulary every generated model carries.
struct GenModelVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> token_types;  // llama.cpp's: 1 normal, 2 unknown, 3 control, 6 byte
  int32_t unk_id = 0, bos_id = 1, eos_id = 2;
  int32_t im_start_id = 0, im_end_id = 0;  // ChatML; im_end is also the end-of-turn token
  std::string chat_template;               // ChatML, as Jinja
};
const GenModelVocab& GetGenModelVocab();

struct GenModelProgress {
  std::string_view tensor;  // the tensor just written
  size_t tensors_done = 0;
  size_t tensors_total = 0;
  uint64_t bytes_done = 0;  // tensor bytes, unpadded
  uint64_t bytes_total = 0;
};
using GenModelProgressFn = std::function<void(const GenModelProgress&)>;

// The model as a GgufWriter whose tensors are generated when it writes.
// Fails with the spec's Validate error.
Result<GgufWriter> BuildGenModel(const GenModelSpec& spec, GenModelProgressFn progress = {});

// BuildGenModel, then GgufWriter::WriteFile (atomic). Fails as those do.
Status WriteGenModel(const GenModelSpec& spec, const std::string& path, GenModelProgressFn progress = {});

}  // namespace kvstack
