// RedisTopology: which Redis node gets the command for a key.
//
// Two kinds, one interface, so the Redis tier's lanes, pipelining, health and
// checksums are written once:
//   RingTopology     independent servers chosen by consistent hashing
//                    (--redis): a fixed node list, never redirected.
//   ClusterTopology  a Redis Cluster (--redis-cluster): the 16,384 hash slots
//                    map to shards (a master and its replicas) as the
//                    cluster's own CLUSTER SLOTS reply says; the map is read
//                    from the seeds at start and again whenever it is stale
//                    (a MOVED redirection, a node that stopped answering), at
//                    most once per refresh interval, and at least every
//                    max_age (new replicas, nodes added). A MOVED reply also fixes
//                    the one slot at once, so the retry needs no refresh.
//
// Nodes are numbered in the order they are first seen and never renumbered or
// removed (a node that leaves the cluster just owns no slots), so a lane's
// per-node connection array and the per-node metrics stay valid; at most
// kMaxNodes are tracked (a larger cluster's extra nodes are misses).
//
// Thread safety: every method is safe from any thread (one mutex, held only
// to read or replace the map). The network I/O of a refresh is the caller's:
// Refresh() takes a fetcher, so the map itself never blocks on a socket.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/clock.h"

namespace kvstack::tiers_internal {

inline constexpr int kRedisClusterSlots = 16384;

// The cluster hash slot of a key: CRC16 (XMODEM) of the key, or of the
// non-empty text between its first '{' and the next '}' (a hash tag), mod
// 16,384 -- exactly what every Redis Cluster node computes, so a command is
// sent where the cluster expects it.
uint16_t RedisKeySlot(std::string_view key);

struct RedisNodeAddress {
  std::string host;
  int port = 0;
  std::string Label() const;  // "host:port"
};

// One contiguous range of slots and who serves it (from CLUSTER SLOTS).
struct RedisSlotRange {
  int first = 0, last = 0;  // inclusive
  RedisNodeAddress master;
  std::vector<RedisNodeAddress> replicas;
};

class RedisTopology {
 public:
  static constexpr size_t kMaxNodes = 256;
  virtual ~RedisTopology() = default;

  // The node for a command on `key` (`read`: a GET or EXISTS, which may go to
  // a replica). Nothing when no node serves it yet (a cluster whose map was
  // never read): the command is a miss.
  virtual std::optional<size_t> NodeFor(std::string_view key, const BlockHash& hash, bool read) = 0;

  // A redirection said `slot` now lives on host:port (MOVED): remember it and
  // mark the map stale. Returns the node's number (added if new), or nothing
  // when kMaxNodes are tracked.
  virtual std::optional<size_t> Moved(uint16_t slot, const RedisNodeAddress& to) = 0;
  // A node failed (connection, timeout): a cluster's map is stale (a replica
  // may be taking over). Ring: nothing to learn.
  virtual void NodeFailed(size_t node) = 0;

  // Whether the map should be read again now (stale and the refresh interval
  // has passed since the last read). At most one caller at a time gets true
  // until it calls Refresh() or RefreshFailed().
  virtual bool WantsRefresh() = 0;
  // Nodes to ask for the map, best first (known masters, then the seeds).
  virtual std::vector<RedisNodeAddress> RefreshCandidates() const = 0;
  // Installs a map read from a node. False (and the map unchanged) when it
  // does not cover all 16,384 slots exactly once.
  virtual bool Refresh(const std::vector<RedisSlotRange>& ranges) = 0;
  virtual void RefreshFailed() = 0;

  // The node for host:port, added if new (a redirection's target).
  std::optional<size_t> NodeAt(const RedisNodeAddress& address);
  size_t node_count() const;
  RedisNodeAddress node(size_t i) const;
  // Whether the node serves as a replica in the current map (its connection
  // needs READONLY before it answers reads).
  bool is_replica(size_t i) const;
  uint64_t refreshes() const;

 protected:
  std::optional<size_t> NodeAtLocked(const RedisNodeAddress& address);

  mutable std::mutex mu_;
  std::vector<RedisNodeAddress> nodes_;  // GUARDED_BY(mu_); append-only
  std::vector<uint8_t> replica_;         // GUARDED_BY(mu_); per node
  uint64_t refreshes_ = 0;               // GUARDED_BY(mu_)
};

// Independent servers by consistent hashing; REQUIRES: servers not empty.
std::unique_ptr<RedisTopology> MakeRingTopology(const std::vector<RedisNodeAddress>& servers);

struct ClusterTopologyOptions {
  std::vector<RedisNodeAddress> seeds;  // REQUIRES: not empty
  bool read_from_replicas = false;
  Micros refresh_interval = 100'000;    // the least time between two reads of the map
  // The map is read again after this long even when nothing hinted at a
  // change, so replicas and nodes that joined since are found.
  Micros max_age = 5'000'000;
  const Clock* clock = nullptr;         // nullptr: steady
};
std::unique_ptr<RedisTopology> MakeClusterTopology(const ClusterTopologyOptions& options);

}  // namespace kvstack::tiers_internal
