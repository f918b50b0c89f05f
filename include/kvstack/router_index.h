// BlockIndex: which worker of a fleet holds which KV block, in which tier,
// built only from the workers' KV events (never by looking into a cache).
//
// Callers: `kvstack router` (events from ZeroMQ, kv_event_wire.h) and
// `kvstack sim --router kv-aware` (events drained from simulated instances);
// both then score workers with Router (router.h). Nothing in the index is
// trusted for correctness: a stale entry costs a cache miss on the worker,
// never a wrong answer.
//
// Per worker, per block key: the tiers holding it (a mask, a block may sit in
// the device pool and in host RAM at once), its retention priority as
// stored, and possibly a prediction. State of one (worker, key) entry:
//   Held        tiers != 0: some BlockStored confirmed it.
//   Predicted   tiers == 0, predicted_until > now: the router just sent a
//               request with this block to the worker; its BlockStored has
//               not arrived. Counts as a device block until it expires.
//   (absent)    tiers == 0 and the prediction expired or none.
// BlockStored sets a tier bit (and confirms a prediction), BlockRemoved
// clears one, AllBlocksCleared clears one tier (medium given) or every tier
// (no medium: vLLM's meaning, and a restarted worker's first event).
//
// Sequence numbers: each worker's batches must come in order (seq + 1 each
// time). ApplyBatch() refuses a batch past a gap and reports it; the caller
// fills the gap (replay, or a snapshot through ApplySnapshot()) and then
// goes on. A batch below the expected seq (a replay overlapping live
// batches) is ignored.
//
// Foreign workers (another engine, e.g. vLLM, whose hashes are not
// kvstack's): each BlockStored carries its token ids, so the index keys the
// blocks by chaining kvstack's own keys over them, from the parent's key (or
// the root of ExtraKeys{model_id} when there is no parent), and remembers
// foreign hash -> key for BlockRemoved and later parents. Their blocks match
// requests without a tenant salt only.
//
// Thread safety: none; one thread owns an index (the router's event thread,
// the simulator). CheckInvariants() verifies the per-worker counters.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "kvstack/block_hash.h"
#include "kvstack/cache_events.h"
#include "kvstack/clock.h"
#include "kvstack/kv_event_wire.h"
#include "kvstack/status.h"

namespace kvstack {

using WorkerId = int32_t;
inline constexpr int kNumStorageTiers = 4;

// One event in kvstack's keys, as the index applies it.
struct IndexEvent {
  KvEventKind kind = KvEventKind::kBlockStored;
  std::optional<StorageTier> tier;  // AllCleared: nullopt clears every tier
  BlockHash hash;
  Priority priority = kDefaultPriority;
};

// A cache's drained events as the index applies them (what `kvstack sim`
// feeds its index from each simulated instance).
std::vector<IndexEvent> ToIndexEvents(const KvEventBatch& batch);

// The longest prefix of a request's keys a worker holds, block by block in
// order, stopping at the first key it holds in no tier.
struct IndexMatch {
  int32_t blocks = 0;                       // leading keys held or predicted
  int32_t by_tier[kNumStorageTiers] = {};   // held ones, each at its fastest tier
  int32_t predicted = 0;                    // predicted ones (not held in any tier)
  int32_t durable = 0;                      // held ones with priority >= the durable threshold
};

struct BatchOutcome {
  enum class Kind : uint8_t {
    kApplied,    // in order: applied
    kDuplicate,  // seq below the expected one: already applied, ignored
    kGap,        // seq above the expected one: not applied; fill [expected, seq)
  } kind = Kind::kApplied;
  int64_t expected = 0;
};

struct WorkerIndexStats {
  int64_t blocks[kNumStorageTiers] = {};  // held per tier
  int64_t durable = 0;                    // held, priority >= durable threshold
  int64_t predicted = 0;                  // entries with a live or expired prediction not yet swept
  int64_t next_seq = 0;                   // the batch expected next
  uint64_t events = 0;                    // applied
  uint64_t gaps = 0;                      // batches refused past a gap
  uint64_t unknown_removals = 0;          // BlockRemoved of a block not held (harmless)
  uint64_t unusable = 0;                  // foreign events that could not be keyed (unknown parent, bad sizes)
};

class BlockIndex {
 public:
  struct Options {
    uint64_t hash_seed = 0;       // as the workers'
    std::string model_id;         // the workers' model identity (roots of foreign chains)
    Priority durable_priority = 50;  // blocks at or above count as durable context
  };
  explicit BlockIndex(Options options);

  // Adds a worker (empty, expecting seq `first_seq`); returns its id.
  // `foreign`: its hashes are not kvstack's keys (see above).
  WorkerId AddWorker(bool foreign = false, int64_t first_seq = 0);
  int32_t num_workers() const { return static_cast<int32_t>(workers_.size()); }

  // Applies one batch of a worker's events if it is the next in sequence.
  // REQUIRES: `worker` was added.
  BatchOutcome ApplyBatch(WorkerId worker, int64_t seq, std::span<const IndexEvent> events);
  // The same for a batch off the wire (converting hashes; chaining foreign
  // workers' token ids).
  BatchOutcome ApplyWireBatch(WorkerId worker, int64_t seq, const WireBatch& batch);
  // Applies events with no sequence check (the simulator's drained batches).
  void ApplyEvents(WorkerId worker, std::span<const IndexEvent> events);

  // Replaces everything the worker holds with a snapshot: the blocks held per
  // tier as of batch `next_seq` (batches below it are covered). Predictions
  // are kept.
  struct SnapshotBlock {
    BlockHash hash;
    StorageTier tier = StorageTier::kDevice;
    Priority priority = kDefaultPriority;
  };
  void ApplySnapshot(WorkerId worker, int64_t next_seq, std::span<const SnapshotBlock> blocks);

  // Records that `keys` were just sent to the worker: each key it does not
  // hold becomes Predicted until `until`.
  void Predict(WorkerId worker, std::span<const BlockHash> keys, Micros until);
  // Forgets expired predictions (lookups ignore them anyway). Returns how many.
  int64_t ExpirePredictions(Micros now);

  IndexMatch Match(WorkerId worker, std::span<const BlockHash> keys, Micros now) const;
  // The tiers (bit i: StorageTier i) that hold the key on the worker; 0: none.
  uint8_t TiersOf(WorkerId worker, const BlockHash& key) const;
  WorkerIndexStats Stats(WorkerId worker) const;
  int64_t TotalEntries() const;

  const BlockHasher& hasher() const { return hasher_; }
  Status CheckInvariants() const;

 private:
  struct Entry {
    uint8_t tiers = 0;
    Priority priority = kDefaultPriority;
    Micros predicted_until = 0;  // 0: no prediction
  };
  // Open addressing: an event is one probe into a flat array instead of a
  // bucket, a node and an allocation (router_bench: see BENCHMARKS.md).
  // Block keys are uniform 128-bit hashes, so their low word is the hash.
  using BlockMap = absl::flat_hash_map<BlockHash, Entry, std::hash<BlockHash>>;
  struct Worker {
    bool foreign = false;
    BlockMap blocks;
    std::unordered_map<std::string, BlockHash> foreign_keys;  // foreign hash -> kvstack key
    WorkerIndexStats stats;
  };
  void Apply(Worker& w, const IndexEvent& e);
  void ClearTier(Worker& w, std::optional<StorageTier> tier);
  void ApplyWire(Worker& w, const WireEvent& e);
  void Account(Worker& w, const Entry& e, int sign) const;

  Options options_;
  BlockHasher hasher_;
  BlockHash foreign_root_;
  std::vector<Worker> workers_;
  struct Prediction {
    Micros until;
    WorkerId worker;
    BlockHash key;
  };
  std::vector<Prediction> predictions_;  // a queue, earliest `until` first (TTLs are equal)
  size_t predictions_head_ = 0;
};

}  // namespace kvstack
