// Scheduler: continuous batching over the paged KV cache.
//
// Each step has a token budget. Running requests come first, oldest first: a
// decoding request contributes its one new token, a request still in its
// prompt a chunk of it (chunked prefill). Then waiting requests are admitted
// in arrival order (preempted ones first) while budget, batch slots and KV
// blocks last: admission plans against the prefix cache, so cached prompt
// tokens are never recomputed, and reserves the prompt's blocks
// all-or-nothing. When a decoding request needs a block and none is free, a
// running request is preempted (lowest priority, then newest): its blocks are
// released and it waits to be recomputed later, often largely from the prefix
// cache. The KV cache never runs out: it is a scheduling decision.
//
// With a BlockOnboarder (the tiers), a waiting request's blocks are
// prefetched when it is queued, and an admitted request whose next prompt
// blocks some tier holds waits in kOnboarding (holding its blocks, counted
// against max_running) until they arrive; then it runs from there.
//
// The scheduler owns no model: Engine runs the forward pass on the plan and
// reports back with Computed() and Finish().
// Thread safety: none; the engine step loop owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <absl/container/node_hash_map.h>
#include <absl/functional/function_ref.h>

#include "kvstack/kv_cache.h"
#include "engine/block_onboarder.h"

namespace kvstack::engine {

using RequestId = uint64_t;

// kWaiting -> kRunning (admitted), or -> kOnboarding (admitted, its next
// blocks coming up from a tier) -> kRunning; kRunning -> kWaiting (preempted).
// Finish() from any state forgets the request; one finished in kOnboarding
// leaves its sequence in draining_ until its reads stop.
enum class RequestState : uint8_t { kWaiting, kOnboarding, kRunning, kFinished };

// A request as the scheduler tracks it.
struct ScheduledRequest {
  RequestId id = 0;
  std::vector<Token> tokens;  // prompt, then generated tokens
  int32_t prompt_len = 0;
  int32_t computed = 0;       // leading tokens whose KV is computed
  // Leading tokens the cache holds (its token and computed counts). The rest
  // of `tokens` go to the cache with the next step that runs the request:
  // the last sampled token, and, for a decoding request, those a step or
  // stretch left out because they fill no block and take none
  // (DefersToTail; then the cache lags `computed` too). So most decoding
  // steps cost the cache nothing, and most of a stretch is arithmetic.
  int32_t in_cache = 0;
  bool forked = false;        // shares blocks with a fork (copy-on-write): its stretches append at once
  Priority priority = kDefaultPriority;
  ExtraKeys keys;
  RetentionSpec retention;
  RequestState state = RequestState::kWaiting;
  std::optional<SequenceId> seq;
  int32_t cached_tokens = -1;  // prompt tokens served by the cache at first admission
  int32_t device_hit_tokens = -1;  // of those, by the device prefix cache (the rest came from tiers)
  BlockHash hit_prefix;        // key of the last hit block at first admission
  int32_t onboarded_tokens = 0;  // prompt tokens brought up from a tier (all admissions)
  int32_t preemptions = 0;
  bool skip_prefix_hits = false;  // computes every prompt position (prompt logprobs)
};

// One request's share of a step: tokens [begin, begin + count) of its tokens.
struct ScheduledChunk {
  RequestId id = 0;
  int32_t begin = 0;
  int32_t count = 0;
  bool want_logits = false;  // the chunk reaches the last known token
  // The request itself, valid until it is finished: a caller reporting back
  // on every chunk of every step need not look each one up.
  ScheduledRequest* request = nullptr;
};

struct SchedulerOptions {
  int32_t max_batch_tokens = 256;  // token budget per step
  int32_t max_running = 64;        // sequences in one batch
};

struct SchedulerStats {
  uint64_t preemptions = 0;
  uint64_t steps = 0;
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t onboarding = 0;
};

class Scheduler {
 public:
  // `onboarder` is optional (no tiers) and must outlive the scheduler.
  Scheduler(KvCache* cache, const SchedulerOptions& options, BlockOnboarder* onboarder = nullptr);

  // Queues a request. InvalidArgument when it can never run: an empty prompt
  // or more tokens than the whole pool holds. AlreadyExists for a reused id.
  Status Add(ScheduledRequest request);

  // Plans the next step (admission, appends and preemption happen here).
  // Empty when there is nothing to run.
  std::vector<ScheduledChunk> Schedule();

  // The chunk's tokens now have KV in the cache (full blocks enter the prefix
  // cache).
  void Computed(const ScheduledChunk& chunk);

  // Adds a sampled token to a running request.
  void AppendToken(RequestId id, Token token);
  void AppendToken(const ScheduledChunk& chunk, Token token) { chunk.request->tokens.push_back(token); }

  // Parallel sampling: a new running request `child` sharing every block and
  // token of running request `parent` (KvCache::Fork: no KV is copied now; a
  // shared partial tail is copied when either appends). It runs beside the
  // parent even past max_running: the choices of one request stay together.
  // REQUIRES: parent is running and child is a new id.
  void Fork(RequestId parent, RequestId child);

