// GET /v1/memory (the design-review numbers as JSON; see memory_report.h) and
// GET / (the dashboard that charts them live; see dashboard.html).
//
// The cache's numbers are read on the engine thread (EngineLoop::Call), the
// workload's from ServerContext::workload. /v1/memory is an operator view
// (every tenant's figures, under their labels): it wants the admin key once
// any key is set. The dashboard page itself is static, holds no data and
// needs no key: it sends the admin key it is given in its URL fragment
// (/#key=ADMIN_KEY, never sent to the server as part of the URL) or asks for
// it after a 401.
#include "kvstack/clock.h"
#include "server/memory_report.h"
#include "server/server_context.h"

namespace kvstack::server {

extern const char* const kDashboardHtml;

namespace {

// How many hot prefixes /v1/memory lists.
constexpr size_t kTopPrefixes = 20;

}  // namespace

void AddMemoryRoutes(httplib::Server& http, ServerContext& ctx) {
  http.Get("/v1/memory", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.PrecheckOperator(req)) return SendError(res, *e);
    auto in = ctx.loop->Call([](Engine& e) {
      MemoryReportInputs r;
      r.info = e.info();
      r.cache = e.cache().Metrics();
      r.workspace_bytes = e.workspace_bytes();
      r.preemptions = e.preemptions();
      if (TierChain* t = e.tiers()) {
        r.tiers = t->Metrics();
        r.onboard = e.onboard_metrics();
      }
      return r;
    });
    if (!in.ok()) return SendError(res, FromStatus(in.status()));
    in->cache.by_tenant = CountersByLabel(in->cache.by_tenant, *ctx.tenants);
    in->model_name = ctx.model_name;
    in->random_weights = ctx.random_weights;
    in->in_flight = ctx.gate.in_flight();
    // RequestMetrics carry the engine's clock, which is the default steady one.
    in->workload = ctx.workload.Get(SteadyClock::Default().Now(), kTopPrefixes);
    SendJson(res, 200, MemoryReport(*in));
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
    res.set_header("Cache-Control", "no-store");
    res.set_content(kDashboardHtml, "text/html; charset=utf-8");
  });
}

}  // namespace kvstack::server
