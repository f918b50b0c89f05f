// The Redis tier: blocks as Redis strings, sent over a few "lanes". A lane is
// a worker thread with its own hiredis connection to every node; a block's
// key always travels in the same lane (a hash of the key picks it), so the
// calls on one key (a DEL, then a SET) reach its server in the order they
// were made, while commands on different keys overlap: one lane writes a
// round while another waits for its replies, and the server always has work.
// Each lane pipelines its share of a batch per node, in rounds whose values
// are sent straight from the bytes Put staged (see resp_round.h); it sends a
// round to every node it has work for before reading any replies, so the
// nodes of a cluster work at once.
//
// Which node a key goes to is the topology's answer (redis_topology.h):
// consistent hashing over independent servers, or a Redis Cluster's slot
// map. In a cluster a node may answer MOVED (the slot lives elsewhere now:
// the map learns it and is re-read) or ASK (the slot is migrating: this one
// command goes to the target after ASKING); the lane re-sends those commands
// to their new node in a further round, at most kMaxHops times. Blocks keep
// their checksums, so a redirection or a reshard can never serve a wrong
// block: at worst a miss. Hash tags are not used: a block key is shared by
// every request whose prefix contains it, so it cannot carry one request's
// tag, and pipelining needs none (a lane batches all of a round's commands
// for one node, whatever their slots).
//
// Key:   "kvstack:" + model_id + ":" + 32 hex digits of the block hash.
// Value: the block's bytes, then 8 bytes of xxh3-64 over them seeded with
//        the hash, so a value stored under another key (or damaged) fails.
//
// A node's state (Health, shared by the lanes):
//   Up        now >= down_until; each lane connects when it has work for it.
//   Down      now < down_until: commands fail at once (a miss) without
//             touching the network; a lane still holding a connection made
//             before the server went down (its epoch is older) drops it.
//   Retrying  the first lane past down_until connects; a failure doubles
//             the backoff (backoff_initial .. backoff_max), a success resets it.
// Any I/O error or timeout drops that lane's connection and marks the server
// Down, once: a lane whose connection predates the latest MarkDown (another
// lane already saw the failure) only drops its connection.
//
// A call's items are split by lane into Parts; the lane that finishes the
// last Part of a call records its metrics and finishes its future.
//
// Contains() answers from a local index (a metadata-only TierIndex) of keys
// this process stored or read; Redis's own TTL and memory policy may have
// dropped them since, which turns into a miss at Get().
//
// Lock order: mu_, then the stats' and fault log's locks; health_mu_, then the
// fault log's lock. mu_ and health_mu_ are never held together; the
// topology's lock is taken alone. A lane's connections are its thread's alone.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <xxhash.h>

#include "kvstack/tiers.h"
#include "tiers/fault_log.h"
#include "tiers/op_state.h"
#include "tiers/redis_slot_map.h"
#include "tiers/redis_topology.h"
#include "tiers/resp_round.h"
#include "tiers/indexed_tier.h"
#include "tiers/tier_index.h"
#include "tiers/tier_stats.h"

