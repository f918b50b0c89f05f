// LlamaModel: a Llama-family model's hyperparameters and weights, read in
// place from a memory-mapped GGUF file (llama and qwen2 architectures).
//
// Weights are views into the mapping (no copy); norms, biases and RoPE
// frequency factors are small and copied to float. The model is immutable
// after Load() and safe to share across threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/kernels.h"
#include "kvstack/status.h"

namespace kvstack::engine {

enum class RopeStyle : uint8_t {
  kNormal,  // rotate adjacent pairs (x[2i], x[2i+1]): llama
  kNeox,    // rotate (x[i], x[i + n_rot/2]): qwen2
};

struct LayerWeights {
  std::vector<float> attn_norm;  // n_embd
  kernels::WeightMatrix wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;  // qwen2 only; empty otherwise
  std::vector<float> ffn_norm;
  kernels::WeightMatrix w_gate, w_up, w_down;
};

class LlamaModel {
 public:
  // Opens and validates the file: every tensor the architecture needs exists
  // with the shape the hyperparameters imply and a type the kernels support.
  // Errors name the file, the tensor or key, and what was expected.
  static Result<std::unique_ptr<LlamaModel>> Load(const std::string& path);
  // As Load, over a file already open (the caller keeps it alive).
  static Result<std::unique_ptr<LlamaModel>> FromGguf(std::shared_ptr<const GgufFile> file);

  const LlamaHParams& hparams() const { return hp_; }
  const GgufFile& file() const { return *file_; }
  RopeStyle rope_style() const { return rope_style_; }
  // Per-dimension-pair divisors of the RoPE frequencies (Llama-3 scaling, the
  // rope_freqs tensor); empty when the model has none.
  const std::vector<float>& rope_freq_factors() const { return rope_freq_factors_; }

  // The embedding table: n_vocab rows of n_embd.
  const kernels::WeightMatrix& token_embedding() const { return token_embd_; }
  const std::vector<float>& output_norm() const { return output_norm_; }
  // The output projection (n_vocab x n_embd); the embedding table when tied.
  const kernels::WeightMatrix& output() const { return output_; }
  bool tied_embeddings() const { return tied_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }

  // Bytes of all weight tensors (for bandwidth floors and the memory split).
  size_t weight_bytes() const { return weight_bytes_; }
  // A short identity for prefix-cache keys: name, shape and a digest of the
  // tensor table, so two different files never share cached KV.
  const std::string& identity() const { return identity_; }

 private:
  LlamaModel() = default;
  Status Bind();

  std::shared_ptr<const GgufFile> file_;
  LlamaHParams hp_;
  RopeStyle rope_style_ = RopeStyle::kNormal;
  std::vector<float> rope_freq_factors_;
  kernels::WeightMatrix token_embd_;
  std::vector<float> output_norm_;
  kernels::WeightMatrix output_;
  bool tied_ = false;
  std::vector<LayerWeights> layers_;
  size_t weight_bytes_ = 0;
  std::string identity_;
};

}  // namespace kvstack::engine
