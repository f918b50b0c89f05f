// KV cache events: what a pool stored and removed, for routers and tiers.
//
// Every block entering a pool's prefix cache publishes BlockStored (its key,
// its parent's key, its token ids, the tier), every block leaving it
// BlockRemoved, and a reset AllCleared. Each event carries a sequence number
// that increases by one per event across the log's life, so a consumer that
// sees a gap knows it missed events (the buffer overflowed) and must resync.
// Consumers drain batches; they never look into the pool's maps (vLLM's
// BlockStored / BlockRemoved / AllBlocksCleared, with sequence numbers added).
//
// Thread safety: none; the owning cache's thread drains it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/eviction_policy.h"

namespace kvstack {

enum class KvEventKind : uint8_t { kBlockStored, kBlockRemoved, kAllCleared };
enum class StorageTier : uint8_t { kDevice, kHost, kDisk, kRemote };
std::string_view KvEventKindName(KvEventKind k);
std::string_view StorageTierName(StorageTier t);

struct KvEvent {
  uint64_t seq = 0;
  KvEventKind kind = KvEventKind::kBlockStored;
  StorageTier tier = StorageTier::kDevice;
  BlockHash hash;           // zero for AllCleared
  BlockHash parent;         // BlockStored: zero for a sequence's first block
  uint32_t token_offset = 0;  // BlockStored: the block's tokens in the batch
  uint32_t token_count = 0;
  // BlockStored: the block's retention priority when stored, so a consumer
  // can tell durable context (pinned, high priority) from one-off blocks.
  Priority priority = kDefaultPriority;
};

struct KvEventBatch {
  std::vector<KvEvent> events;
  std::vector<Token> tokens;  // token ids of all BlockStored events, back to back
  std::span<const Token> TokensOf(const KvEvent& e) const {
    return std::span<const Token>(tokens).subspan(e.token_offset, e.token_count);
  }
};

// An append-only buffer of events with a capacity; events beyond it are
// dropped (their sequence numbers are still used, leaving a visible gap).
class KvEventLog {
 public:
  // capacity 0: the log is off (nothing recorded, nothing numbered).
  explicit KvEventLog(size_t capacity) : capacity_(capacity) {}

  bool enabled() const { return capacity_ > 0; }
  void BlockStored(const BlockHash& hash, const BlockHash& parent, std::span<const Token> tokens, StorageTier tier,
                   Priority priority = kDefaultPriority);
  void BlockRemoved(const BlockHash& hash, StorageTier tier);
  void AllCleared(StorageTier tier);

  // Everything recorded since the last Drain(), oldest first.
  KvEventBatch Drain();

  uint64_t next_seq() const { return next_seq_; }
  uint64_t dropped() const { return dropped_; }

 private:
  bool Admit();

  size_t capacity_;
  uint64_t next_seq_ = 1;
  uint64_t dropped_ = 0;
  KvEventBatch pending_;
};

}  // namespace kvstack