namespace kvstack {

std::string RedisBlockKey(const std::string& model_id, const BlockHash& hash) {
  return fmt::format("kvstack:{}:{}", model_id, hash.ToHex());
}

namespace {

using namespace tiers_internal;  // NOLINT: a .cpp of the component

constexpr size_t kChecksumBytes = 8;
// A pipelined round carries at most this many block bytes before the lane
// reads its replies (the lane's other rounds and the other lanes keep the
// server busy meanwhile), and at most kMaxRoundCommands commands (a SET is
// three iovecs; sendmsg takes IOV_MAX = 1024).
constexpr size_t kMaxRoundBytes = 4u << 20;
constexpr size_t kMaxRoundCommands = 256;
constexpr int kMaxConnections = 64;
// A command redirected more often than this (a cluster whose slots keep
// moving) gives up: a miss.
constexpr int kMaxHops = 5;

uint64_t ValueChecksum(const BlockHash& hash, const std::byte* bytes, size_t n) {
  return XXH3_64bits_withSeed(bytes, n, hash.lo ^ (hash.hi * 0x9E3779B97F4A7C15ull));
}

timeval ToTimeval(Micros us) {
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

// One Put / Get / Lookup / Remove call.
struct Job {
  enum class Kind : uint8_t { kPut, kGet, kLookup, kDelete };
  struct Item {
    TierBlockInfo block;
    std::string key;
    std::unique_ptr<std::byte[]> value;  // kPut: bytes + checksum
    size_t value_size = 0;
    std::span<std::byte> dest;     // kGet
    size_t index = 0;              // into state->ok
  };
  Kind kind = Kind::kGet;
  std::shared_ptr<OpState> state;  // null for kDelete
  std::vector<Item> items;
  uint64_t refused = 0;  // puts refused before reaching a lane
  int64_t start_us = 0;
  std::atomic<size_t> parts_left{0};  // lanes still working on it
};

// One lane's share of a job: indices into job->items.
struct Part {
  std::shared_ptr<Job> job;
  std::vector<uint32_t> items;
};

// A server's state, shared by the lanes (see the top of the file).
struct Health {
  Micros down_until = 0;
  Micros backoff = 0;
  uint64_t epoch = 0;  // bumped by each MarkDown
};

// One lane's connection to one server.
struct Conn {
  redisContext* ctx = nullptr;
  uint64_t epoch = 0;  // the server's epoch when this connection was made
};

// Counters of one node (see TierNodeMetrics), updated by the lanes.
struct NodeCounters {
  std::atomic<uint64_t> hits{0}, misses{0}, stored{0}, bytes_in{0}, bytes_out{0}, redirections{0}, faults{0};
};

struct Lane {
  std::deque<Part> queue;  // GUARDED_BY(RedisTier::mu_)
  std::condition_variable cv;
  std::vector<Conn> conns;  // one per node (RedisTopology::kMaxNodes); the lane's thread alone
  RespRound round;          // the lane's thread alone
  std::thread thread;
};

class RedisTier final : public IndexedTier {
 public:
  explicit RedisTier(const RedisTierOptions& o)
      : o_(o),
        clock_(o.clock != nullptr ? o.clock : &SteadyClock::Default()),
        log_(o.log, "redis tier: "),
        stats_("redis"),
        cluster_(!o.cluster_seeds.empty()),
        health_(RedisTopology::kMaxNodes),
        node_counters_(std::make_unique<NodeCounters[]>(RedisTopology::kMaxNodes)) {
    std::vector<RedisNodeAddress> nodes;
    for (const auto& a : cluster_ ? o.cluster_seeds : o.servers) nodes.push_back({a.host, a.port});
    if (cluster_) {
      topology_ = MakeClusterTopology({.seeds = nodes,
                                       .read_from_replicas = o.read_from_replicas,
                                       .refresh_interval = o.slot_map_refresh_interval,
                                       .clock = clock_});
    } else {
      topology_ = MakeRingTopology(nodes);
    }
  }

  ~RedisTier() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    for (auto& lane : lanes_) lane->cv.notify_all();
    for (auto& lane : lanes_) {
      if (lane->thread.joinable()) lane->thread.join();
      for (Conn& c : lane->conns) {
        if (c.ctx != nullptr) redisFree(c.ctx);
      }
    }
  }

  Status Init() {
    auto index = TierIndex::Create(o_.index_blocks, o_.policy, clock_);
    if (!index.ok()) return index.status();
    index_ = std::move(index).value();
    for (int i = 0; i < o_.connections; ++i) {
      auto lane = std::make_unique<Lane>();
      lane->conns.resize(RedisTopology::kMaxNodes);
      lanes_.push_back(std::move(lane));
    }
    // A cluster's map is read now, so the first blocks go straight to their
    // masters; a cluster not reachable yet is no error (its blocks miss and
    // the map is read again as work arrives).
    if (topology_->WantsRefresh()) RefreshSlotMap();
    for (auto& lane : lanes_) {
      Lane* l = lane.get();
      l->thread = std::thread([this, l] { LaneLoop(*l); });
    }
    return Status::Ok();
  }

  std::string_view name() const override { return "redis"; }
  bool shared() const override { return true; }
  size_t bytes_per_block() const override { return o_.bytes_per_block; }

  TierFuture Put(std::span<const TierPut> blocks) override {
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::kPut;
    job->start_us = WallMicros();
    job->state = std::make_shared<OpState>(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const TierPut& p = blocks[i];
      if (p.bytes.size() != o_.bytes_per_block) {
        ++job->refused;
        continue;
      }
      Job::Item it;
      it.block = p.block;
      it.key = RedisBlockKey(o_.model_id, p.block.hash);
      it.value_size = p.bytes.size() + kChecksumBytes;
      it.value = std::make_unique_for_overwrite<std::byte[]>(it.value_size);
      std::memcpy(it.value.get(), p.bytes.data(), p.bytes.size());
      const uint64_t sum = ValueChecksum(p.block.hash, p.bytes.data(), p.bytes.size());
      std::memcpy(it.value.get() + p.bytes.size(), &sum, kChecksumBytes);
      it.index = i;
      job->items.push_back(std::move(it));
    }
    return Enqueue(std::move(job));
  }

  TierFuture Lookup(std::span<const BlockHash> hashes) override {
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::kLookup;
    job->start_us = WallMicros();
    job->state = std::make_shared<OpState>(hashes.size());
    for (size_t i = 0; i < hashes.size(); ++i) {
      Job::Item it;
      it.block.hash = hashes[i];
      it.key = RedisBlockKey(o_.model_id, hashes[i]);
      it.index = i;
      job->items.push_back(std::move(it));
    }
    return Enqueue(std::move(job));
  }

  TierFuture Get(std::span<const TierGet> blocks) override {
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::kGet;
    job->start_us = WallMicros();
    job->state = std::make_shared<OpState>(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i].dest.size() != o_.bytes_per_block) continue;
      Job::Item it;
      it.block.hash = blocks[i].hash;
      it.key = RedisBlockKey(o_.model_id, blocks[i].hash);
      it.dest = blocks[i].dest;
      it.index = i;
      job->items.push_back(std::move(it));
    }
    return Enqueue(std::move(job));
  }

