#include "tiers/redis_topology.h"

#include <array>

#include <fmt/format.h>

#include "tiers/consistent_hash.h"

namespace kvstack::tiers_internal {
namespace {

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection --
// the variant the Redis Cluster specification names for key slots.
constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> t{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
    t[static_cast<size_t>(i)] = crc;
  }
  return t;
}
constexpr std::array<uint16_t, 256> kCrc16 = MakeCrc16Table();

uint16_t Crc16(std::string_view s) {
  uint16_t crc = 0;
  for (char c : s) crc = static_cast<uint16_t>((crc << 8) ^ kCrc16[((crc >> 8) ^ static_cast<uint8_t>(c)) & 0xff]);
  return crc;
}

bool SameAddress(const RedisNodeAddress& a, const RedisNodeAddress& b) { return a.port == b.port && a.host == b.host; }

class RingTopology final : public RedisTopology {
 public:
  explicit RingTopology(const std::vector<RedisNodeAddress>& servers) {
    std::vector<std::string> labels;
    for (const auto& s : servers) {
      labels.push_back(s.Label());
      nodes_.push_back(s);
      replica_.push_back(0);
    }
    ring_ = std::make_unique<ConsistentHashRing>(labels);
  }
  std::optional<size_t> NodeFor(std::string_view, const BlockHash& hash, bool) override {
    return static_cast<size_t>(ring_->ServerFor(hash));
  }
  std::optional<size_t> Moved(uint16_t, const RedisNodeAddress&) override { return std::nullopt; }
  void NodeFailed(size_t) override {}
  bool WantsRefresh() override { return false; }
  std::vector<RedisNodeAddress> RefreshCandidates() const override { return {}; }
  bool Refresh(const std::vector<RedisSlotRange>&) override { return false; }
  void RefreshFailed() override {}

 private:
  std::unique_ptr<ConsistentHashRing> ring_;  // immutable
};

// A shard: the master of some slots and its replicas (node numbers).
struct Shard {
  size_t master = 0;
  std::vector<size_t> replicas;
};

class ClusterTopology final : public RedisTopology {
 public:
  explicit ClusterTopology(const ClusterTopologyOptions& o)
      : o_(o), clock_(o.clock != nullptr ? o.clock : &SteadyClock::Default()) {
    slot_shard_.fill(kNoShard);
  }

  std::optional<size_t> NodeFor(std::string_view key, const BlockHash& hash, bool read) override {
    const uint16_t slot = RedisKeySlot(key);
    std::lock_guard<std::mutex> lock(mu_);
    const int32_t s = slot_shard_[slot];
    if (s == kNoShard) {
      stale_ = true;
      return std::nullopt;
    }
    const Shard& shard = shards_[static_cast<size_t>(s)];
    if (read && o_.read_from_replicas && !shard.replicas.empty()) {
      // The same key always reads from the same replica: its writes and
      // reads then see one replication stream.
      return shard.replicas[static_cast<size_t>((hash.lo ^ hash.hi) % shard.replicas.size())];
    }
    return shard.master;
  }

  std::optional<size_t> Moved(uint16_t slot, const RedisNodeAddress& to) override {
    std::lock_guard<std::mutex> lock(mu_);
    stale_ = true;
    auto node = NodeAtLocked(to);
    if (!node) return std::nullopt;
    // The slot's new master, until the next full read says more.
    size_t s = 0;
    for (; s < shards_.size(); ++s) {
      if (shards_[s].master == *node) break;
    }
    if (s == shards_.size()) shards_.push_back(Shard{*node, {}});
    slot_shard_[slot] = static_cast<int32_t>(s);
    replica_[*node] = 0;
    return node;
  }

  void NodeFailed(size_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    stale_ = true;
  }

  bool WantsRefresh() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (refreshing_) return false;
    const Micros now = clock_->Now();
    if (!stale_ && (!ever_read_ || now - last_refresh_ < o_.max_age)) return false;
    if (ever_read_ && now - last_refresh_ < o_.refresh_interval) return false;
    refreshing_ = true;
    last_refresh_ = now;
    ever_read_ = true;
    return true;
  }

