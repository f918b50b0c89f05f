// The Redis tier: blocks as Redis strings, one worker thread that pipelines
// each batch of commands per server over one hiredis connection per server.
//
// Key:   "kvstack:" + model_id + ":" + 32 hex digits of the block hash.
// Value: the block's bytes, then 8 bytes of xxh3-64 over them seeded with
//        the hash, so a value stored under another key (or damaged) fails.
//
// A server's connection state:
//   Up        ctx != nullptr; commands are pipelined to it.
//   Down      ctx == nullptr and now < down_until: commands fail at once (a
//             miss) without touching the network.
//   Retrying  ctx == nullptr and now >= down_until: the next batch connects;
//             failure doubles the backoff (backoff_initial .. backoff_max).
// Any I/O error or timeout drops the connection and goes Down.
//
// Contains() answers from a local index (a metadata-only TierIndex) of keys
// this process stored or read; Redis's own TTL and memory policy may have
// dropped them since, which turns into a miss at Get().
//
// Lock order: mu_, then the stats' and fault log's locks. Servers' state is
// the worker's alone.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <xxhash.h>

#include "kvstack/tiers.h"
#include "tiers/consistent_hash.h"
#include "tiers/fault_log.h"
#include "tiers/op_state.h"
#include "tiers/tier_index.h"
#include "tiers/tier_stats.h"

namespace kvstack {

std::string RedisBlockKey(const std::string& model_id, const BlockHash& hash) {
  return fmt::format("kvstack:{}:{}", model_id, hash.ToHex());
}

namespace {

using namespace tiers_internal;  // NOLINT: a .cpp of the component

constexpr size_t kChecksumBytes = 8;
// A pipelined round sends at most this many value bytes before reading its
// replies: hiredis grows its output buffer 1 MiB at a time past 1 MiB, so a
// much larger pipeline of big values would be copied over and over.
constexpr size_t kMaxPipelineBytes = 1u << 20;

uint64_t ValueChecksum(const BlockHash& hash, const std::byte* bytes, size_t n) {
  return XXH3_64bits_withSeed(bytes, n, hash.lo ^ (hash.hi * 0x9E3779B97F4A7C15ull));
}

timeval ToTimeval(Micros us) {
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

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
  uint64_t refused = 0;  // puts refused before reaching the worker
  int64_t start_us = 0;
};

struct Server {
  RedisServerAddress address;
  std::string label;  // "host:port"
  redisContext* ctx = nullptr;
  Micros down_until = 0;
  Micros backoff = 0;
};

class RedisTier final : public Tier {
 public:
  explicit RedisTier(const RedisTierOptions& o)
      : o_(o),
        clock_(o.clock != nullptr ? o.clock : &SteadyClock::Default()),
        log_(o.log, "redis tier: "),
        stats_("redis") {
    std::vector<std::string> labels;
    for (const auto& a : o.servers) {
      Server s;
      s.address = a;
      s.label = fmt::format("{}:{}", a.host, a.port);
      labels.push_back(s.label);
      servers_.push_back(std::move(s));
    }
    ring_ = std::make_unique<ConsistentHashRing>(labels);
  }

  ~RedisTier() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    for (Server& s : servers_) {
      if (s.ctx != nullptr) redisFree(s.ctx);
    }
  }

  Status Init() {
    auto index = TierIndex::Create(o_.index_blocks, o_.policy, clock_);
    if (!index.ok()) return index.status();
    index_ = std::move(index).value();
    worker_ = std::thread([this] { WorkerLoop(); });
    return Status::Ok();
  }

  std::string_view name() const override { return "redis"; }
  size_t bytes_per_block() const override { return o_.bytes_per_block; }
  int64_t capacity_blocks() const override { return index_->capacity(); }

  bool Contains(const BlockHash& hash) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return index_->Find(hash).has_value();
  }

