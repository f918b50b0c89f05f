// The tiers kvstack provides (see tier.h for the interface they share):
//
//   host   a RAM pool of a fixed number of blocks; every call completes before
//          it returns (a copy under a lock).
//   disk   a directory of large segment files written and read with O_DIRECT
//          through io_uring by one worker thread; every block carries xxh3
//          checksums; the directory is re-indexed when a tier opens it, so a
//          warm cache survives a restart. Corrupt or torn blocks are misses.
//   redis  one or more Redis servers chosen by consistent hashing, or a
//          Redis Cluster (each key to the master of its hash slot, MOVED and
//          ASK redirections followed, the slot map re-read when it changes,
//          reads from replicas on request); pipelined batches over a few
//          connections per node (one worker thread each, used concurrently),
//          a TTL on every key, timeouts, and reconnection with exponential
//          backoff.
//
// Each factory returns a complete tier or an error naming the bad option.
// Thread safety: see tier.h (every tier is safe from any thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstack/clock.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/status.h"
#include "kvstack/tier.h"

namespace kvstack {

class DiskIo;  // the disk tier's I/O seam (tiers/disk_io.h); tests inject faults

struct HostTierOptions {
  size_t bytes_per_block = 0;          // required, >= 1 (0 exactly when metadata_only)
  int64_t capacity_blocks = 0;         // required, >= 1
  const EvictionPolicy* policy = nullptr;  // nullptr: priority-LRU; must outlive the tier
  const Clock* clock = nullptr;        // nullptr: the steady clock; orders LRU
  // Keys only, no bytes (every put and get carries empty spans): the
  // simulator's tiers, which must hold and evict exactly what a real tier of
  // this capacity and policy would.
  bool metadata_only = false;
  std::string name = "host";           // in metrics and errors
};
Result<std::unique_ptr<Tier>> MakeHostTier(const HostTierOptions& options);

struct DiskTierOptions {
  std::string dir;                     // required; created if missing; one tier per dir
  size_t bytes_per_block = 0;          // required, >= 1
  uint64_t capacity_bytes = 0;         // required; at least one block record
  uint64_t segment_bytes = 256ull << 20;  // size of each segment file (rounded to records)
  const EvictionPolicy* policy = nullptr;  // nullptr: priority-LRU
  const Clock* clock = nullptr;        // nullptr: steady; LRU and the full-disk pause
  Micros full_disk_pause = 10'000'000; // after ENOSPC, puts store nothing for this long
  size_t max_write_batch_bytes = 16u << 20;  // adjacent records merge into writes this large
  std::shared_ptr<DiskIo> io;          // nullptr: io_uring (O_DIRECT when the fs allows)
  TierLogSink log;                     // nullptr: stderr
};
// Opens (or creates) the directory and re-indexes the blocks found in it.
// FailedPrecondition when the directory holds a tier of another layout
// (bytes_per_block or segment size): use another directory or empty it.
Result<std::unique_ptr<Tier>> OpenDiskTier(const DiskTierOptions& options);

struct RedisServerAddress {
  std::string host = "127.0.0.1";
  int port = 6379;
};

struct RedisTierOptions {
  // Exactly one of `servers` and `cluster_seeds`:
  std::vector<RedisServerAddress> servers;  // independent servers; keys spread by consistent hashing
  // Nodes of one Redis Cluster to read the slot map from (any one that
  // answers is enough; the others are found through it). Keys go to the
  // master of their slot; a master that dies makes its keys misses until a
  // replica is promoted and the map, re-read, says so.
  std::vector<RedisServerAddress> cluster_seeds;
  // Cluster: send gets and lookups to a replica of the key's slot (READONLY).
  // Replication is asynchronous, so a block put a moment ago may miss there.
  bool read_from_replicas = false;
  Micros slot_map_refresh_interval = 100'000;  // cluster: the least time between two reads of the map
  std::string model_id;                // required; prefixes every key
  size_t bytes_per_block = 0;          // required, >= 1
  int64_t ttl_seconds = 3600;          // every SET gets this TTL; >= 1
  Micros connect_timeout = 200'000;
  Micros op_timeout = 1'000'000;       // a reply slower than this marks the server down
  Micros backoff_initial = 100'000;    // first wait after a failure before reconnecting
  Micros backoff_max = 10'000'000;     // the wait doubles up to this
  int64_t index_blocks = 1 << 18;      // keys remembered for Contains() (84 bytes each)
  size_t max_batch = 256;              // commands per pipelined batch
  // Connections to each server, each driven by its own worker thread, 1..64.
  // A block's key always travels over the same one, so calls on one key reach
  // its server in the order they were made; different keys' commands overlap.
  int connections = 4;
  const EvictionPolicy* policy = nullptr;  // ranks the remembered keys; nullptr: priority-LRU
  const Clock* clock = nullptr;        // nullptr: steady; drives the backoff
  TierLogSink log;                     // nullptr: stderr
};
// Connects lazily: an unreachable server is not an error here (its blocks
// miss until it is back).
Result<std::unique_ptr<Tier>> MakeRedisTier(const RedisTierOptions& options);

// The Redis key of a block: "kvstack:" + model_id + ":" + hash.ToHex().
std::string RedisBlockKey(const std::string& model_id, const BlockHash& hash);

}  // namespace kvstack
