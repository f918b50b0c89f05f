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
//
// Callers: `kvstack generate`, `kvstack serve`, benchmarks.
// Thread safety: none. One thread drives Submit/Cancel/Step; a server hands
// work to that thread through a queue.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstack/clock.h"
#include "kvstack/kv_cache.h"
#include "kvstack/sampler.h"
#include "kvstack/status.h"

namespace kvstack {

class Tokenizer;

struct EngineOptions {
  std::string model_path;          // a GGUF file (llama or qwen2)
  int threads = 0;                 // kernel threads; 0: one per CPU
  int32_t block_size = 16;         // tokens per KV block, a power of two 1..512
  int64_t kv_memory_bytes = 256ll << 20;  // KV pool size
  int32_t num_blocks = 0;          // if > 0, the pool size in blocks instead
  KvDType kv_dtype = KvDType::kF16;
  int32_t max_batch_tokens = 256;  // token budget per step
  int32_t max_running = 64;        // sequences per batch
  int32_t max_context = 0;         // 0: the model's training context
  std::string eviction_policy = "priority-lru";
  double max_pinned_fraction = 0.5;
  size_t event_buffer_limit = 0;   // KV events kept for a router (0: off)
  uint64_t hash_seed = 0;
  const Clock* clock = nullptr;    // nullptr: the steady clock
};

struct GenerationRequest {
  std::vector<Token> prompt;       // token ids, BOS included if wanted
  SamplingParams sampling;
  std::string cache_salt;          // tenant: prefixes shared only within it
  RetentionSpec retention;
  Priority priority = kDefaultPriority;  // preemption: lowest goes first
  bool ignore_eos = false;         // keep going past end-of-generation tokens (benchmarks)
};

enum class FinishReason : uint8_t { kNone, kStop, kLength, kCancelled };
std::string_view FinishReasonName(FinishReason r);  // "stop", "length", "cancelled"

// Per-request figures, final when the request finishes.
struct RequestMetrics {
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;   // prompt tokens served by the prefix cache
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

struct GenerationEvent {
  RequestId id = 0;
  std::vector<Token> tokens;   // produced this step (zero or one)
  std::string text;            // newly printable text (complete UTF-8, stop strings withheld)
  FinishReason finish = FinishReason::kNone;
  RequestMetrics metrics;
};

struct EngineInfo {
  std::string model_identity;
  std::string architecture;
  int32_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0;
  // The most tokens one request may hold (prompt + generated): the smallest of
  // the model's context, EngineOptions::max_context and the whole KV pool.
  int32_t n_ctx = 0;
  size_t weight_bytes = 0;
  size_t kv_bytes_per_token = 0;
  int threads = 0;
  std::string cpu_level;
};

class Engine {
 public:
  // Loads the model and tokenizer and sizes the KV pool. Errors name the file,
  // tensor or option that is wrong.
  static Result<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();

  // InvalidArgument for a bad request (empty prompt, token ids outside the
  // vocabulary, a prompt longer than the context, bad sampling parameters).
  Result<RequestId> Submit(GenerationRequest request);
  // Ends the request now (a final event with kCancelled comes from the next
  // Step). NotFound if it is unknown or already finished.
  Status Cancel(RequestId id);
  // Runs one batch. Appends events for every request that produced a token or
  // finished. OK with no events when idle.
  Status Step(std::vector<GenerationEvent>* events);
  bool HasWork() const;

  const Tokenizer& tokenizer() const;
  KvCache& cache();
  const EngineInfo& info() const;
  uint64_t preemptions() const;
  // Bytes of activation scratch and logits the forward pass holds now (their
  // high-water mark: buffers grow to the largest batch and stay).
  size_t workspace_bytes() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstack
