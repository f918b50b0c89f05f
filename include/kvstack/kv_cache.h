// KvCache: the paged KV cache with its prefix cache, for one model instance.
//
// This is the cache core that the engine's scheduler, the simulator and (through
// events) the router and tiers stand on. It owns a pool of fixed-size blocks of
// B tokens, the K/V bytes of those blocks (or none, in metadata-only mode), and
// the sequences that hold them. Full blocks whose KV is computed enter a prefix
// cache keyed by chained 128-bit hashes (see block_hash.h); a later request
// with the same prefix, model and tenant reuses them instead of recomputing.
// When blocks run short, cached blocks are evicted in the policy's order:
// lowest effective retention priority first, least recently used within a
// priority. Pinned blocks (durable context) are never evicted, and pins are
// capped at a share of the pool so they cannot starve live requests.
//
// A request's life:
//   plan = PlanAdmission(req)          side-effect-free: hashes, longest prefix
//                                      hit, blocks needed, whether they fit now
//   id = Admit(req, plan)              all-or-nothing reservation; "not enough
//                                      blocks" is ResourceExhausted, no trace
//   ... engine computes KV into BlockTable(id), then MarkComputed(id, n):
//                                      full computed blocks enter the cache
//   Append(id, tokens)                 decode; new blocks as needed
//   Fork(id)                           parallel sampling: shares all blocks,
//                                      copy-on-write of a shared partial tail
//   Release(id)                        blocks become evictable tail first
//
// Thread safety: none. One thread (the engine step loop, the simulator) owns a
// KvCache; other threads get its events and metrics through that thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/cache_events.h"
#include "kvstack/cache_metrics.h"
#include "kvstack/clock.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/kv_arena.h"
#include "kvstack/status.h"

namespace kvstack {

// A slot in the pool. Block tables are arrays of these.
enum class BlockId : int32_t {};
inline int32_t ToIndex(BlockId b) { return static_cast<int32_t>(b); }

// A sequence held by the cache (a request, or one branch of a fork).
struct SequenceId {
  uint64_t value = 0;
  friend bool operator==(SequenceId, SequenceId) = default;
};

// Tokens [begin, end) of a sequence.
struct TokenRange {
  int32_t begin = 0;
  int32_t end = 0;
};

// TensorRT-LLM's KvCacheRetentionConfig: priorities for ranges of the prompt,
// and one for generated tokens. Tokens outside every range get the cache's
// default priority. A block takes the highest priority among its tokens; after
// `duration` (from when the block is stored or hit) it falls back to the
// default. No duration: the priority holds until the block is evicted.
struct RetentionRange {
  TokenRange tokens;
  Priority priority = kDefaultPriority;
  std::optional<Micros> duration;
};
struct RetentionSpec {
  std::vector<RetentionRange> ranges;
  std::optional<Priority> decode_priority;  // unset: the default priority
  std::optional<Micros> decode_duration;
};

// Told about each cached block the pool is about to evict to make room, while
// its key and KV bytes are still intact: the point where tiers take a copy
// (offload). Not told for ResetPrefixCache(). Called on the cache's thread,
// inside the allocation that evicts; it must not call back into the cache.
class EvictionListener {
 public:
  virtual ~EvictionListener() = default;
  virtual void OnEvicting(BlockId id, const BlockHash& key, Priority priority, uint32_t hits) = 0;
};

struct KvCacheConfig {
  int32_t num_blocks = 0;  // required, >= 1
  // Model shape and KV element type; shape.block_size is B (a power of two,
  // 1..512, default 16). Layers, heads and head_dim may be 0 in metadata-only
  // mode (the simulator needs no bytes per block).
  KvShape shape;
  KvStorageMode storage = KvStorageMode::kAllocate;
  std::string eviction_policy = "priority-lru";  // see eviction_policy.h
  Priority default_priority = kDefaultPriority;
  double max_pinned_fraction = 0.5;  // pins may hold at most this share of blocks
  uint64_t hash_seed = 0;            // equal across processes that share keys
  size_t event_buffer_limit = 0;     // 0: no events; else the most held undrained
  size_t max_tenants_tracked = 256;  // per-tenant metrics; the rest share "(other)"
  const Clock* clock = nullptr;      // nullptr: the steady clock
  EvictionListener* eviction_listener = nullptr;  // optional; must outlive the cache
};

struct AdmissionRequest {
  std::span<const Token> tokens;  // the prompt; must not be empty
  ExtraKeys keys;                 // model, tenant salt, adapter
  RetentionSpec retention;
  int32_t reserve_tokens = 0;     // extra slots to reserve now (e.g. decode)
  // Tokens the sequence is expected to come to hold: room set aside in its
  // token list so appends do not regrow it (a hint; no blocks are taken).
  int32_t token_capacity = 0;
  // No prefix hits: every token is computed (a request that needs the logits
  // of every prompt position, such as scoring a prompt). Its full blocks still
  // enter the prefix cache when computed (as duplicates where already cached).
  bool skip_prefix_hits = false;
};

// The result of PlanAdmission(): what admitting the request would take. The
// summary fields are for the caller; the rest is carried to Admit().
struct AdmissionPlan {
  int32_t num_tokens = 0;
  int32_t hit_blocks = 0;  // longest cached prefix, in blocks
  int32_t hit_tokens = 0;  // hit_blocks * B
  int32_t new_blocks = 0;  // blocks to allocate
  bool fits = false;       // whether new_blocks are available right now

  // Carried to Admit(): keys of every full prompt block, the chain root, and
  // the blocks that held the hit keys when planned (re-verified by Admit()).
  BlockHash root;
  std::vector<BlockHash> hashes;
  std::vector<BlockId> hit_ids;
};

// What a side-effect-free lookup found (router, simulator, tier admission).
struct PrefixMatch {
  int32_t matched_blocks = 0;
  int32_t matched_tokens = 0;
  int32_t full_blocks = 0;  // full blocks in the query
};

struct SequenceInfo {
  int32_t num_tokens = 0;
  int32_t num_prompt_tokens = 0;
  int32_t num_computed_tokens = 0;  // as told by MarkComputed (hits included)
  int32_t hit_tokens = 0;           // served from the cache at admission
  int32_t num_blocks = 0;
  int32_t committed_blocks = 0;     // blocks whose KV is in the prefix cache
  // The block that receives the next token is shared with a fork: the next
  // Append copies it first, taking one block more than its tokens need.
  bool tail_shared = false;
};

// A read-only view of one block, for diagnostics and tests.
struct BlockInfo {
  enum class State : uint8_t { kFree, kInUse, kCached, kPinned } state;
  BlockHash hash;
  uint32_t ref_count;
  uint32_t hit_count;
  uint16_t pin_count;
  Priority priority;  // effective (expiry applied)
};

class KvCache;

// Keeps blocks pinned while it lives (move-only; the destructor unpins).
// REQUIRES: the KvCache outlives the handle.
class PrefixPin {
 public:
  PrefixPin() = default;
  PrefixPin(PrefixPin&& o) noexcept : cache_(o.cache_), id_(o.id_), blocks_(o.blocks_) { o.cache_ = nullptr; }
  PrefixPin& operator=(PrefixPin&& o) noexcept;
  PrefixPin(const PrefixPin&) = delete;
  PrefixPin& operator=(const PrefixPin&) = delete;
  ~PrefixPin() { Release(); }

  bool valid() const { return cache_ != nullptr; }
  uint64_t id() const { return id_; }
  int32_t num_blocks() const { return blocks_; }
  // Unpins now; the handle becomes empty.
  void Release();

 private:
  friend class KvCache;
  PrefixPin(KvCache* cache, uint64_t id, int32_t blocks) : cache_(cache), id_(id), blocks_(blocks) {}
  KvCache* cache_ = nullptr;
  uint64_t id_ = 0;
  int32_t blocks_ = 0;
};

class KvCache {
 public:
  // InvalidArgument names the bad config field; ResourceExhausted when the KV
  // bytes cannot be allocated.
  static Result<std::unique_ptr<KvCache>> Create(const KvCacheConfig& config);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // --- Admission (plan, then apply) ----------------------------------------

  // Hashes the prompt's full blocks and finds the longest cached prefix. The
  // last prompt token is never a hit (its logits are needed), so at most
  // (num_tokens - 1) / B blocks hit; none with skip_prefix_hits. Changes nothing. REQUIRES: tokens not
  // empty (an empty prompt plans zero blocks and Admit() refuses it).
  AdmissionPlan PlanAdmission(const AdmissionRequest& request) const;

