// KvEventFeed: carries the engine's KV events to the publisher and answers
// the fleet's questions about this worker's blocks.
//
// A pump thread asks the engine thread (EngineLoop::Call) every few
// milliseconds to drain the cache's event log into the publisher's queue:
// the engine thread only moves a batch; encoding and sending happen on the
// publisher's thread. The snapshot (GET /v1/cache/blocks) drains in the same
// call that lists the blocks, so it can say exactly which batches it covers:
// every batch below its next_seq. A subscriber that starts late, restarts, or
// lost batches the replay buffer no longer has, takes the snapshot and then
// applies batches from next_seq on.
//
// The first batch a feed publishes is AllBlocksCleared: a restarted worker
// holds nothing, and its subscribers forget what it held. If the cache's log
// ever overflowed between two drains (a gap in its event numbers), the batch
// published instead is AllBlocksCleared followed by every block held now.
//
// With tiers, the chain's stores and removals (TierEventCollector) go out in
// the same pump, as events whose medium names the tier, and the snapshot lists
// every tier's blocks beside the device pool's.
//
// Thread safety: Snapshot() and Info() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "kvstack/server.h"
#include "server/engine_loop.h"
#include "server/kv_event_publisher.h"
#include "server/log.h"
#include "server/tier_event_collector.h"

namespace httplib {
class Server;
}

namespace kvstack::server {

struct ServerContext;

class KvEventFeed {
 public:
  // Binds the publisher's sockets and starts the pump. REQUIRES: `loop`
  // outlives the feed. InvalidArgument names a bad endpoint flag.
  static Result<std::unique_ptr<KvEventFeed>> Start(const ServerOptions::KvEvents& options, EngineLoop* loop,
                                                    Log log);
  // Stops the pump, then the publisher (which sends what is queued).
  ~KvEventFeed();
  KvEventFeed(const KvEventFeed&) = delete;
  KvEventFeed& operator=(const KvEventFeed&) = delete;

  // {"next_seq", "block_size", "tiers": {"GPU": [{"hash", "priority"}...]}}.
  // Unavailable once the engine thread has stopped.
  Result<nlohmann::json> Snapshot();
  // Endpoints, topic, block size, hash seed and model identity: what a router
  // needs to subscribe and to compute the same block keys.
  nlohmann::json Info() const;

 private:
  KvEventFeed(EngineLoop* loop, std::unique_ptr<KvEventPublisher> publisher, Log log, TierChain* tiers);
  void Pump();
  // Engine thread: drains the cache's log into the publisher.
  void DrainOnEngineThread(Engine& engine);

  EngineLoop* const loop_;
  const std::unique_ptr<KvEventPublisher> publisher_;
  Log log_;
  uint64_t next_event_seq_ = 1;  // engine thread only: the cache log's next event number
  std::atomic<uint64_t> resyncs_{0};
  TierChain* const tiers_;                               // the engine's; null without tiers
  const std::shared_ptr<TierEventCollector> tier_events_;  // null without tiers

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::thread pump_;       // last
};

// GET /v1/cache/blocks (the snapshot), GET /v1/kv-events (Info()).
void AddKvEventRoutes(httplib::Server& http, ServerContext& ctx, KvEventFeed* feed);

}  // namespace kvstack::server
