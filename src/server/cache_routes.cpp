// The KV cache endpoints: pin a prefix (POST /v1/cache/pin), list a tenant's
// pins (GET /v1/cache/pin), release a pin (DELETE /v1/cache/pin/{id}), the
// cache's statistics (GET /v1/cache/stats, an operator view), and a
// session's prefetch hint (POST /v1/cache/prefetch {"session_id",
// "cache_salt"}: a session is its tenant's, as a pin is).
// Everything that touches the cache runs on the engine thread through
// EngineLoop.
//
// Pins belong to the tenant whose cache_salt made them: listing and release
// take the salt (the "X-Cache-Salt" header, or "cache_salt" in a DELETE's
// body) and see only that tenant's pins; the admin key sees them all. A pin
// shows its tenant's label, never the salt.
#include <chrono>
#include <ctime>

#include <fmt/format.h>

#include "server/cache_stats_json.h"
#include "server/server_context.h"

namespace kvstack::server {
namespace {

// Unix seconds of a time on the loop's monotonic clock.
double ToUnix(const ServerContext& ctx, Micros t) {
  const double unix_now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return unix_now + double(t - ctx.loop->clock().Now()) / 1e6;
}

// Whose pins a request may see or release: nullopt (all) for the admin key;
// otherwise the tenant of the salt it gives (none given: the pins made
// without a salt).
ApiResult<std::optional<std::string>> PinOwner(const ServerContext& ctx, const httplib::Request& req,
                                               bool body_may_name_salt) {
  if (ctx.access.IsAdmin(req)) return std::optional<std::string>();
  std::string salt = req.get_header_value("X-Cache-Salt");
  if (body_may_name_salt && !req.body.empty()) {
    auto json = ParseJsonObject(req.body);
    if (!json.ok()) return json.error();
    if (auto it = json->find("cache_salt"); it != json->end()) {
      if (!it->is_string()) return BadRequest("cache_salt must be a string", "cache_salt");
      salt = it->get<std::string>();
    }
  }
  return std::optional<std::string>(ctx.tenants->Identify(salt).owner);
}

void HandlePin(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  if (auto e = ctx.Precheck(req)) return SendError(res, *e);
  auto json = ParseJsonObject(req.body);
  if (!json.ok()) return SendError(res, json.error());
  auto body = ParsePinBody(*json);
  if (!body.ok()) return SendError(res, body.error());
  auto tokens = TokenizePrompt(body->prompt, ctx.loop->tokenizer(), *ctx.chat);
  if (!tokens.ok()) return SendError(res, tokens.error());
  const int32_t n = static_cast<int32_t>(tokens->size());
  const std::string& field = body->prompt.field;
  if (n >= ctx.limits.context_tokens) {
    return SendError(res, BadRequest(fmt::format("{}: {} tokens leave no room in the context of {} tokens", field, n,
                                                 ctx.limits.context_tokens),
                                     field));
  }
  if (n < ctx.loop->block_size()) {
    return SendError(res, BadRequest(fmt::format("{}: {} tokens is less than one KV block ({} tokens); nothing to pin",
                                                 field, n, ctx.loop->block_size()),
                                     field));
  }
  // A pin computes its prompt like a request does: it takes a place too.
  std::optional<AdmissionGate::Ticket> ticket = ctx.gate.TryEnter();
  if (!ticket) return SendError(res, QueueFull(ctx.options.engine.max_running, ctx.options.max_queue));
  TenantId tenant = ctx.tenants->Identify(body->cache_salt);
  const std::string label = tenant.label;
  auto pin = ctx.loop->Pin(
      {.tokens = std::move(tokens).value(), .cache_salt = body->cache_salt, .ttl = body->ttl, .tenant = std::move(tenant)});
  if (!pin.ok()) {
    // NotFound here would mean the blocks vanished between prefill and pin,
    // which the engine thread rules out: a bug, not the client's doing.
    const Status& s = pin.status();
    return SendError(res, s.code() == StatusCode::kNotFound ? FromStatus(Internal(s.message())) : FromStatus(s));
  }
  ctx.log(fmt::format("{}: pinned {} tokens in {} blocks{}{}", pin->id, pin->tokens, pin->blocks,
                      label.empty() ? "" : fmt::format(", tenant {}", label),
                      body->ttl ? fmt::format(", ttl {} s", double(*body->ttl) / 1e6) : ""));
  SendJson(res, 200,
           {{"id", pin->id},
            {"object", "cache.pin"},
            {"tokens", pin->tokens},
            {"blocks", pin->blocks},
            {"tenant", label},
            {"ttl_s", body->ttl ? nlohmann::json(double(*body->ttl) / 1e6) : nlohmann::json(nullptr)},
            {"expires_at", pin->expires_at ? nlohmann::json(ToUnix(ctx, *pin->expires_at)) : nlohmann::json(nullptr)}});
}

void HandleUnpin(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  if (auto e = ctx.Precheck(req)) return SendError(res, *e);
  const std::string id = req.matches[1];
  auto owner = PinOwner(ctx, req, /*body_may_name_salt=*/true);
  if (!owner.ok()) return SendError(res, owner.error());
  Status s = ctx.loop->Unpin(id, *owner);
  if (!s.ok()) return SendError(res, FromStatus(s));
  ctx.log(fmt::format("{}: released", id));
  SendJson(res, 200, {{"id", id}, {"object", "cache.pin"}, {"deleted", true}});
}

void HandleListPins(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  if (auto e = ctx.Precheck(req)) return SendError(res, *e);
  auto owner = PinOwner(ctx, req, /*body_may_name_salt=*/false);
  if (!owner.ok()) return SendError(res, owner.error());
  auto pins = ctx.loop->ListPins(*owner);
  if (!pins.ok()) return SendError(res, FromStatus(pins.status()));
  const Micros now = ctx.loop->clock().Now();
  nlohmann::json data = nlohmann::json::array();
  for (const PinInfo& p : *pins) {
    data.push_back({{"id", p.id},
                    {"object", "cache.pin"},
                    {"tenant", p.tenant},
                    {"tokens", p.tokens},
                    {"blocks", p.blocks},
                    {"expires_at", p.expires_at ? nlohmann::json(ToUnix(ctx, *p.expires_at)) : nlohmann::json(nullptr)},
                    {"expires_in_s", p.expires_at ? nlohmann::json(double(*p.expires_at - now) / 1e6)
                                                  : nlohmann::json(nullptr)}});
  }
  SendJson(res, 200, {{"object", "list"}, {"data", std::move(data)}});
}

void HandleStats(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  if (auto e = ctx.PrecheckOperator(req)) return SendError(res, *e);
  auto metrics = ctx.loop->Call([](Engine& e) { return e.cache().Metrics(); });
  if (!metrics.ok()) return SendError(res, FromStatus(metrics.status()));
  metrics->by_tenant = CountersByLabel(metrics->by_tenant, *ctx.tenants);
  auto pins = ctx.loop->ListPins();
  if (!pins.ok()) return SendError(res, FromStatus(pins.status()));
  SendJson(res, 200, CacheStatsJson(*metrics, *pins, ctx.loop->clock().Now()));
}

}  // namespace

void AddCacheRoutes(httplib::Server& http, ServerContext& ctx) {
  http.Post("/v1/cache/pin", [&ctx](const httplib::Request& req, httplib::Response& res) { HandlePin(ctx, req, res); });
  // A conversation is coming back: its last context moves up from the tiers.
  http.Post("/v1/cache/prefetch", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.Precheck(req)) return SendError(res, *e);
    auto json = ParseJsonObject(req.body);
    if (!json.ok()) return SendError(res, json.error());
    auto session = json->find("session_id");
    if (session == json->end() || !session->is_string() || session->get<std::string>().empty()) {
      return SendError(res, BadRequest("session_id: a non-empty string is required", "session_id"));
    }
    const std::string id = session->get<std::string>();
    // A session is its tenant's: the same cache_salt the conversation used.
    std::string salt;
    if (auto it = json->find("cache_salt"); it != json->end()) {
      if (!it->is_string()) return SendError(res, BadRequest("cache_salt must be a string", "cache_salt"));
      salt = it->get<std::string>();
    }
    const std::string scoped = TenantSessionId(ctx.tenants->Identify(salt), id);
    auto blocks = ctx.loop->Call([&scoped](Engine& e) { return e.PrefetchSession(scoped); });
    if (!blocks.ok()) return SendError(res, FromStatus(blocks.status()));
    if (!blocks->ok()) {
      const Status& s = blocks->status();
      if (s.code() == StatusCode::kFailedPrecondition) {
        return SendError(res, ApiError{.http_status = 409, .message = s.message(), .code = "no_tiers"});
      }
      if (s.code() == StatusCode::kNotFound) {
        // The engine's message names the scoped id: say it in the client's terms.
        return SendError(res, FromStatus(NotFound(fmt::format(
                                  "session '{}' is not remembered for this cache_salt (send the cache_salt its "
                                  "requests used)",
                                  id))));
      }
      return SendError(res, FromStatus(s));
    }
    SendJson(res, 200, {{"session_id", id}, {"blocks", **blocks}});
  });
  http.Get("/v1/cache/pin",
           [&ctx](const httplib::Request& req, httplib::Response& res) { HandleListPins(ctx, req, res); });
  http.Delete(R"(/v1/cache/pin/([^/]+))",
              [&ctx](const httplib::Request& req, httplib::Response& res) { HandleUnpin(ctx, req, res); });
  http.Get("/v1/cache/stats", [&ctx](const httplib::Request& req, httplib::Response& res) { HandleStats(ctx, req, res); });
}

}  // namespace kvstack::server