  void Remove(const BlockHash& hash) override {
    auto job = std::make_shared<Job>();
    job->kind = Job::Kind::kDelete;
    Job::Item it;
    it.block.hash = hash;
    it.key = RedisBlockKey(o_.model_id, hash);
    job->items.push_back(std::move(it));
    job->parts_left.store(1, std::memory_order_relaxed);
    Lane& lane = *lanes_[LaneFor(hash)];
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto slot = index_->Find(hash)) index_->Remove(*slot);
      lane.queue.push_back(Part{std::move(job), {0}});
    }
    lane.cv.notify_one();
  }

  TierMetrics Metrics() const override {
    TierMetrics m = IndexedMetrics(stats_);
    const size_t n = topology_->node_count();
    for (size_t i = 0; i < n; ++i) {
      const NodeCounters& c = node_counters_[i];
      TierNodeMetrics node;
      node.node = topology_->node(i).Label();
      node.role = !cluster_ ? "server" : topology_->is_replica(i) ? "replica" : "master";
      node.hits = c.hits.load(std::memory_order_relaxed);
      node.misses = c.misses.load(std::memory_order_relaxed);
      node.stored = c.stored.load(std::memory_order_relaxed);
      node.bytes_in = c.bytes_in.load(std::memory_order_relaxed);
      node.bytes_out = c.bytes_out.load(std::memory_order_relaxed);
      node.redirections = c.redirections.load(std::memory_order_relaxed);
      node.faults = c.faults.load(std::memory_order_relaxed);
      m.redirections += node.redirections;
      m.nodes.push_back(std::move(node));
    }
    m.slot_map_refreshes = topology_->refreshes();
    return m;
  }

  Status CheckInvariants() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return index_->CheckInvariants();
  }

 private:
  struct Cmd {
    size_t part;
    size_t item;  // into job->items
    size_t node = 0;
    bool asking = false;  // an ASK redirection: send ASKING first
  };
  enum class Outcome : uint8_t { kOk, kMiss, kFault, kRedirect };

  // The lane of a key: a mix of both halves of the hash, independent of the
  // ring's choice of server.
  size_t LaneFor(const BlockHash& h) const {
    uint64_t x = h.lo ^ (h.hi * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return static_cast<size_t>(x % lanes_.size());
  }

  TierFuture Enqueue(std::shared_ptr<Job> job) {
    auto state = job->state;
    if (job->items.empty()) {
      if (job->kind == Job::Kind::kPut) {
        stats_.RecordPut(0, job->refused, 0, job->start_us);
      } else {
        stats_.RecordGet(0, state->ok.size(), 0, job->start_us);
      }
      state->Finish();
      return TierFuture(std::move(state));
    }
    std::vector<std::vector<uint32_t>> shares(lanes_.size());
    for (size_t i = 0; i < job->items.size(); ++i) {
      shares[LaneFor(job->items[i].block.hash)].push_back(static_cast<uint32_t>(i));
    }
    std::vector<size_t> busy;  // lanes with a share
    for (size_t l = 0; l < shares.size(); ++l) {
      if (!shares[l].empty()) busy.push_back(l);
    }
    job->parts_left.store(busy.size(), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t l : busy) lanes_[l]->queue.push_back(Part{job, std::move(shares[l])});
    }
    for (size_t l : busy) lanes_[l]->cv.notify_one();
    return TierFuture(std::move(state));
  }

  void LaneLoop(Lane& lane);
  // One node's commands in one hop, sent in pipelined rounds.
  struct NodeWork {
    size_t node = 0;
    std::vector<Cmd> cmds;
    std::vector<Outcome> out;               // one per cmd
    std::vector<RedisRedirect> redirects;   // where out says kRedirect
    size_t at = 0, end = 0;                 // the round in flight: cmds [at, end)
    bool in_flight = false;
    bool failed = false;                    // the connection broke: the rest stay kFault
  };
  // Runs every node's commands over the lane's connections, the nodes'
  // rounds overlapping; fills each NodeWork's `out` and `redirects`.
  void Exchange(Lane& lane, std::vector<Part>& parts, std::vector<NodeWork>& work);
  // Sends the node's next round; false when it has none left or the
  // connection failed.
  bool SendRound(Lane& lane, std::vector<Part>& parts, NodeWork& w);
  // Reads the replies of the round in flight.
  void ReadRound(Lane& lane, std::vector<Part>& parts, NodeWork& w);
  // Sends each command to its node, following redirections; fills
  // `outcomes` (per part, per item).
  void Route(Lane& lane, std::vector<Part>& parts, std::vector<Cmd> pending,
             std::vector<std::vector<Outcome>>* outcomes);
  void Count(size_t node, const Job& job, Outcome o);
  void RefreshSlotMap();
  bool Connect(Conn& c, size_t s);
  void MarkDown(Conn& c, size_t s, const std::string& why);
  void Complete(std::vector<Part>& parts, const std::vector<std::vector<Outcome>>& outcomes);
  void FinishJob(Job& job);

  const RedisTierOptions o_;
  const Clock* clock_;
  FaultLog log_;
  TierStats stats_;
  const bool cluster_;
  std::unique_ptr<RedisTopology> topology_;
  std::vector<std::unique_ptr<Lane>> lanes_;  // fixed after Init()

  std::mutex health_mu_;
  std::vector<Health> health_;  // GUARDED_BY(health_mu_), one per node (kMaxNodes)
  std::unique_ptr<NodeCounters[]> node_counters_;  // one per node (kMaxNodes)
  std::atomic<bool> map_ok_{false};  // the last read of a cluster's slot map worked

  bool stop_ = false;                 // GUARDED_BY(mu_)
};

bool RedisTier::Connect(Conn& c, size_t s) {
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    const Health& h = health_[s];
    if (c.ctx != nullptr && c.epoch == h.epoch) return true;
    if (c.ctx != nullptr) {  // made before the server was last marked down
      redisFree(c.ctx);
      c.ctx = nullptr;
    }
    if (clock_->Now() < h.down_until) {
      topology_->NodeFailed(s);  // keep re-reading a cluster's map until a replica takes over
      return false;
    }
    c.epoch = h.epoch;
  }
  const RedisNodeAddress a = topology_->node(s);
  const timeval ct = ToTimeval(o_.connect_timeout);
  redisContext* ctx = redisConnectWithTimeout(a.host.c_str(), a.port, ct);
  if (ctx == nullptr || ctx->err != 0) {
    const std::string why = ctx != nullptr ? ctx->errstr : "out of memory";
    if (ctx != nullptr) redisFree(ctx);
    MarkDown(c, s, fmt::format("cannot connect: {}", why));
    return false;
  }
  const timeval ot = ToTimeval(o_.op_timeout);
  redisSetTimeout(ctx, ot);
  if (cluster_ && o_.read_from_replicas) {
    // Lets a replica answer reads of its master's slots (harmless on a master).
    auto* r = static_cast<redisReply*>(redisCommand(ctx, "READONLY"));
    const bool ok = r != nullptr;
    if (r != nullptr) freeReplyObject(r);
    if (!ok) {
      const std::string why = ctx->errstr;
      redisFree(ctx);
      MarkDown(c, s, fmt::format("READONLY failed: {}", why));
      return false;
    }
  }
  c.ctx = ctx;
  bool reconnected = false;
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    Health& h = health_[s];
    c.epoch = h.epoch;
    reconnected = h.backoff != 0;
    h.backoff = 0;
  }
  if (reconnected) log_.Note(fmt::format("server {}: reconnected", a.Label()));
  return true;
}

