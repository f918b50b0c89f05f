// What the router shows: GET /health, GET /v1/fleet, GET /metrics, GET /v1/models
// (proxied to a healthy worker) and the fleet page at GET /. No view shows
// a request's cache_salt: blocks are counted, never named by tenant.
#include <fmt/format.h>

#include "router/fleet_impl.h"

namespace kvstack::fleet {
namespace {

nlohmann::json FleetJson(FleetRouter::Impl& impl) {
  nlohmann::json workers = nlohmann::json::array();
  int64_t entries;
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    entries = impl.index->TotalEntries();
    for (const auto& wp : impl.workers) {
      const Worker& w = *wp;
      const WorkerIndexStats s = impl.index->Stats(w.id);
      const uint64_t prompt = w.prompt_tokens.load();
      workers.push_back({
          {"url", w.url},
          {"healthy", w.healthy.load()},
          {"in_flight", w.in_flight.load()},
          {"reported_in_flight", w.reported_in_flight.load()},
          {"requests", w.requests.load()},
          {"failures", w.failures.load()},
          {"blocks", {{"GPU", s.blocks[0]}, {"CPU", s.blocks[1]}, {"DISK", s.blocks[2]}, {"REDIS", s.blocks[3]}}},
          {"durable_blocks", s.durable},
          {"predicted_blocks", s.predicted},
          {"prompt_tokens", prompt},
          {"cached_tokens", w.cached_tokens.load()},
          {"predicted_hit_tokens", w.predicted_tokens.load()},
          {"hit_rate", prompt ? double(w.cached_tokens.load()) / double(prompt) : 0.0},
          {"events", {{"next_seq", s.next_seq}, {"applied", s.events}, {"gaps", s.gaps},
                      {"snapshots", w.snapshots.load()}, {"replays", w.replays.load()},
                      {"lag_s", w.event_lag_s.load()}}},
      });
    }
  }
  nlohmann::json decisions = nlohmann::json::object();
  for (int r = 0; r < kNumRouteReasons; ++r) {
    decisions[std::string(RouteReasonName(static_cast<RouteReason>(r)))] = impl.metrics.decisions[r].load();
  }
  return {{"object", "fleet"},
          {"policy", RoutingPolicyName(impl.router->options().policy)},
          {"model_identity", impl.model_identity},
          {"block_size", impl.block_size},
          {"index_entries", entries},
          {"decisions", decisions},
          {"retries", impl.metrics.retries.load()},
          {"broken_streams", impl.metrics.broken_streams.load()},
          {"no_worker", impl.metrics.no_worker.load()},
          {"workers", workers}};
}

std::string MetricsText(FleetRouter::Impl& impl) {
  const nlohmann::json f = FleetJson(impl);
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  family("kvstack_router_requests_total", "counter", "Requests sent to each worker.");
  for (const auto& w : f["workers"]) {
    out += fmt::format("kvstack_router_requests_total{{worker=\"{}\"}} {}\n", w["url"].get<std::string>(),
                       w["requests"].get<uint64_t>());
  }
  family("kvstack_router_decisions_total", "counter", "Routing decisions by reason.");
  for (const auto& [reason, n] : f["decisions"].items()) {
    out += fmt::format("kvstack_router_decisions_total{{reason=\"{}\"}} {}\n", reason, n.get<uint64_t>());
  }
  family("kvstack_router_predicted_hit_tokens_total", "counter",
         "Prompt tokens the router expected each worker to hold when it routed.");
  for (const auto& w : f["workers"]) {
    out += fmt::format("kvstack_router_predicted_hit_tokens_total{{worker=\"{}\"}} {}\n", w["url"].get<std::string>(),
                       w["predicted_hit_tokens"].get<uint64_t>());
  }
  family("kvstack_router_reported_hit_tokens_total", "counter",
         "Prompt tokens each worker reported served from its cache (usage.cached_tokens).");
  for (const auto& w : f["workers"]) {
    out += fmt::format("kvstack_router_reported_hit_tokens_total{{worker=\"{}\"}} {}\n", w["url"].get<std::string>(),
                       w["cached_tokens"].get<uint64_t>());
  }
  family("kvstack_router_worker_up", "gauge", "1 while the worker answers its health checks.");
  for (const auto& w : f["workers"]) {
    out += fmt::format("kvstack_router_worker_up{{worker=\"{}\"}} {}\n", w["url"].get<std::string>(),
                       w["healthy"].get<bool>() ? 1 : 0);
  }
  family("kvstack_router_index_blocks", "gauge", "Blocks the index holds per worker and tier.");
  for (const auto& w : f["workers"]) {
    for (const auto& [tier, n] : w["blocks"].items()) {
      out += fmt::format("kvstack_router_index_blocks{{worker=\"{}\",medium=\"{}\"}} {}\n", w["url"].get<std::string>(),
                         tier, n.get<int64_t>());
    }
  }
  family("kvstack_router_index_entries", "gauge", "(worker, block) entries in the index.");
  out += fmt::format("kvstack_router_index_entries {}\n", f["index_entries"].get<int64_t>());
  family("kvstack_router_event_gaps_total", "counter", "Event batches that arrived past a gap.");
  for (const auto& w : f["workers"]) {
    out += fmt::format("kvstack_router_event_gaps_total{{worker=\"{}\"}} {}\n", w["url"].get<std::string>(),
                       w["events"]["gaps"].get<uint64_t>());
  }
  family("kvstack_router_event_lag_seconds", "gauge", "Now minus the timestamp of the last batch applied.");
  for (const auto& w : f["workers"]) {
    out += fmt::format("kvstack_router_event_lag_seconds{{worker=\"{}\"}} {}\n", w["url"].get<std::string>(),
                       w["events"]["lag_s"].get<double>());
  }
  family("kvstack_router_retries_total", "counter", "Requests moved to another worker before they started.");
  out += fmt::format("kvstack_router_retries_total {}\n", f["retries"].get<uint64_t>());
  family("kvstack_router_broken_streams_total", "counter", "Streams ended with an error event by a failing worker.");
  out += fmt::format("kvstack_router_broken_streams_total {}\n", f["broken_streams"].get<uint64_t>());
  return out;
}

constexpr char kFleetPage[] = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>kvstack fleet</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:20px}table{border-collapse:collapse;background:#fff}
td,th{padding:6px 10px;border-bottom:1px solid #ddd;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}.down{color:#b00}.up{color:#070}
.bar{display:inline-block;height:10px;background:#4a7}
</style></head><body>
<h1>kvstack fleet</h1><div id="head"></div>
<table id="t"><thead><tr><th>worker</th><th>health</th><th>in flight</th><th>requests</th>
<th>GPU blocks</th><th>CPU</th><th>DISK</th><th>REDIS</th><th>durable</th><th>predicted</th>
<th>hit rate</th><th>event gaps</th><th>lag (s)</th></tr></thead><tbody></tbody></table>
<p id="dec"></p>
<script>
async function tick(){
  const r=await fetch('/v1/fleet');const f=await r.json();
  document.getElementById('head').textContent=
    `policy ${f.policy} · block size ${f.block_size} · ${f.index_entries} index entries · retries ${f.retries} · broken streams ${f.broken_streams}`;
  const tb=document.querySelector('#t tbody');tb.innerHTML='';
  for(const w of f.workers){
    const tr=document.createElement('tr');
    const cells=[w.url,w.healthy?'up':'down',w.in_flight,w.requests,w.blocks.GPU,w.blocks.CPU,w.blocks.DISK,
      w.blocks.REDIS,w.durable_blocks,w.predicted_blocks,(100*w.hit_rate).toFixed(1)+'%',w.events.gaps,
      w.events.lag_s.toFixed(3)];
    cells.forEach((c,i)=>{const td=document.createElement('td');td.textContent=c;
      if(i==1)td.className=w.healthy?'up':'down';tr.appendChild(td);});
    tb.appendChild(tr);
  }
  document.getElementById('dec').textContent='decisions: '+Object.entries(f.decisions).map(([k,v])=>k+' '+v).join(' · ');
}
tick();setInterval(tick,1000);
</script></body></html>
)HTML";

}  // namespace

void AddViewRoutes(FleetRouter::Impl& impl) {
  impl.http.Get("/health", [&impl](const httplib::Request&, httplib::Response& res) {
    int up = 0;
    for (const auto& w : impl.workers) up += w->healthy.load() ? 1 : 0;
    res.status = up > 0 ? 200 : 503;
    res.set_content(nlohmann::json{{"status", up > 0 ? "ok" : "no_workers"},
                                   {"workers", impl.workers.size()},
                                   {"workers_up", up}}
                        .dump(),
                    "application/json");
  });
  impl.http.Get("/v1/fleet", [&impl](const httplib::Request&, httplib::Response& res) {
    res.set_content(FleetJson(impl).dump(), "application/json");
  });
  impl.http.Get("/metrics", [&impl](const httplib::Request&, httplib::Response& res) {
    res.set_content(MetricsText(impl), "text/plain; version=0.0.4");
  });
  impl.http.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kFleetPage, "text/html"); });
  impl.http.Get("/v1/models", [&impl](const httplib::Request& req, httplib::Response& res) {
    for (const auto& w : impl.workers) {
      if (!w->healthy.load()) continue;
      httplib::Client c(w->host, w->port);
      c.set_connection_timeout(std::chrono::seconds(1));
      httplib::Headers h;
      if (req.has_header("Authorization")) h.emplace("Authorization", req.get_header_value("Authorization"));
      auto r = c.Get("/v1/models", h);
      if (!r) continue;
      res.status = r->status;
      res.set_content(r->body, "application/json");
      return;
    }
    res.status = 503;
    res.set_content(R"({"error":{"message":"no worker is available","type":"server_error","param":null,"code":"no_worker"}})",
                    "application/json");
  });
}

}  // namespace kvstack::fleet
