// KV events on the wire: vLLM's schema, so kvstack's servers can be routed by
// other KV-aware routers and kvstack's router can read other engines' events.
//
// Transport (vLLM's ZmqEventPublisher): a ZeroMQ PUB socket sends each batch
// as three frames, [topic, seq, payload]: seq is an 8-byte big-endian integer
// that grows by one per batch (a subscriber that sees seq jump missed
// batches), payload is msgpack. A ROUTER socket answers replay requests: a
// DEALER sends [b"", start_seq (8 bytes)] and gets back one [b"", seq,
// payload] per buffered batch with seq >= start_seq, then [b"", -1 (8 bytes),
// b""].
//
// Payload (msgspec array_like structs, tagged by class name; vLLM's
// vllm/distributed/kv_events.py, the schema that ends BlockStored at medium):
//   EventBatch       [ts (float seconds), [event...], data_parallel_rank (int)]
//   BlockStored      ["BlockStored", block_hashes [bin], parent_block_hash (bin|nil),
//                     token_ids [int], block_size (int), lora_id (nil), medium (str),
//                     priority (int 0..100)]
//   BlockRemoved     ["BlockRemoved", block_hashes [bin], medium (str)]
//   AllBlocksCleared ["AllBlocksCleared"]
// `priority` is kvstack's addition (the block's retention priority when
// stored, as TensorRT-LLM's stored-block events carry one); consumers of
// vLLM's schema ignore a trailing field. `medium` names the tier: "GPU" for the
// device pool (kvstack's KV pool, on whatever device), "CPU" for the host RAM
// tier, "DISK", "REDIS". kvstack AllBlocksCleared are sent as
// ["AllBlocksCleared", medium] when they concern one tier only.
//
// Block hashes: kvstack's chained 128-bit keys (block_hash.h) as 16 bytes,
// hi then lo, big-endian; the model identity and tenant salt are in the chain's
// root, so equal hashes never cross tenants. Another engine's hashes (ints or
// bytes of any length) decode as opaque byte strings.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/cache_events.h"
#include "kvstack/status.h"

namespace kvstack {

// "GPU", "CPU", "DISK", "REDIS".
std::string_view MediumName(StorageTier tier);
// The tier a medium names (exact names above); any other name, or none, is
// the device pool (vLLM publishes "GPU" or nothing for its device pool).
StorageTier MediumTier(std::string_view medium);

// A block hash as it travels: raw bytes (16 for kvstack's keys).
std::string HashBytes(const BlockHash& hash);
// The kvstack key in 16 bytes; nullopt for any other length.
std::optional<BlockHash> HashFromBytes(std::string_view bytes);

struct WireEvent {
  KvEventKind kind = KvEventKind::kBlockStored;
  std::vector<std::string> block_hashes;     // opaque bytes
  std::optional<std::string> parent;         // BlockStored
  std::vector<Token> token_ids;              // BlockStored: all blocks' tokens, back to back
  int32_t block_size = 0;                    // BlockStored
  std::optional<int64_t> lora_id;            // BlockStored
  std::optional<std::string> medium;         // nil: unspecified (device)
  std::optional<Priority> priority;          // BlockStored, kvstack's addition
};

struct WireBatch {
  double ts = 0;
  std::vector<WireEvent> events;
  std::optional<int64_t> data_parallel_rank;
};

// Encodes a drained batch of the cache's events. Consecutive BlockStored
// events stay one block each (each has its own priority).
std::string EncodeKvEventBatch(const KvEventBatch& batch, int32_t block_size, double ts);
std::string EncodeWireBatch(const WireBatch& batch);

// DataLoss naming the field when the payload is not an EventBatch of known
// events (unknown tags, wrong types). Unknown trailing fields are ignored.
Result<WireBatch> DecodeWireBatch(std::string_view payload);

// 8-byte big-endian sequence frames.
std::string SeqFrame(int64_t seq);
// nullopt unless exactly 8 bytes.
std::optional<int64_t> SeqFromFrame(std::string_view frame);

}  // namespace kvstack