void RedisTier::MarkDown(Conn& c, size_t s, const std::string& why) {
  if (c.ctx != nullptr) {
    redisFree(c.ctx);
    c.ctx = nullptr;
  }
  Micros backoff = 0;
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    Health& h = health_[s];
    if (c.epoch != h.epoch) return;  // another lane already marked it down
    ++h.epoch;
    h.backoff = h.backoff == 0 ? o_.backoff_initial : std::min(h.backoff * 2, o_.backoff_max);
    h.down_until = clock_->Now() + h.backoff;
    backoff = h.backoff;
  }
  topology_->NodeFailed(s);
  const std::string label = topology_->node(s).Label();
  log_.Report(label, fmt::format("server {}: {}; its blocks miss; retrying in {} ms", label, why, backoff / 1000));
}

bool RedisTier::SendRound(Lane& lane, std::vector<Part>& parts, NodeWork& w) {
  w.in_flight = false;
  if (w.failed || w.end >= w.cmds.size()) return false;
  const size_t s = w.node;
  Conn& c = lane.conns[s];
  if (!Connect(c, s)) {  // Down: the rest fail at once
    w.failed = true;
    return false;
  }
  // One pipelined round: up to max_batch commands or kMaxRoundBytes.
  const size_t max_round = std::min(o_.max_batch, kMaxRoundCommands);
  w.at = w.end;
  size_t bytes = 0;
  while (w.end < w.cmds.size() && w.end - w.at < max_round && (w.end == w.at || bytes < kMaxRoundBytes)) {
    const Job& job = *parts[w.cmds[w.end].part].job;
    bytes += job.kind == Job::Kind::kPut || job.kind == Job::Kind::kGet ? o_.bytes_per_block : 64;
    ++w.end;
  }
  RespRound& round = lane.round;
  round.Clear();
  for (size_t i = w.at; i < w.end; ++i) {
    const Job& job = *parts[w.cmds[i].part].job;
    const Job::Item& it = job.items[w.cmds[i].item];
    if (w.cmds[i].asking) round.Command({"ASKING"});
    switch (job.kind) {
      case Job::Kind::kPut:
        round.SetWithTtl(it.key, it.value.get(), it.value_size, static_cast<long long>(o_.ttl_seconds));
        break;
      case Job::Kind::kGet:
        round.Command({"GET", it.key});
        break;
      case Job::Kind::kLookup:
        round.Command({"EXISTS", it.key});
        break;
      case Job::Kind::kDelete:
        round.Command({"DEL", it.key});
        break;
    }
  }
  std::string send_error;
  const bool sent = round.Send(c.ctx->fd, &send_error);
  round.Clear();
  if (!sent) {
    MarkDown(c, s, fmt::format("cannot send ({})", send_error));
    w.failed = true;
    return false;
  }
  w.in_flight = true;
  return true;
}