  // Ends a request at any point (finished, cancelled, failed): its blocks are
  // released, at once or, for a request whose blocks were still being read
  // from a tier, at the first step after the reads stop (never waiting for
  // them here). NotFound for an unknown or already finished id.
  Status Finish(RequestId id);

  // Stretches, for a caller with no forward pass to wait for (the simulator
  // jumps over them instead of stepping through each one). A stretch is a
  // run of steps whose plans are alike: every running request computed up
  // to its last token decodes one token, and at most one request in the
  // middle of its prompt (after them in admission order) takes the rest of
  // the budget every step without reaching its last token; nothing else runs
  // and nothing is admitted: none onboarding, no background read in flight,
  // and either the prompt chunk uses the whole budget or no waiting request
  // is admissible (no slot or budget left, or its blocks do not fit; appends
  // only shrink what is available, so that holds for the whole stretch).
  struct Stretch {
    int64_t steps = 0;       // 0: the next step is not part of a stretch
    int32_t decoding = 0;    // running requests that decode a token each step
    std::optional<RequestId> prompt;  // the request whose prompt advances
    int32_t chunk = 0;       // its tokens per step
  };
  // How many more tokens a decoding request will take (the caller finishes
  // it after the last): a stretch ends at the first to finish.
  using StepsLeft = absl::FunctionRef<int64_t(const ScheduledRequest&)>;
  // The longest stretch from here, of at most `max_steps` and at most each
  // decoding request's `steps_left`, that the pool holds without preempting.
  Stretch PlanStretch(int64_t max_steps, StepsLeft steps_left = NoLimit) const;
  static int64_t NoLimit(const ScheduledRequest&) { return std::numeric_limits<int64_t>::max(); }
  // Appends `count` sampled tokens to `tokens` (a request's tokens so far),
  // in step order.
  using Sampler = absl::FunctionRef<void(RequestId id, int64_t count, std::vector<Token>& tokens)>;
  // Runs a stretch (from PlanStretch, nothing changed since) at once, one
  // Sampler call per decoding request: the state after is what Schedule(),
  // Computed() and AppendToken() one step at a time would have left (blocks
  // held, prefix-cache content, evictions, tokens and step count alike; only
  // the order in which blocks left the free list differs).
  void RunStretch(const Stretch& stretch, Sampler sample);

  // Admission order (the order Schedule() serves them in).
  std::span<const ScheduledRequest* const> running_requests() const { return running_; }
  // Their ids, in that order (a copy, for tests and diagnostics).
  std::vector<RequestId> running() const;
  // Queue order (preempted requests first).
  const std::deque<RequestId>& waiting() const { return waiting_; }
  const ScheduledRequest* Find(RequestId id) const;
  std::span<const BlockId> BlockTable(RequestId id) const;
  bool HasWork() const {
    return !running_.empty() || !waiting_.empty() || !onboarding_.empty() || !draining_.empty() ||
           (onboarder_ && onboarder_->Busy());
  }
  SchedulerStats stats() const;

 private:
  bool Admit(ScheduledRequest& r);
  // Moves requests whose onboarding finished to running.
  void FinishOnboarding();
  // Frees a running request's blocks and sends it back to wait. Returns false
  // when no request other than `keep` can be preempted.
  bool PreemptFor(RequestId keep, std::vector<ScheduledChunk>* plan);
  AdmissionRequest MakeAdmission(const ScheduledRequest& r) const;
  // Whether r's KV can reach `tokens` while the cache goes on holding only
  // r.in_cache of them: the rest stay inside the cache's partial last block,
  // so handing them over neither takes a block nor completes one, and
  // nothing the pool, the prefix cache or its events show would change.
  // They go to the cache when a later step or stretch crosses a block.
  bool DefersToTail(const ScheduledRequest& r, int64_t tokens) const;

  KvCache* cache_;
  SchedulerOptions options_;
  BlockOnboarder* onboarder_;
  std::vector<RequestId> onboarding_;  // admission order
  // Ended mid-fetch, their reads still writing into their blocks: the
  // sequences are released once BlockOnboarder::Draining() is false.
  struct Draining {
    RequestId id;
    SequenceId seq;
  };
  std::vector<Draining> draining_;
  void ReleaseDrained();
  absl::node_hash_map<RequestId, ScheduledRequest> requests_;  // node-based: references stay valid
  // Admission order. Pointers into requests_ (node-based: the addresses
  // hold), so a stretch walks them without a lookup each.
  std::vector<ScheduledRequest*> running_;
  std::vector<ScheduledRequest*> running_copy_;  // Schedule()'s, kept for its capacity
  void RemoveRunning(RequestId id);
  std::deque<RequestId> waiting_;   // preempted ones at the front
  uint64_t preemptions_ = 0;
  uint64_t steps_ = 0;
  // PlanStretch's scratch: what each decoding request needs (no allocation per call).
  struct StretchNeed {
    int64_t known, blocks;
    int32_t copy;
  };
  mutable std::vector<StretchNeed> needs_;
};

}  // namespace kvstack::engine
