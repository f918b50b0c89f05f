// The KV cache endpoints: pin a prefix (POST /v1/cache/pin), release a pin
// (DELETE /v1/cache/pin/{id}), and the cache's statistics
// (GET /v1/cache/stats), and a session's prefetch hint
// (POST /v1/cache/prefetch {"session_id"}). Everything that touches the cache runs on the engine
// thread through EngineLoop.
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
  auto pin = ctx.loop->Pin({.tokens = std::move(tokens).value(), .cache_salt = body->cache_salt, .ttl = body->ttl});
  if (!pin.ok()) {
    // NotFound here would mean the blocks vanished between prefill and pin,
    // which the engine thread rules out: a bug, not the client's doing.
    const Status& s = pin.status();
    return SendError(res, s.code() == StatusCode::kNotFound ? FromStatus(Internal(s.message())) : FromStatus(s));
  }
  ctx.log(fmt::format("{}: pinned {} tokens in {} blocks{}{}", pin->id, pin->tokens, pin->blocks,
                      body->cache_salt.empty() ? "" : fmt::format(", cache_salt '{}'", body->cache_salt),
                      body->ttl ? fmt::format(", ttl {} s", double(*body->ttl) / 1e6) : ""));
  SendJson(res, 200,
           {{"id", pin->id},
            {"object", "cache.pin"},
            {"tokens", pin->tokens},
            {"blocks", pin->blocks},
            {"cache_salt", body->cache_salt},
            {"ttl_s", body->ttl ? nlohmann::json(double(*body->ttl) / 1e6) : nlohmann::json(nullptr)},
            {"expires_at", pin->expires_at ? nlohmann::json(ToUnix(ctx, *pin->expires_at)) : nlohmann::json(nullptr)}});
}

void HandleUnpin(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  if (auto e = ctx.Precheck(req)) return SendError(res, *e);
  const std::string id = req.matches[1];
  Status s = ctx.loop->Unpin(id);
  if (!s.ok()) return SendError(res, FromStatus(s));
  ctx.log(fmt::format("{}: released", id));
  SendJson(res, 200, {{"id", id}, {"object", "cache.pin"}, {"deleted", true}});
}

void HandleStats(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  if (auto e = ctx.Precheck(req)) return SendError(res, *e);
  auto metrics = ctx.loop->Call([](Engine& e) { return e.cache().Metrics(); });
  if (!metrics.ok()) return SendError(res, FromStatus(metrics.status()));
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
    auto blocks = ctx.loop->Call([&id](Engine& e) { return e.PrefetchSession(id); });
    if (!blocks.ok()) return SendError(res, FromStatus(blocks.status()));
    if (!blocks->ok()) {
      const Status& s = blocks->status();
      if (s.code() == StatusCode::kFailedPrecondition) {
        return SendError(res, ApiError{.http_status = 409, .message = s.message(), .code = "no_tiers"});
      }
      return SendError(res, FromStatus(s));
    }
    SendJson(res, 200, {{"session_id", id}, {"blocks", **blocks}});
  });
  http.Delete(R"(/v1/cache/pin/([^/]+))",
              [&ctx](const httplib::Request& req, httplib::Response& res) { HandleUnpin(ctx, req, res); });
  http.Get("/v1/cache/stats", [&ctx](const httplib::Request& req, httplib::Response& res) { HandleStats(ctx, req, res); });
}

}  // namespace kvstack::server
