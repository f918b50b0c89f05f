// ServerContext: what every route handler shares. Owned by Server::Impl and
// alive until the HTTP server has stopped.
//
// Thread safety: immutable after Start() but for the atomics, the gate, the
// recorder and the loop, which are thread-safe themselves.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "kvstack/server.h"
#include "server/chat_format.h"
#include "server/engine_loop.h"
#include "server/http_guard.h"
#include "server/log.h"
#include "server/metrics_recorder.h"
#include "server/openai_request.h"
#include "server/trace_recorder.h"
#include "server/workload_recorder.h"

namespace kvstack::server {

struct ServerContext {
  ServerContext(const ServerOptions& o, EngineLoop* l, std::unique_ptr<ChatFormat> c, std::string name, Log lg)
      : options(o),
        loop(l),
        chat(std::move(c)),
        model_name(std::move(name)),
        log(std::move(lg)),
        gate(int64_t{o.engine.max_running} + o.max_queue) {}

  const ServerOptions options;
  EngineLoop* const loop;
  const std::unique_ptr<ChatFormat> chat;
  const std::string model_name;
  const Log log;
  RequestLimits limits;
  int64_t started_unix = 0;
  uint64_t id_salt = 0;  // makes response ids and default seeds differ across restarts
  bool random_weights = false;  // serving the generated demo model

  AdmissionGate gate;
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_request{1};
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> disconnected{0};  // cancelled because the client went away
  std::atomic<uint64_t> refused_busy{0};  // 429s
  MetricsRecorder recorder;  // every finished request, for GET /metrics
  WorkloadRecorder workload;  // every finished request, for GET /v1/memory
  std::unique_ptr<TraceRecorder> trace;  // --record-trace; null when off

  // 503 while draining, 401 without the key; nullopt when the request may go on.
  std::optional<ApiError> Precheck(const httplib::Request& req) const {
    if (draining.load()) return Draining();
    return CheckApiKey(req, options.api_key);
  }
};

// Route registration, one function per group of endpoints.
void AddCompletionRoutes(httplib::Server& http, ServerContext& ctx);  // /v1/completions, /v1/chat/completions
void AddCacheRoutes(httplib::Server& http, ServerContext& ctx);       // /v1/cache/pin, /v1/cache/stats
void AddInfoRoutes(httplib::Server& http, ServerContext& ctx);        // /v1/models, /health
void AddMetricsRoutes(httplib::Server& http, ServerContext& ctx);     // /metrics (Prometheus text)
void AddMemoryRoutes(httplib::Server& http, ServerContext& ctx);      // /v1/memory, / (the dashboard)

}  // namespace kvstack::server
