// GET /v1/models (the one served model) and GET /health (liveness, and the
// requests in flight; 503 while draining so load balancers move away).
#include "server/openai_response.h"
#include "server/server_context.h"

namespace kvstack::server {

void AddInfoRoutes(httplib::Server& http, ServerContext& ctx) {
  http.Get("/v1/models", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.Precheck(req)) return SendError(res, *e);
    SendJson(res, 200, ModelsResponse(ctx.model_name, ctx.started_unix, ctx.limits.context_tokens));
  });
  // No API key: health checks come from infrastructure that has none.
  http.Get("/health", [&ctx](const httplib::Request&, httplib::Response& res) {
    const bool draining = ctx.draining.load();
    SendJson(res, draining ? 503 : 200,
             {{"status", draining ? "draining" : "ok"},
              {"model", ctx.model_name},
              {"requests_in_flight", ctx.gate.in_flight()},
              {"requests_completed", ctx.completed.load()},
              {"requests_disconnected", ctx.disconnected.load()},
              {"requests_refused_busy", ctx.refused_busy.load()}});
  });
}

}  // namespace kvstack::server