  std::vector<RedisNodeAddress> RefreshCandidates() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<RedisNodeAddress> out;
    for (const Shard& s : shards_) out.push_back(nodes_[s.master]);
    for (const Shard& s : shards_) {
      for (size_t r : s.replicas) out.push_back(nodes_[r]);
    }
    for (const auto& seed : o_.seeds) {
      bool seen = false;
      for (const auto& a : out) seen = seen || SameAddress(a, seed);
      if (!seen) out.push_back(seed);
    }
    return out;
  }

  bool Refresh(const std::vector<RedisSlotRange>& ranges) override {
    std::array<int32_t, kRedisClusterSlots> slots;
    slots.fill(kNoShard);
    std::lock_guard<std::mutex> lock(mu_);
    refreshing_ = false;
    std::vector<Shard> shards;
    for (const RedisSlotRange& r : ranges) {
      if (r.first < 0 || r.last >= kRedisClusterSlots || r.first > r.last) return false;
      auto master = NodeAtLocked(r.master);
      if (!master) return false;
      size_t s = 0;
      for (; s < shards.size(); ++s) {
        if (shards[s].master == *master) break;
      }
      if (s == shards.size()) {
        Shard shard{*master, {}};
        for (const auto& a : r.replicas) {
          auto n = NodeAtLocked(a);
          if (n) shard.replicas.push_back(*n);
        }
        shards.push_back(std::move(shard));
      }
      for (int slot = r.first; slot <= r.last; ++slot) {
        if (slots[static_cast<size_t>(slot)] != kNoShard) return false;  // served twice
        slots[static_cast<size_t>(slot)] = static_cast<int32_t>(s);
      }
    }
    for (int32_t s : slots) {
      if (s == kNoShard) return false;  // a hole: the cluster is not (yet) whole
    }
    std::vector<uint8_t> replica(nodes_.size(), 0);
    for (const Shard& s : shards) {
      for (size_t r : s.replicas) replica[r] = 1;
    }
    replica_ = std::move(replica);
    shards_ = std::move(shards);
    slot_shard_ = slots;
    stale_ = false;
    ++refreshes_;
    return true;
  }

  void RefreshFailed() override {
    std::lock_guard<std::mutex> lock(mu_);
    refreshing_ = false;
  }

 private:
  static constexpr int32_t kNoShard = -1;

  const ClusterTopologyOptions o_;
  const Clock* clock_;
  std::array<int32_t, kRedisClusterSlots> slot_shard_;  // GUARDED_BY(mu_)
  std::vector<Shard> shards_;                            // GUARDED_BY(mu_)
  bool stale_ = true;                                    // GUARDED_BY(mu_)
  bool refreshing_ = false;                              // GUARDED_BY(mu_)
  bool ever_read_ = false;                               // GUARDED_BY(mu_)
  Micros last_refresh_ = 0;                              // GUARDED_BY(mu_)
};

}  // namespace

uint16_t RedisKeySlot(std::string_view key) {
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      return static_cast<uint16_t>(Crc16(key.substr(open + 1, close - open - 1)) & (kRedisClusterSlots - 1));
    }
  }
  return static_cast<uint16_t>(Crc16(key) & (kRedisClusterSlots - 1));
}

std::string RedisNodeAddress::Label() const { return fmt::format("{}:{}", host, port); }

std::optional<size_t> RedisTopology::NodeAt(const RedisNodeAddress& address) {
  std::lock_guard<std::mutex> lock(mu_);
  return NodeAtLocked(address);
}

std::optional<size_t> RedisTopology::NodeAtLocked(const RedisNodeAddress& address) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (SameAddress(nodes_[i], address)) return i;
  }
  if (nodes_.size() >= kMaxNodes) return std::nullopt;
  nodes_.push_back(address);
  replica_.push_back(0);
  return nodes_.size() - 1;
}

size_t RedisTopology::node_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.size();
}

RedisNodeAddress RedisTopology::node(size_t i) const {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_[i];
}

bool RedisTopology::is_replica(size_t i) const {
  std::lock_guard<std::mutex> lock(mu_);
  return i < replica_.size() && replica_[i] != 0;
}

uint64_t RedisTopology::refreshes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refreshes_;
}

std::unique_ptr<RedisTopology> MakeRingTopology(const std::vector<RedisNodeAddress>& servers) {
  return std::make_unique<RingTopology>(servers);
}

std::unique_ptr<RedisTopology> MakeClusterTopology(const ClusterTopologyOptions& options) {
  return std::make_unique<ClusterTopology>(options);
}

}  // namespace kvstack::tiers_internal