  TierFuture Put(std::span<const TierPut> blocks) override {
    Job job;
    job.kind = Job::Kind::kPut;
    job.start_us = WallMicros();
    job.state = std::make_shared<OpState>(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const TierPut& p = blocks[i];
      if (p.bytes.size() != o_.bytes_per_block) {
        ++job.refused;
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
      job.items.push_back(std::move(it));
    }
    return Enqueue(std::move(job));
  }

  TierFuture Lookup(std::span<const BlockHash> hashes) override {
    Job job;
    job.kind = Job::Kind::kLookup;
    job.start_us = WallMicros();
    job.state = std::make_shared<OpState>(hashes.size());
    for (size_t i = 0; i < hashes.size(); ++i) {
      Job::Item it;
      it.block.hash = hashes[i];
      it.key = RedisBlockKey(o_.model_id, hashes[i]);
      it.index = i;
      job.items.push_back(std::move(it));
    }
    return Enqueue(std::move(job));
  }

  TierFuture Get(std::span<const TierGet> blocks) override {
    Job job;
    job.kind = Job::Kind::kGet;
    job.start_us = WallMicros();
    job.state = std::make_shared<OpState>(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i].dest.size() != o_.bytes_per_block) continue;
      Job::Item it;
      it.block.hash = blocks[i].hash;
      it.key = RedisBlockKey(o_.model_id, blocks[i].hash);
      it.dest = blocks[i].dest;
      it.index = i;
      job.items.push_back(std::move(it));
    }
    return Enqueue(std::move(job));
  }

  void Remove(const BlockHash& hash) override {
    Job job;
    job.kind = Job::Kind::kDelete;
    Job::Item it;
    it.block.hash = hash;
    it.key = RedisBlockKey(o_.model_id, hash);
    job.items.push_back(std::move(it));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto slot = index_->Find(hash)) index_->Remove(*slot);
      jobs_.push_back(std::move(job));
    }
    work_cv_.notify_one();
  }

  TierMetrics Metrics() const override {
    int64_t blocks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocks = index_->size();
    }
    return stats_.Snapshot(blocks, index_->capacity());
  }

  Status CheckInvariants() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return index_->CheckInvariants();
  }

 private:
  struct Cmd {
    size_t job;
    size_t item;
  };
  enum class Outcome : uint8_t { kOk, kMiss, kFault };

  TierFuture Enqueue(Job job) {
    auto state = job.state;
    if (job.items.empty()) {
      if (job.kind == Job::Kind::kPut) {
        stats_.RecordPut(0, job.refused, 0, job.start_us);
      } else {
        stats_.RecordGet(0, state->ok.size(), 0, job.start_us);
      }
      state->Finish();
      return TierFuture(std::move(state));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    work_cv_.notify_one();
    return TierFuture(std::move(state));
  }

  void WorkerLoop();
  // Runs `cmds` on server `s` pipelined; fills `out` (one per cmd).
  void Exchange(Server& s, std::vector<Job>& jobs, const std::vector<Cmd>& cmds, std::vector<Outcome>* out);
  bool Connect(Server& s);
  void MarkDown(Server& s, const std::string& why);
  void Complete(std::vector<Job>& jobs, const std::vector<std::vector<Outcome>>& outcomes);

  const RedisTierOptions o_;
  const Clock* clock_;
  FaultLog log_;
  TierStats stats_;
  std::unique_ptr<ConsistentHashRing> ring_;
  std::vector<Server> servers_;  // the worker's alone

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::unique_ptr<TierIndex> index_;  // GUARDED_BY(mu_)
  std::deque<Job> jobs_;              // GUARDED_BY(mu_)
  bool stop_ = false;                 // GUARDED_BY(mu_)
  std::thread worker_;
};

bool RedisTier::Connect(Server& s) {
  if (s.ctx != nullptr) return true;
  if (clock_->Now() < s.down_until) return false;
  const timeval ct = ToTimeval(o_.connect_timeout);
  redisContext* c = redisConnectWithTimeout(s.address.host.c_str(), s.address.port, ct);
  if (c == nullptr || c->err != 0) {
    const std::string why = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    MarkDown(s, fmt::format("cannot connect: {}", why));
    return false;
  }
  const timeval ot = ToTimeval(o_.op_timeout);
  redisSetTimeout(c, ot);
  s.ctx = c;
  if (s.backoff != 0) log_.Note(fmt::format("server {}: reconnected", s.label));
  s.backoff = 0;
  return true;
}

void RedisTier::MarkDown(Server& s, const std::string& why) {
  if (s.ctx != nullptr) {
    redisFree(s.ctx);
    s.ctx = nullptr;
  }
  s.backoff = s.backoff == 0 ? o_.backoff_initial : std::min(s.backoff * 2, o_.backoff_max);
  s.down_until = clock_->Now() + s.backoff;
  log_.Report(s.label, fmt::format("server {}: {}; its blocks miss; retrying in {} ms", s.label, why,
                                   s.backoff / 1000));
}

void RedisTier::Exchange(Server& s, std::vector<Job>& jobs, const std::vector<Cmd>& cmds,
                         std::vector<Outcome>* out) {
  out->assign(cmds.size(), Outcome::kFault);
  size_t end = 0;
  for (size_t at = 0; at < cmds.size(); at = end) {
    if (!Connect(s)) return;  // Down: the rest fail at once
    // One pipelined round: up to max_batch commands or kMaxPipelineBytes.
    end = at;
    size_t bytes = 0;
    while (end < cmds.size() && end - at < o_.max_batch && (end == at || bytes < kMaxPipelineBytes)) {
      const Job& job = jobs[cmds[end].job];
      bytes += job.kind == Job::Kind::kPut || job.kind == Job::Kind::kGet ? o_.bytes_per_block : 64;
      ++end;
    }
    for (size_t i = at; i < end; ++i) {
      const Job& job = jobs[cmds[i].job];
      const Job::Item& it = job.items[cmds[i].item];
      switch (job.kind) {
        case Job::Kind::kPut:
          redisAppendCommand(s.ctx, "SET %b %b EX %lld", it.key.data(), it.key.size(), it.value.get(),
                             it.value_size, static_cast<long long>(o_.ttl_seconds));
          break;
        case Job::Kind::kGet:
          redisAppendCommand(s.ctx, "GET %b", it.key.data(), it.key.size());
          break;
        case Job::Kind::kLookup:
          redisAppendCommand(s.ctx, "EXISTS %b", it.key.data(), it.key.size());
          break;
        case Job::Kind::kDelete:
          redisAppendCommand(s.ctx, "DEL %b", it.key.data(), it.key.size());
          break;
      }
    }
    for (size_t i = at; i < end; ++i) {
      void* raw = nullptr;
      if (redisGetReply(s.ctx, &raw) != REDIS_OK || raw == nullptr) {
        // A timeout (op_timeout) shows as an I/O error too.
        MarkDown(s, fmt::format("no reply ({})", s.ctx->errstr));
        return;
      }
      redisReply* r = static_cast<redisReply*>(raw);
      Job& job = jobs[cmds[i].job];
      Job::Item& it = job.items[cmds[i].item];
      Outcome& o = (*out)[i];
      if (r->type == REDIS_REPLY_ERROR) {
        o = Outcome::kFault;
        log_.Report(s.label + " error", fmt::format("server {}: {}", s.label, std::string(r->str, r->len)));
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
                                                 s.label, it.key, r->len));
            }
            break;
          }
        }
      }
      freeReplyObject(r);
    }
  }
}

