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
#include "server/access.h"
#include "server/chat_format.h"
#include "server/engine_loop.h"
#include "server/http_guard.h"
#include "server/log.h"
#include "server/metrics_recorder.h"
#include "server/openai_request.h"
#include "server/tenant_label.h"
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
        gate(int64_t{o.engine.max_running} + o.max_queue),
        access(ClientKeys(o), o.admin_key, o.public_metrics),
        tenant_series(static_cast<size_t>(o.max_tenant_labels)) {}

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
  const AccessControl access;
  std::unique_ptr<const TenantLabeler> tenants;  // set by Start: never null while serving
  TenantSeriesCap tenant_series;                 // /metrics' tenant label values

  // A client endpoint: 503 while draining, 401 without a client key; nullopt
  // when the request may go on.
  std::optional<ApiError> Precheck(const httplib::Request& req) const {
    if (draining.load()) return Draining();
    return access.Check(req, Access::kClient);
  }
  // An operator view (every tenant's figures): 401 without the admin key.
  std::optional<ApiError> PrecheckOperator(const httplib::Request& req, Access kind = Access::kOperator) const {
    if (draining.load()) return Draining();
    return access.Check(req, kind);
  }

  static std::vector<std::string> ClientKeys(const ServerOptions& o) {
    std::vector<std::string> keys = o.api_keys;
    if (!o.api_key.empty()) keys.push_back(o.api_key);
    return keys;
  }
};

// Route registration, one function per group of endpoints.
void AddCompletionRoutes(httplib::Server& http, ServerContext& ctx);  // /v1/completions, /v1/chat/completions
void AddCacheRoutes(httplib::Server& http, ServerContext& ctx);       // /v1/cache/pin, /v1/cache/stats
void AddInfoRoutes(httplib::Server& http, ServerContext& ctx);        // /v1/models, /health
void AddMetricsRoutes(httplib::Server& http, ServerContext& ctx);     // /metrics (Prometheus text)
void AddMemoryRoutes(httplib::Server& http, ServerContext& ctx);      // /v1/memory, / (the dashboard)
void AddTokenizeRoutes(httplib::Server& http, ServerContext& ctx);    // /tokenize, /detokenize

}  // namespace kvstack::server