  // Reserves the plan's blocks all-or-nothing and creates a sequence. The pool
  // may have changed since the plan: hits are re-checked from the plan's keys
  // (no re-hashing). ResourceExhausted when the blocks are not available now
  // (nothing changed; retry later or preempt); InvalidArgument for a bad
  // request (empty prompt, a retention range out of bounds, a priority over
  // 100, or a plan made for another request).
  Result<SequenceId> Admit(const AdmissionRequest& request, AdmissionPlan plan);

  // --- Running sequences ----------------------------------------------------

  // Adds tokens to a sequence (decode, or a later chunk of a prompt), taking
  // new blocks as needed, all-or-nothing: ResourceExhausted leaves the
  // sequence as it was. A partial tail block shared with a fork is copied
  // first. NotFound for an unknown sequence.
  Status Append(SequenceId id, std::span<const Token> tokens);
  // New blocks an Append of `count` tokens to `id` would take now (a copied
  // shared tail included); 0 for an unknown sequence. Changes nothing.
  int32_t BlocksToAppend(SequenceId id, int32_t count) const;

  // Tells the cache the KV of the first `num_computed_tokens` tokens is written.
  // Full blocks among them enter the prefix cache (BlockStored events), with
  // their retention priority. REQUIRES (else InvalidArgument):
  // previous value <= num_computed_tokens <= num_tokens.
  Status MarkComputed(SequenceId id, int32_t num_computed_tokens);

  // Append(tokens past the sequence's own) then MarkComputed, with one
  // lookup: for a caller that keeps a sequence's whole token list (the
  // scheduler running a stretch). `tokens` is the sequence's list so far
  // (its first num_tokens are taken to be the sequence's, unchecked); the
  // sequence grows to all of them. Errors as Append's, and as
  // MarkComputed's when the append succeeded (the tokens then stay).
  Status Extend(SequenceId id, std::span<const Token> tokens, int32_t num_computed_tokens);

  // A new sequence sharing all of `id`'s blocks and tokens. NotFound for an
  // unknown sequence.
  Result<SequenceId> Fork(SequenceId id);

  // Drops the sequence's references, tail block first, so a shared prefix
  // outlives the tail that only this sequence used. NotFound if unknown.
  Status Release(SequenceId id);

  // The blocks holding the sequence's tokens in order: token t lives in slot
  // t % B of block BlockTable(id)[t / B]. Valid until the next call that
  // changes this sequence. REQUIRES: id is live (aborts otherwise).
  std::span<const BlockId> BlockTable(SequenceId id) const;
  Result<SequenceInfo> Info(SequenceId id) const;

  // --- Prefix cache ----------------------------------------------------------

  // The longest cached prefix of `tokens` under `keys`, full blocks only, walk
  // stopping at the first miss. Changes nothing (no metrics, no LRU touch).
  PrefixMatch Lookup(std::span<const Token> tokens, const ExtraKeys& keys) const;

  // Pins every full block of `tokens`, which must all be cached (compute the
  // prompt first): NotFound says how many are. ResourceExhausted when the pin
  // would exceed the cap (nothing is pinned then).
  Result<PrefixPin> Pin(std::span<const Token> tokens, const ExtraKeys& keys);

  // Drops every cached block (an AllCleared event). FailedPrecondition while
  // any sequence or pin is live.
  Status ResetPrefixCache();

  // Cached blocks in the order they would be evicted, lowest priority and
  // least recently used first (retention expiry applied first).
  std::vector<BlockId> EvictionOrder();

  // --- Storage, events, metrics ---------------------------------------------

  KvArena& arena() { return arena_; }
  const KvArena& arena() const { return arena_; }
  int32_t block_size() const { return config_.shape.block_size; }
  int32_t num_blocks() const { return config_.num_blocks; }
  // Blocks an admission could take now: free plus evictable.
  int32_t num_available_blocks() const;
  const BlockHasher& hasher() const { return hasher_; }
  const KvCacheConfig& config() const { return config_; }

  KvEventBatch DrainEvents() { return events_.Drain(); }
  CacheMetrics Metrics() const;
  BlockInfo DescribeBlock(BlockId block) const;

  // Verifies the pool's invariants and that every block's ref_count equals the
  // number of block-table entries that hold it, every table entry is a live
  // block, and committed prefixes carry the keys their tokens hash to.
  Status CheckInvariants() const;

 private:
  struct Impl;
  friend class PrefixPin;
  explicit KvCache(const KvCacheConfig& config, KvArena arena);
  void Unpin(uint64_t pin_id);

  KvCacheConfig config_;
  BlockHasher hasher_;
  KvArena arena_;
  KvEventLog events_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstack
