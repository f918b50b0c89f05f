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
// blocks for the batch's positions are allocated.
//
// Quantized KV (int8, fp8, int4 K or V): each table comes with its
// sequence's KvResidual (kv_residual.h), and a table's tokens in the batch
// are its next positions, consecutive and in order. A token's K and V go to
// the residual until its block is full; the step that fills a block
// quantizes it whole into the arena. A token reads its own block at f16 and
// every block below it quantized, whichever step computed them, so its
// logits, every block's bytes and the residual do not depend on how the
// sequence's tokens were split into steps. Thread safety: one thread
// drives a Forward; it parallelises internally on the pool.
#pragma once

#include <span>
#include <utility>
#include <vector>

#include "engine/kv_residual.h"
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
  // Per table, its sequence's residual: required (one per table, non-null)
  // when K or V is quantized, ignored otherwise.
  std::vector<KvResidual*> residuals;
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
  // Cuts the batch into attention items (attention_items_), once per pass.
  void PlanAttention(const ForwardBatch& batch);
  void StoreKv(const ForwardBatch& batch, int layer);
  // Quantized parts: residual rows, and whole blocks once full.
  void StoreQuantizedKv(const ForwardBatch& batch, int layer, KvPart part);
  // Checks the quantized-KV REQUIRES and fills extents_.
  Status PlanResiduals(const ForwardBatch& batch);

  const LlamaModel& model_;
  KvArena* arena_;
  kernels::ThreadPool* pool_;
  kernels::MatMulPrecision precision_;
  std::vector<double> inv_freq_;  // per rotated pair

  // Per table of the batch (quantized KV only): its tokens' first position,
  // one past its last, and the batch index of its first token.
  struct Extent {
    int32_t begin = 0, end = 0;
    size_t first = 0;
    size_t stage = 0;  // its first block's index in stage_
  };
  std::vector<Extent> extents_;
  // This layer's f16 rows of every block the batch writes: [block][K, V]
  // [kv head][block_size][head_dim], blocks per table in extents_ order.
  std::vector<uint16_t> stage_;
  size_t stage_head_ = 0;  // block_size * head_dim
  // Where one head of one of a table's blocks starts in stage_.
  size_t StageOffset(size_t table, int32_t block, KvPart part, int kv_head) const;
  // Attention's unit of work: tokens [token_begin, token_end) of the batch,
  // one table's and at most kAttentionTile of them, with query heads
  // [head_begin, head_end) of one KV head's group; each block of K and V is
  // widened once per item instead of once per token and head.
  static constexpr size_t kAttentionTile = 32;
  struct AttentionItem {
    size_t token_begin, token_end;
    int head_begin, head_end;
  };
  std::vector<AttentionItem> attention_items_;
  std::vector<std::pair<size_t, size_t>> attention_tiles_;  // PlanAttention's scratch: [begin, end) of the batch
  // Scratch, sized to the largest batch seen.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, ffn_, out_rows_;
  std::vector<float> block_rows_;  // one head of a block being quantized
};

// Shared by Forward and tests: RMS-normalises n values with weights.
void RmsNorm(const float* x, const float* w, int n, float eps, float* out);
// Rotates one head's vector in place for position pos.
void ApplyRope(float* v, int head_dim, int n_rot, RopeStyle style, const std::vector<double>& inv_freq, int pos);
// Inverse frequencies of the rotated pairs: base^(-2i/n_rot) / factor[i].
std::vector<double> RopeInverseFrequencies(const LlamaModel& model);

}  // namespace kvstack::engine
