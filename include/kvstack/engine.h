// Engine: runs a Llama-family GGUF model on the CPU over kvstack's paged KV
// cache, serving many requests at once with continuous batching.
//
// Submit() queues a request; each Step() runs one batch (decode tokens of
// running requests mixed with chunks of prompts, within a token budget) and
// reports, per request, the tokens it produced and the text they decode to,
// and whether it finished. Prompt prefixes already in the KV cache (same
// model, same cache_salt) are not recomputed. When KV blocks run out a request
// is preempted and recomputed later; the engine never fails for lack of KV
// memory. Cancel() ends a request at any point and frees its blocks.
// A request may ask for n choices (its prompt computed once, then forked in
// the KV cache), the log-probabilities of its tokens (from the raw logits) and
// of its prompt's tokens (teacher forced: scoring a text).
//
// Callers: `kvstack generate`, `kvstack serve`, benchmarks.
// Thread safety: none. One thread drives Submit/Cancel/Step; a server hands
// work to that thread through a queue.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstack/clock.h"
#include "kvstack/histogram.h"
#include "kvstack/kernels.h"
#include "kvstack/kv_cache.h"
#include "kvstack/sampler.h"
#include "kvstack/status.h"
#include "kvstack/tier_chain.h"

namespace kvstack {

class Tokenizer;

struct EngineOptions {
  std::string model_path;          // a GGUF file (llama or qwen2)
  int threads = 0;                 // kernel threads; 0: one per CPU
  // Quantized weights multiply 8-bit activations with integer dot products,
  // as llama.cpp does; kExactFloat (`--exact-matmul`) keeps the float
  // products the naive reference checks (kernels.h, MatMulPrecision).
  kernels::MatMulPrecision matmul_precision = kernels::MatMulPrecision::kInt8Activations;
  int32_t block_size = 16;         // tokens per KV block, a power of two 1..512
  int64_t kv_memory_bytes = 256ll << 20;  // KV pool size
  int32_t num_blocks = 0;          // if > 0, the pool size in blocks instead
  KvDType kv_dtype = KvDType::kF16;      // K's type, and V's unless kv_dtype_v is set
  std::optional<KvDType> kv_dtype_v;     // V's type where it differs (kv_arena.h)
  int32_t max_batch_tokens = 256;  // token budget per step
  int32_t max_running = 64;        // sequences per batch
  int32_t max_context = 0;         // 0: the model's training context
  std::string eviction_policy = "priority-lru";
  double max_pinned_fraction = 0.5;
  size_t event_buffer_limit = 0;   // KV events kept for a router (0: off)
  uint64_t hash_seed = 0;
  const Clock* clock = nullptr;    // nullptr: the steady clock

