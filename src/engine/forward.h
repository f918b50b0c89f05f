// Forward: one step of the model over a batch of tokens from many sequences,
// reading and writing K and V in the paged KV cache.
//
// A batch mixes prefill chunks and decode tokens of any number of sequences.
// Each token names its sequence's block table and its position; the pass
// writes every token's K and V into slot position % B of block
// table[position / B] for each layer, then each token attends over positions
// 0..its own of its sequence, reading K and V straight from the blocks (no
// gather into a contiguous copy). Matrix products run over all tokens at once
// (prefill is a batched product); logits are computed only for the tokens
// that ask for them.
//
// REQUIRES of the caller (the scheduler): every position below a token's
// position is already in the cache or earlier in the same batch, and the
// blocks for the batch's positions are allocated. Thread safety: one thread
// drives a Forward; it parallelises internally on the pool.
#pragma once

#include <span>
#include <vector>

#include "engine/llama_model.h"
#include "kvstack/block_hash.h"
#include "kvstack/kernels.h"
#include "kvstack/kv_arena.h"
#include "kvstack/kv_cache.h"

namespace kvstack::engine {

struct BatchToken {
  Token token = 0;
  int32_t position = 0;
  int32_t table = 0;          // index into ForwardBatch::tables
  bool want_logits = false;
};

struct ForwardBatch {
  std::vector<BatchToken> tokens;
  std::vector<std::span<const BlockId>> tables;
};

class Forward {
 public:
  // REQUIRES: the arena's shape matches the model (layers, KV heads, head dim).
  // `precision` applies to every weight product (kernels.h); the exact float
  // one is what the naive reference forward pass checks.
  Forward(const LlamaModel& model, KvArena* arena, kernels::ThreadPool* pool,
          kernels::MatMulPrecision precision = kernels::MatMulPrecision::kExactFloat);

  // Logits of the tokens with want_logits, in batch order: rows of n_vocab.
  Status Run(const ForwardBatch& batch, std::vector<float>* logits);
  // Bytes of scratch held now (the largest batch seen so far).
  size_t workspace_bytes() const;

 private:
  void EmbedTokens(const ForwardBatch& batch);
  void Attention(const ForwardBatch& batch, int layer);
  void StoreKv(const ForwardBatch& batch, int layer);

  const LlamaModel& model_;
  KvArena* arena_;
  kernels::ThreadPool* pool_;
  kernels::MatMulPrecision precision_;
  std::vector<double> inv_freq_;  // per rotated pair

  // Scratch, sized to the largest batch seen.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, ffn_, out_rows_;
};

// Shared by Forward and tests: RMS-normalises n values with weights.
void RmsNorm(const float* x, const float* w, int n, float eps, float* out);
// Rotates one head's vector in place for position pos.
void ApplyRope(float* v, int head_dim, int n_rot, RopeStyle style, const std::vector<double>& inv_freq, int pos);
// Inverse frequencies of the rotated pairs: base^(-2i/n_rot) / factor[i].
std::vector<double> RopeInverseFrequencies(const LlamaModel& model);

}  // namespace kvstack::engine
