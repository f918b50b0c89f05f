// Server: kvstack's OpenAI-compatible HTTP server (`kvstack serve`).
//
// One engine thread owns the Engine (and so the KV cache) and loops: take the
// commands HTTP handlers queued (submit, cancel, pin, unpin, read metrics),
// run one Step(), hand each GenerationEvent to its request's channel. HTTP
// handler threads parse and validate a request, queue it, then wait for its
// events (a complete response) or forward them as they come (server-sent
// events). No handler thread ever touches the Engine.
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models,
// GET /health, POST /v1/cache/pin, GET /v1/cache/pin, DELETE
// /v1/cache/pin/{id}, POST /v1/cache/prefetch, POST /tokenize, POST
// /detokenize; the operator views GET /v1/cache/stats, GET /v1/memory, GET
// /metrics and the dashboard at GET / (see ServerOptions' access fields).
// Requests carry kvstack's KV controls besides OpenAI's
// fields: cache_salt (tenant isolation), retention (priority per prompt token
// range), priority (preemption) and session_id.
//
// Callers: `kvstack serve` (src/cli/serve_command.cpp) and integration tests.
// Thread safety: Start() returns a running server; Shutdown() and Wait() may be
// called from any thread, any number of times.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/engine.h"
#include "kvstack/status.h"

namespace kvstack {

// An operator's name for a tenant (--tenant-names): `hash` is the tenant's
// label or the hex SHA-256 of its cache_salt, so the file never holds a salt.
struct TenantName {
  std::string name;
  std::string hash;
};

// Every limit and setting of a server. Read the environment, the command line
// and files at the edge (the CLI) and pass the results here.
struct ServerOptions {
  // The GGUF model. Empty: the demo model (random weights, the "stories"
  // shape), generated into `model_cache_dir` on first use.
  std::string model_path;
  // Where the demo model is kept. REQUIRES: set when model_path is empty (see
  // DefaultModelCacheDir).
  std::string model_cache_dir;
  // The model name in responses and GET /v1/models. Empty: the model file's
  // name without ".gguf".
  std::string served_model_name;

  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see Server::port())
  // A client key: when any is set (here or in api_keys), the client endpoints
  // want "Authorization: Bearer <key>" (see Access below).
  std::string api_key;

  // The engine: every EngineOptions field reaches the server as it is
  // (threads, KV memory, block size, KV types, context, batch budget,
  // max_running, eviction policy, pin cap, hash seed, ...). The server sets
  // model_path (from the field above, or the demo model), make_tiers (from
  // `tiers` below) and onboard_only_when_faster itself.
  EngineOptions engine;

  // Admission limits. A generation request is refused with 429 when
  // engine.max_running requests run and max_queue more wait already.
  int32_t max_queue = 64;
  size_t max_body_bytes = 4u << 20;  // larger request bodies: 413
  int32_t max_tokens_limit = 4096;   // the most max_tokens a request may ask for
  int32_t max_n = 8;                 // the most choices (n) a request may ask for

  // Tiers below the device pool (host RAM -> local disk -> Redis). Each is off
  // until given a size, a directory or an address. The disk and Redis tiers
  // are fed through a host tier (64 MiB when host_bytes is 0).
  struct Tiers {
    int64_t host_bytes = 0;              // --host-tier
    std::string disk_dir;                // --disk-tier
    int64_t disk_bytes = 4ll << 30;      // --disk-tier-size
    std::vector<std::string> redis;      // --redis HOST:PORT, one or more
    int64_t redis_ttl_s = 3600;          // --redis-ttl
    // --redis-cluster: seed nodes of one Redis Cluster (HOST:PORT each); the
    // shared tier then follows the cluster's slot map instead of hashing
    // over --redis servers (give one or the other).
    std::vector<std::string> redis_cluster;
    bool redis_read_from_replicas = false;  // --redis-read-from-replicas
    int32_t offload_min_priority = 50;   // --offload-min-priority: keep blocks at least this durable,
    int32_t offload_min_hits = 2;        // --offload-min-hits: or hit at least this often
    bool onboard_always = false;         // --onboard-always: skip the bandwidth-vs-recompute check
    bool enabled() const { return host_bytes > 0 || !disk_dir.empty() || !redis.empty() || !redis_cluster.empty(); }
  } tiers;

  // When set, every finished request is appended to this file in kvstack's
  // trace format (for `kvstack sim --trace FILE --format kvstack`).
  std::string record_trace;

  // Access and tenant isolation (docs/SECURITY.md). Client keys open the
  // client endpoints (completions, chat, models, pins, prefetch); the admin
  // key opens the operator views too (/metrics, /v1/memory, /v1/cache/stats),
  // which need it whenever any key is set (401 without), but for /metrics
  // under public_metrics. No key at all: everything is open.
  std::vector<std::string> api_keys;  // --api-key (repeatable), --api-keys-file
  std::string admin_key;              // --admin-key, --admin-key-file
  bool public_metrics = false;        // --public-metrics
  // A cache_salt is never shown: views show a tenant label, the HMAC-SHA-256
  // of the salt keyed by this secret, truncated (empty: a random secret per
  // process, so labels change on restart), or the operator's name for it.
  std::string tenant_label_key;         // --tenant-label-key, --tenant-label-key-file
  std::vector<TenantName> tenant_names; // --tenant-names FILE
  int32_t max_tenant_labels = 100;      // --max-tenant-labels: /metrics sums the rest as "other"

  // KV events out of the process (vLLM's ZeroMQ protocol, kv_event_wire.h),
  // for KV-aware routers: off until given an endpoint. GET /v1/kv-events says
  // where they are; GET /v1/cache/blocks is the snapshot to start from.
  struct KvEvents {
    std::string endpoint;         // --kv-events: the PUB socket, bound (tcp://*:5557, tcp://127.0.0.1:*)
    std::string replay_endpoint;  // --kv-events-replay: the ROUTER socket; empty: no replay
    std::string topic = "kv-events";
    size_t replay_batches = 10000;  // batches kept for replay
    bool enabled() const { return !endpoint.empty(); }
  } kv_events;

  // Where log lines go (one line each, no trailing newline). Empty: stderr.
  std::function<void(std::string_view)> log;
};

// The demo model's folder: $XDG_CACHE_HOME/kvstack, else $HOME/.cache/kvstack,
// else ./.kvstack-cache. Pass the environment's values (nullptr when unset):
// options are read at the edge, never deep inside.
std::string DefaultModelCacheDir(const char* xdg_cache_home, const char* home);

// Parses a --tenant-names file: one "NAME HASH" a line (HASH: a tenant label
// or the hex SHA-256 of the salt, `printf %s SALT | sha256sum`), blank lines
// and lines starting with '#' skipped. InvalidArgument names the file and
// line; it never quotes a hash.
Result<std::vector<TenantName>> ParseTenantNames(std::string_view text, std::string_view file);

class Server {
 public:
  // Loads (or first generates) the model, binds host:port and starts serving.
  // InvalidArgument names a bad option; Unavailable when the address cannot
  // be bound; the model loader's errors otherwise.
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options);

  // Shutdown() then Wait().
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port bound (the chosen one when options.port was 0).
  int port() const;
  // "http://host:port".
  std::string url() const;
  // The name responses carry in "model".
  const std::string& model_name() const;

  // Graceful stop: new requests get 503 from now on, requests in flight run
  // to the end, then the listener and the engine thread stop. Returns at once;
  // Wait() blocks until the stop is complete. Idempotent.
  void Shutdown();
  // Blocks until the server has stopped (after Shutdown(), or a failure of the
  // listener). OK, or the failure.
  Status Wait();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstack
