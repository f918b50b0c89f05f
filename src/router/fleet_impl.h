// FleetRouter's parts, shared by its files: the workers, the index and the
// router under one lock, the event subscribers, the proxy, the views.
//
// Locking: mu is the only lock for the index, the router and each worker's
// counters that are not atomics. It is never held across network I/O.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "kvstack/fleet_router.h"
#include "kvstack/router.h"
#include "kvstack/router_index.h"
#include "kvstack/tokenizer.h"
#include "server/chat_format.h"

namespace kvstack::fleet {

// What a worker says about its events (GET /v1/kv-events).
struct EventInfo {
  std::string endpoint;
  std::string replay_endpoint;
  std::string topic;
  int32_t block_size = 0;
  uint64_t hash_seed = 0;
  std::string model_identity;
  std::string cache_identity;  // the model's plus the KV layout: what block keys root in
};

struct Worker {
  WorkerId id = 0;
  std::string url;  // as given
  bool foreign = false;  // another engine: no /v1/kv-events, no snapshot
  std::string host;
  int port = 0;
  std::string key;  // --worker-key: bearer token of the router's own calls
  EventInfo events;  // GUARDED_BY(Impl::mu)

  std::atomic<bool> healthy{true};
  std::atomic<bool> resubscribe{false};  // set by the health thread when it comes back
  std::atomic<int32_t> in_flight{0};     // requests this router has on it
  std::atomic<int64_t> queued_blocks{0}; // their prompt blocks not yet answered
  std::atomic<int32_t> reported_in_flight{0};  // from its /health
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> failures{0};     // connections failed or streams broken
  std::atomic<uint64_t> prompt_tokens{0};
  std::atomic<uint64_t> cached_tokens{0};     // reported by the worker
  std::atomic<uint64_t> predicted_tokens{0};  // the router's credit at routing time
  std::atomic<uint64_t> snapshots{0};
  std::atomic<uint64_t> replays{0};
  std::atomic<double> event_lag_s{0};    // now - ts of the last batch applied
  std::thread subscriber;
};

struct Metrics {
  std::atomic<uint64_t> decisions[kNumRouteReasons] = {};
  std::atomic<uint64_t> no_worker{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> broken_streams{0};
};

}  // namespace kvstack::fleet

namespace kvstack {

struct FleetRouter::Impl {
  FleetRouterOptions options;
  std::function<void(std::string_view)> log;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<server::ChatFormat> chat;
  std::string model_identity;
  std::string cache_identity;  // every kvstack worker's (the same): request keys root in it
  int32_t block_size = 0;
  BlockHasher hasher;

  std::mutex mu;
  std::unique_ptr<BlockIndex> index;  // GUARDED_BY(mu)
  std::unique_ptr<Router> router;     // GUARDED_BY(mu)
  std::vector<std::unique_ptr<fleet::Worker>> workers;
  fleet::Metrics metrics;

  std::atomic<bool> stopping{false};
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  std::thread health;
  std::thread listener;
  httplib::Server http;
  int port = 0;
  Status listen_status;

  // Loads for Router::Route, one per worker. REQUIRES: mu held.
  std::vector<WorkerLoad> Loads() const;
  // Sleeps up to `ms`; false once stopping.
  bool SleepFor(int ms);
};

namespace fleet {

// GET /v1/kv-events of a worker. FailedPrecondition naming the worker.
Result<EventInfo> FetchEventInfo(const Worker& w);
// The subscriber thread of one worker: snapshot, live events, gap recovery.
void RunSubscriber(FleetRouter::Impl& impl, Worker& w);
// The health thread: every worker, every health_interval_ms.
void RunHealth(FleetRouter::Impl& impl);
// POST /v1/completions and /v1/chat/completions.
void AddProxyRoutes(FleetRouter::Impl& impl);
// GET /v1/fleet, /metrics, /health, /.
void AddViewRoutes(FleetRouter::Impl& impl);

}  // namespace fleet
}  // namespace kvstack