void RedisTier::WorkerLoop() {
  for (;;) {
    std::vector<Job> jobs;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and drained
      while (!jobs_.empty()) {
        jobs.push_back(std::move(jobs_.front()));
        jobs_.pop_front();
      }
    }
    // Commands per server, in job order, so a DEL and a later SET of one key
    // reach its server in the order they were called.
    std::vector<std::vector<Cmd>> per_server(servers_.size());
    for (size_t j = 0; j < jobs.size(); ++j) {
      for (size_t i = 0; i < jobs[j].items.size(); ++i) {
        per_server[static_cast<size_t>(ring_->ServerFor(jobs[j].items[i].block.hash))].push_back({j, i});
      }
    }
    std::vector<std::vector<Outcome>> outcomes(jobs.size());
    for (size_t j = 0; j < jobs.size(); ++j) outcomes[j].assign(jobs[j].items.size(), Outcome::kFault);
    for (size_t s = 0; s < servers_.size(); ++s) {
      if (per_server[s].empty()) continue;
      std::vector<Outcome> out;
      Exchange(servers_[s], jobs, per_server[s], &out);
      for (size_t k = 0; k < per_server[s].size(); ++k) outcomes[per_server[s][k].job][per_server[s][k].item] = out[k];
    }
    Complete(jobs, outcomes);
  }
}

void RedisTier::Complete(std::vector<Job>& jobs, const std::vector<std::vector<Outcome>>& outcomes) {
  uint64_t faults = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      for (size_t i = 0; i < job.items.size(); ++i) {
        const Outcome o = outcomes[j][i];
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
        if (o == Outcome::kOk) job.state->ok[it.index] = 1;
      }
    }
  }
  if (faults > 0) stats_.AddFaults(faults);
  for (Job& job : jobs) {
    if (job.kind == Job::Kind::kDelete) continue;
    const uint64_t ok = static_cast<uint64_t>(std::count(job.state->ok.begin(), job.state->ok.end(), uint8_t{1}));
    if (job.kind == Job::Kind::kPut) {
      stats_.RecordPut(ok, job.state->ok.size() - ok, ok * o_.bytes_per_block, job.start_us);
    } else {
      const uint64_t bytes = job.kind == Job::Kind::kGet ? ok * o_.bytes_per_block : 0;
      stats_.RecordGet(ok, job.state->ok.size() - ok, bytes, job.start_us);
    }
    job.state->Finish();
  }
}

}  // namespace

Result<std::unique_ptr<Tier>> MakeRedisTier(const RedisTierOptions& o) {
  if (o.servers.empty()) return InvalidArgument("redis tier: at least one server is required");
  for (const auto& s : o.servers) {
    if (s.host.empty() || s.port < 1 || s.port > 65535) {
      return InvalidArgument(fmt::format("redis tier: server '{}:{}': need a host and a port from 1 to 65535",
                                         s.host, s.port));
    }
  }
  if (o.model_id.empty()) return InvalidArgument("redis tier: model_id is required (it prefixes every key)");
  if (o.bytes_per_block == 0) return InvalidArgument("redis tier: bytes_per_block must be >= 1");
  if (o.ttl_seconds < 1) return InvalidArgument(fmt::format("redis tier: ttl_seconds {}: must be >= 1", o.ttl_seconds));
  if (o.max_batch == 0) return InvalidArgument("redis tier: max_batch must be >= 1");
  if (o.connect_timeout <= 0 || o.op_timeout <= 0 || o.backoff_initial <= 0 || o.backoff_max < o.backoff_initial) {
    return InvalidArgument("redis tier: timeouts must be > 0 and backoff_max >= backoff_initial");
  }
  auto tier = std::make_unique<RedisTier>(o);
  KVSTACK_RETURN_IF_ERROR(tier->Init());
  return std::unique_ptr<Tier>(std::move(tier));
}

}  // namespace kvstack