void RedisTier::ReadRound(Lane& lane, std::vector<Part>& parts, NodeWork& w) {
  w.in_flight = false;
  const size_t s = w.node;
  Conn& c = lane.conns[s];
  const RedisNodeAddress address = topology_->node(s);
  const std::string label = address.Label();
  for (size_t i = w.at; i < w.end; ++i) {
    void* raw = nullptr;
    if (w.cmds[i].asking) {  // ASKING's own +OK; the command's reply says the rest
      if (redisGetReply(c.ctx, &raw) != REDIS_OK || raw == nullptr) {
        MarkDown(c, s, fmt::format("no reply ({})", c.ctx->errstr));
        w.failed = true;
        return;
      }
      freeReplyObject(raw);
      raw = nullptr;
    }
    if (redisGetReply(c.ctx, &raw) != REDIS_OK || raw == nullptr) {
      // A timeout (op_timeout) shows as an I/O error too.
      MarkDown(c, s, fmt::format("no reply ({})", c.ctx->errstr));
      w.failed = true;
      return;
    }
    redisReply* r = static_cast<redisReply*>(raw);
    Job& job = *parts[w.cmds[i].part].job;
    Job::Item& it = job.items[w.cmds[i].item];
    Outcome& o = w.out[i];
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string_view error(r->str, r->len);
      if (auto redirect = cluster_ ? ParseRedirect(error, address.host) : std::nullopt) {
        o = Outcome::kRedirect;
        w.redirects[i] = *redirect;
      } else {
        // TRYAGAIN, CLUSTERDOWN, OOM, ...: this command fails (a miss).
        o = Outcome::kFault;
        log_.Report(label + " error", fmt::format("server {}: {}", label, error));
      }
    } else {
      switch (job.kind) {
        case Job::Kind::kPut:
          o = r->type == REDIS_REPLY_STATUS ? Outcome::kOk : Outcome::kFault;
          break;
        case Job::Kind::kLookup:
          o = r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? Outcome::kOk : Outcome::kMiss;
          break;
        case Job::Kind::kDelete:
          o = Outcome::kOk;
          break;
        case Job::Kind::kGet: {
          if (r->type == REDIS_REPLY_NIL) {
            o = Outcome::kMiss;
            break;
          }
          const size_t n = o_.bytes_per_block;
          uint64_t sum = 0;
          if (r->type == REDIS_REPLY_STRING && r->len == n + kChecksumBytes) {
            std::memcpy(&sum, r->str + n, kChecksumBytes);
          }
          if (r->type == REDIS_REPLY_STRING && r->len == n + kChecksumBytes &&
              sum == ValueChecksum(it.block.hash, reinterpret_cast<const std::byte*>(r->str), n)) {
            std::memcpy(it.dest.data(), r->str, n);
            o = Outcome::kOk;
          } else {
            o = Outcome::kFault;
            log_.Report("corrupt", fmt::format("server {}: value of {} is corrupt (length {} or checksum): a miss",
                                               label, it.key, r->len));
          }
          break;
        }
      }
    }
    freeReplyObject(r);
  }
}

// Every node's rounds overlap: one round is sent to each node with work, then
// each one's replies are read, so the nodes work at once.
void RedisTier::Exchange(Lane& lane, std::vector<Part>& parts, std::vector<NodeWork>& work) {
  for (NodeWork& w : work) {
    w.out.assign(w.cmds.size(), Outcome::kFault);
    w.redirects.assign(w.cmds.size(), RedisRedirect{});
  }
  for (bool sent = true; sent;) {
    sent = false;
    for (NodeWork& w : work) sent = SendRound(lane, parts, w) || sent;
    for (NodeWork& w : work) {
      if (w.in_flight) ReadRound(lane, parts, w);
    }
  }
}

void RedisTier::LaneLoop(Lane& lane) {
  for (;;) {
    std::vector<Part> parts;
    {
      std::unique_lock<std::mutex> lock(mu_);
      lane.cv.wait(lock, [&] { return stop_ || !lane.queue.empty(); });
      if (lane.queue.empty()) return;  // stopping, and drained
      while (!lane.queue.empty()) {
        parts.push_back(std::move(lane.queue.front()));
        lane.queue.pop_front();
      }
    }
    if (topology_->WantsRefresh()) RefreshSlotMap();
    std::vector<std::vector<Outcome>> outcomes(parts.size());
    for (size_t p = 0; p < parts.size(); ++p) outcomes[p].assign(parts[p].job->items.size(), Outcome::kFault);
    std::vector<Cmd> pending;
    for (size_t p = 0; p < parts.size(); ++p) {
      const Job& job = *parts[p].job;
      const bool read = job.kind == Job::Kind::kGet || job.kind == Job::Kind::kLookup;
      for (uint32_t i : parts[p].items) {
        const Job::Item& it = job.items[i];
        // No node (a cluster whose map is unknown): stays a fault, a miss.
        if (auto node = topology_->NodeFor(it.key, it.block.hash, read)) pending.push_back({p, i, *node, false});
      }
    }
    Route(lane, parts, std::move(pending), &outcomes);
    Complete(parts, outcomes);
  }
}