  // Tiers below the device pool (host RAM, disk, Redis; see tier_chain.h).
  // Called once the model is loaded, with the bytes of one KV block and the
  // cache identity (EngineInfo::cache_identity: the model's plus the KV
  // layout; remote keys and disk folders carry it). Unset, or returning a null
  // chain: no tiers. An error fails Create().
  std::function<Result<std::unique_ptr<TierChain>>(size_t block_bytes, const std::string& model_identity)>
      make_tiers;
  // Tiers store offloaded blocks in this type instead of the device's
  // (`--tier-kv-type int8`: half the bytes of f16 moved and stored), widened
  // back on onboarding. Off by default: onboarded KV then differs from
  // computed KV (BENCHMARKS.md measures by how much). Needs float device KV
  // and a narrower type; the tiers' keys carry the tier layout, so tiers
  // shared with servers that store other layouts never mix them.
  std::optional<KvDType> tier_kv_dtype;
  // Onboard a tier's blocks only while its measured bandwidth beats
  // recomputing them at the measured prefill rate.
  bool onboard_only_when_faster = true;
};

// What the engine did with its tiers (all zero without tiers).
struct OnboardMetrics {
  uint64_t offloaded_blocks = 0;        // evicted blocks the tiers kept
  uint64_t offload_skipped_blocks = 0;  // evicted blocks below the offload gate
  uint64_t offload_refused_blocks = 0;  // the fastest tier stored nothing
  uint64_t prefetch_requests = 0;       // queued requests whose blocks moved up early
  uint64_t prefetched_blocks = 0;
  uint64_t onboard_requests = 0;        // admissions that fetched blocks from a tier
  uint64_t onboard_blocks_requested = 0;
  uint64_t onboarded_blocks = 0;        // arrived verified and used
  // Of the requested, those already in the fastest tier (host RAM) when the
  // request was admitted: prefetch timeliness = timely / requested.
  uint64_t timely_blocks = 0;
  uint64_t recompute_chosen_blocks = 0;  // held by a tier, computed: faster than fetching
  // Requests that ended while their reads ran, whose blocks stayed held
  // (not reused) until the reads stopped.
  uint64_t abandoned_fetches = 0;
  Histogram wait_us = Histogram::Decades125(10, 1e8);  // admitted requests waiting for blocks
  double recompute_tokens_per_s = 0;     // the measured prefill rate the choice used
};

struct GenerationRequest {
  std::vector<Token> prompt;       // token ids, BOS included if wanted
  SamplingParams sampling;
  std::string cache_salt;          // tenant: prefixes shared only within it
  RetentionSpec retention;
  Priority priority = kDefaultPriority;  // preemption: lowest goes first
  bool ignore_eos = false;         // keep going past end-of-generation tokens (benchmarks)
  // A conversation. With tiers, its context at the end of this request is
  // remembered, so PrefetchSession() can bring it up before the next turn.
  std::string session_id;

  // Parallel sampling: n choices (1..kMaxChoices) of one prompt. The prompt
  // is computed once; at its first sample the sequence is forked
  // (KvCache::Fork), so every choice shares the prompt's blocks and decodes on
  // its own sequence (a shared partial tail block is copied on first append).
  // Choice i samples with ChoiceSeed(sampling.seed, i): choice 0 with the seed
  // itself, so it is what n = 1 would give.
  int32_t n = 1;
  // -1: off. 0..kMaxLogprobs: each generated token's log-probability (from
  // the raw logits, see ComputeLogprobs) with this many alternatives.
  int32_t logprobs = -1;
  // -1: off. 0..kMaxLogprobs: the log-probabilities of the prompt's tokens
  // 1..end, teacher forced, with this many alternatives. Every prompt position
  // is computed: prefix-cache hits hold KV but no logits, so such a request
  // takes no hits (its blocks still enter the cache). With it, max_tokens may
  // be 0: the prompt is scored and nothing is generated (finish kLength).
  int32_t prompt_logprobs = -1;
};

inline constexpr int32_t kMaxChoices = 128;

// The seed choice `choice` of a request samples with (SplitMix64 of the pair
// for choices above 0): equal seeds give equal choices on every run.
uint64_t ChoiceSeed(uint64_t seed, int32_t choice);

enum class FinishReason : uint8_t { kNone, kStop, kLength, kCancelled };
std::string_view FinishReasonName(FinishReason r);  // "stop", "length", "cancelled"

// Per-request figures, final when the request finishes.
struct RequestMetrics {
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;   // prompt tokens served by the prefix cache (tiers included)
  int32_t onboarded_tokens = 0;  // of those, brought up from a tier below the device pool
  // The key of the last cached block that served the prompt (zero when none):
  // names the reused prefix without revealing its text.
  BlockHash hit_prefix;
  int32_t generated_tokens = 0;
  int32_t preemptions = 0;
  Micros queued_at = 0;
  Micros first_token_at = 0;   // 0 until the first token
  Micros finished_at = 0;
};

using RequestId = uint64_t;

// One choice's progress in one step. With n = 1 every event is choice 0 and
// the event with a finish reason is the request's last (request_finished).
// With n > 1 each choice finishes on its own; request_finished marks the
// last event of the last choice.
struct GenerationEvent {
  RequestId id = 0;
  std::vector<Token> tokens;   // produced this step (zero or one)
  std::string text;            // newly printable text (complete UTF-8, stop strings withheld)
  FinishReason finish = FinishReason::kNone;  // this choice's
  RequestMetrics metrics;      // this choice's (prompt figures shared by all)
  int32_t choice = 0;
  std::vector<PositionLogprobs> logprobs;  // parallel to tokens, with GenerationRequest::logprobs
  // With prompt_logprobs: prompt tokens 1..end, once, in choice 0's event of
  // the step that finished the prompt.
  std::vector<PositionLogprobs> prompt_logprobs;
  bool request_finished = false;
};

struct EngineInfo {
  std::string model_identity;
  // The model's identity plus the KV layout (types, block size, heads, head
  // dim): what block keys root in (ExtraKeys::model_id) and what prefixes the
  // tiers' keys, so blocks of different layouts never meet in any tier.
  std::string cache_identity;
  std::string kv_types;  // "f16", "int8", "k=int8,v=int4"
  // What the tiers store: kv_types unless EngineOptions::tier_kv_dtype
  // converts (empty without tiers), and the bytes of one block there.
  std::string tier_kv_types;
  size_t tier_block_bytes = 0;
  uint64_t hash_seed = 0;  // EngineOptions::hash_seed: a router keys requests with it too
  std::string architecture;
  int32_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0;
  // The most tokens one request may hold (prompt + generated): the smallest of
  // the model's context, EngineOptions::max_context and the whole KV pool.
  int32_t n_ctx = 0;
  size_t weight_bytes = 0;
  size_t kv_bytes_per_token = 0;
  int threads = 0;
  std::string cpu_level;
  kernels::MatMulPrecision matmul_precision = kernels::MatMulPrecision::kInt8Activations;
};

class Engine {
 public:
  // Loads the model and tokenizer and sizes the KV pool. Errors name the file,
  // tensor or option that is wrong.
  static Result<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();

