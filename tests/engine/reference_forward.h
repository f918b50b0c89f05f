// A naive reference forward pass, for tests only: one sequence, contiguous
// K/V, plain loops, double accumulation, weights through the scalar reference
// dequantizer. Slow and obviously right; the paged, batched, vectorized
// engine is checked against it.
#pragma once

#include <vector>

#include "engine/llama_model.h"
#include "kvstack/block_hash.h"

namespace kvstack::engine::testing {

class ReferenceForward {
 public:
  explicit ReferenceForward(const LlamaModel& model);

  // Feeds one token at the next position; returns the logits it produces.
  std::vector<double> Step(Token token);
  int position() const { return pos_; }

 private:
  std::vector<double> MatVec(const std::vector<float>& w, int rows, int cols, const std::vector<double>& x) const;

  const LlamaModel& model_;
  // Dequantized weights, row-major [rows][cols].
  std::vector<float> embd_, out_;
  struct Layer {
    std::vector<float> wq, wk, wv, wo, gate, up, down;
  };
  std::vector<Layer> layers_;
  std::vector<std::vector<std::vector<double>>> k_cache_, v_cache_;  // [layer][pos][kv_heads * head_dim]
  int pos_ = 0;
};

}  // namespace kvstack::engine::testing