// Commands per node, in call order, so a DEL and a later SET of one key
// (always in this lane) reach its node in the order they were called; a
// redirected command goes on in the next hop, still behind the key's earlier
// commands and ahead of its later ones (later batches wait for this one).
void RedisTier::Route(Lane& lane, std::vector<Part>& parts, std::vector<Cmd> pending,
                      std::vector<std::vector<Outcome>>* outcomes) {
  for (int hop = 0; !pending.empty(); ++hop) {
    std::vector<std::vector<Cmd>> per_node(topology_->node_count());
    for (const Cmd& c : pending) per_node[c.node].push_back(c);
    std::vector<NodeWork> work;
    for (size_t s = 0; s < per_node.size(); ++s) {
      if (!per_node[s].empty()) work.push_back(NodeWork{.node = s, .cmds = std::move(per_node[s])});
    }
    Exchange(lane, parts, work);
    std::vector<Cmd> next;
    for (const NodeWork& w : work) {
      for (size_t k = 0; k < w.cmds.size(); ++k) {
        const Cmd& c = w.cmds[k];
        const Job& job = *parts[c.part].job;
        Count(w.node, job, w.out[k]);
        if (w.out[k] != Outcome::kRedirect) {
          (*outcomes)[c.part][c.item] = w.out[k];
          continue;
        }
        const RedisRedirect& r = w.redirects[k];
        // MOVED: the slot's owner changed for good (the map learns it); ASK:
        // this one command goes to the slot's import target.
        std::optional<size_t> to = r.ask ? topology_->NodeAt(r.to) : topology_->Moved(r.slot, r.to);
        if (!to || hop + 1 >= kMaxHops) {
          log_.Report("redirect", fmt::format("{} of {} not followed (too many hops, or too many nodes)",
                                              r.ask ? "ASK" : "MOVED", job.items[c.item].key));
          (*outcomes)[c.part][c.item] = Outcome::kFault;
          continue;
        }
        next.push_back({c.part, c.item, *to, r.ask});
      }
    }
    pending = std::move(next);
  }
}

void RedisTier::Count(size_t node, const Job& job, Outcome o) {
  NodeCounters& c = node_counters_[node];
  switch (o) {
    case Outcome::kRedirect:
      c.redirections.fetch_add(1, std::memory_order_relaxed);
      return;
    case Outcome::kFault:
      c.faults.fetch_add(1, std::memory_order_relaxed);
      if (job.kind == Job::Kind::kGet || job.kind == Job::Kind::kLookup) c.misses.fetch_add(1, std::memory_order_relaxed);
      return;
    case Outcome::kMiss:
      c.misses.fetch_add(1, std::memory_order_relaxed);
      return;
    case Outcome::kOk:
      break;
  }
  switch (job.kind) {
    case Job::Kind::kPut:
      c.stored.fetch_add(1, std::memory_order_relaxed);
      c.bytes_in.fetch_add(o_.bytes_per_block, std::memory_order_relaxed);
      break;
    case Job::Kind::kGet:
      c.hits.fetch_add(1, std::memory_order_relaxed);
      c.bytes_out.fetch_add(o_.bytes_per_block, std::memory_order_relaxed);
      break;
    case Job::Kind::kLookup:
      c.hits.fetch_add(1, std::memory_order_relaxed);
      break;
    case Job::Kind::kDelete:
      break;
  }
}

void RedisTier::RefreshSlotMap() {
  std::string errors;
  for (const RedisNodeAddress& a : topology_->RefreshCandidates()) {
    std::string error;
    auto ranges = ReadClusterSlots(a, o_.connect_timeout, o_.op_timeout, &error);
    if (ranges && topology_->Refresh(*ranges)) {
      if (!map_ok_.exchange(true)) {
        log_.Note(fmt::format("cluster slot map read from {}: {} slot ranges over {} nodes", a.Label(),
                              ranges->size(), topology_->node_count()));
      }
      return;
    }
    if (ranges) error = "the slot map does not cover every slot exactly once (cluster not ready)";
    errors += fmt::format("{}{}: {}", errors.empty() ? "" : "; ", a.Label(), error);
  }
  topology_->RefreshFailed();
  map_ok_.store(false);
  log_.Report("slot map", fmt::format("cannot read the cluster's slot map ({}); its blocks miss until it can", errors));
}

// Records each part's outcomes; the lane that completes a job's last part
// finishes it.
void RedisTier::Complete(std::vector<Part>& parts, const std::vector<std::vector<Outcome>>& outcomes) {
  uint64_t faults = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t p = 0; p < parts.size(); ++p) {
      Job& job = *parts[p].job;
      for (uint32_t i : parts[p].items) {
        const Outcome o = outcomes[p][i];
        const Job::Item& it = job.items[i];
        if (o == Outcome::kFault) ++faults;
        if (job.kind == Job::Kind::kDelete) continue;
        auto slot = index_->Find(it.block.hash);
        if (o == Outcome::kOk) {
          if (slot) {
            index_->Acquire(*slot);
            index_->Raise(*slot, it.block.priority);
            index_->Release(*slot);
          } else if (auto fresh = index_->Insert(it.block)) {
            index_->Release(*fresh);
          }
        } else if (slot && job.kind != Job::Kind::kPut) {
          index_->Remove(*slot);  // the server does not have it (any more)
        }
        // Distinct bytes per item: lanes write their own items' outcomes.
        if (o == Outcome::kOk) job.state->ok[it.index] = 1;
      }
    }
  }
  if (faults > 0) stats_.AddFaults(faults);
  for (Part& part : parts) {
    // acq_rel: the last lane sees every other lane's ok[] writes before Finish.
    if (part.job->parts_left.fetch_sub(1, std::memory_order_acq_rel) == 1) FinishJob(*part.job);
  }
}

void RedisTier::FinishJob(Job& job) {
  if (job.kind == Job::Kind::kDelete) return;
  const uint64_t ok = static_cast<uint64_t>(std::count(job.state->ok.begin(), job.state->ok.end(), uint8_t{1}));
  if (job.kind == Job::Kind::kPut) {
    stats_.RecordPut(ok, job.state->ok.size() - ok, ok * o_.bytes_per_block, job.start_us);
  } else {
    const uint64_t bytes = job.kind == Job::Kind::kGet ? ok * o_.bytes_per_block : 0;
    stats_.RecordGet(ok, job.state->ok.size() - ok, bytes, job.start_us);
  }
  job.state->Finish();
}

}  // namespace

Result<std::unique_ptr<Tier>> MakeRedisTier(const RedisTierOptions& o) {
  if (o.servers.empty() == o.cluster_seeds.empty()) {
    return InvalidArgument("redis tier: give either servers (--redis) or cluster seed nodes (--redis-cluster), not both");
  }
  if (o.read_from_replicas && o.cluster_seeds.empty()) {
    return InvalidArgument("redis tier: reading from replicas needs a cluster (--redis-cluster)");
  }
  if (o.slot_map_refresh_interval < 0) return InvalidArgument("redis tier: slot_map_refresh_interval must be >= 0");
  for (const auto& s : o.servers.empty() ? o.cluster_seeds : o.servers) {
    if (s.host.empty() || s.port < 1 || s.port > 65535) {
      return InvalidArgument(fmt::format("redis tier: server '{}:{}': need a host and a port from 1 to 65535",
                                         s.host, s.port));
    }
  }
  if (o.model_id.empty()) return InvalidArgument("redis tier: model_id is required (it prefixes every key)");
  if (o.bytes_per_block == 0) return InvalidArgument("redis tier: bytes_per_block must be >= 1");
  if (o.ttl_seconds < 1) return InvalidArgument(fmt::format("redis tier: ttl_seconds {}: must be >= 1", o.ttl_seconds));
  if (o.max_batch == 0) return InvalidArgument("redis tier: max_batch must be >= 1");
  if (o.connections < 1 || o.connections > kMaxConnections) {
    return InvalidArgument(fmt::format("redis tier: connections {}: must be 1 to {} per server", o.connections,
                                       kMaxConnections));
  }
  if (o.connect_timeout <= 0 || o.op_timeout <= 0 || o.backoff_initial <= 0 || o.backoff_max < o.backoff_initial) {
    return InvalidArgument("redis tier: timeouts must be > 0 and backoff_max >= backoff_initial");
  }
  auto tier = std::make_unique<RedisTier>(o);
  KVSTACK_RETURN_IF_ERROR(tier->Init());
  return std::unique_ptr<Tier>(std::move(tier));
}

}  // namespace kvstack