  // InvalidArgument for a bad request (empty prompt, token ids outside the
  // vocabulary, a prompt longer than the context, bad sampling parameters, n
  // or logprobs out of range, max_tokens 0 without prompt_logprobs).
  Result<RequestId> Submit(GenerationRequest request);
  // Ends the request, every choice of it, now (final events with kCancelled
  // come from the next Step). NotFound if it is unknown or already finished.
  Status Cancel(RequestId id);
  // Runs one batch. Appends events for every request that produced a token or
  // finished. OK with no events when idle.
  Status Step(std::vector<GenerationEvent>* events);
  bool HasWork() const;

  const Tokenizer& tokenizer() const;
  KvCache& cache();
  const EngineInfo& info() const;
  uint64_t preemptions() const;
  // Batches run so far (steps that computed something; an idle step or one
  // that only waited for tier reads is not one).
  uint64_t batches() const;
  // Wall time of each of those batches' Step calls, in seconds (planning,
  // the forward pass, sampling): what `kvstack sim --profile` models a step
  // as, measured where it runs.
  const Histogram& step_seconds() const;
  // Bytes of activation scratch and logits the forward pass holds now (their
  // high-water mark: buffers grow to the largest batch and stay), and with
  // quantized KV each live request's f16 residual (one block: the partial
  // block waits there until it is full and quantized whole).
  size_t workspace_bytes() const;
  // A conversation is coming back (its session_id was seen before): starts
  // moving the blocks of its last context that sit below host RAM up into
  // it, ahead of the next turn. Returns how many blocks were looked for.
  // FailedPrecondition without tiers; NotFound for a session not remembered
  // (the engine keeps the last 1,024 sessions).
  Result<int32_t> PrefetchSession(const std::string& session_id);

  // Null without tiers. The chain's own per-tier metrics are chain()->Metrics().
  TierChain* tiers();
  OnboardMetrics onboard_metrics() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstack
