// FleetRouter: `kvstack router`, an OpenAI-compatible front for a fleet of
// `kvstack serve --kv-events` workers that sends each request where its
// prefix is warm.
//
// On start it asks every worker where its KV events are (GET /v1/kv-events),
// refuses to start unless every worker serves this router's model identity
// and one block size, takes each worker's snapshot (GET /v1/cache/blocks) and
// subscribes to its events, which feed a BlockIndex (router_index.h). Each
// request is tokenized as the worker will tokenize it (the same GGUF, chat
// template and parsing code as `kvstack serve`), keyed as the worker will key
// it (model identity and tenant cache_salt in the root), scored by Router
// (router.h), and proxied: bodies and errors pass through unchanged, streams
// token by token.
//
// Faults: a worker whose health check or connection fails is marked down at
// once (checks every 250 ms) and gets nothing until it answers again;
// a request that has not started streaming goes to another worker; one whose
// stream breaks ends with an SSE error event. A gap in a worker's event
// sequence is filled from its replay socket, else from its snapshot; a
// worker that restarts (its events start again at 0 with AllBlocksCleared)
// is re-read from its snapshot.
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models
// (proxied); GET /health; GET /v1/fleet (workers, health, load, blocks per
// tier, durable context, hit rates); GET /metrics; GET / (the fleet page).
// Views never show a request's cache_salt.
//
// Thread safety: Start() returns a running router; Shutdown()/Wait() from any
// thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/router.h"
#include "kvstack/status.h"

namespace kvstack {

struct FleetRouterOptions {
  std::vector<std::string> workers;  // http://host:port, one per worker
  // Workers of another engine (vLLM, SGLang) that publish vLLM's events:
  // "http://HOST:PORT=tcp://EVENTS[,tcp://REPLAY]". Their blocks are keyed by
  // chaining kvstack's keys over the token ids each BlockStored carries (see
  // router_index.h), so they match requests without a cache_salt only; they
  // have no snapshot (a gap replay cannot fill clears their entries).
  std::vector<std::string> foreign_workers;
  std::string model_path;            // the workers' GGUF
  // Sent as "Authorization: Bearer KEY" on the router's own calls to its
  // kvstack workers (event info, snapshots, health) when they run with
  // --api-key; empty: none. Clients' requests pass their own header through.
  std::string worker_key;
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port
  RouterOptions routing;
  int health_interval_ms = 250;
  // Fault injection for tests: drop every Nth live event batch of each
  // worker before it is applied (0: off), forcing gaps to recover from.
  int drop_every_nth_batch = 0;
  std::function<void(std::string_view)> log;  // empty: stderr
};

class FleetRouter {
 public:
  // FailedPrecondition naming the worker when one cannot be reached, has no
  // KV events, or serves another model or block size; InvalidArgument for a
  // bad option; Unavailable when the port cannot be bound.
  static Result<std::unique_ptr<FleetRouter>> Start(const FleetRouterOptions& options);
  ~FleetRouter();
  FleetRouter(const FleetRouter&) = delete;
  FleetRouter& operator=(const FleetRouter&) = delete;

  int port() const;
  std::string url() const;
  void Shutdown();
  Status Wait();

  struct Impl;

 private:
  explicit FleetRouter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstack
