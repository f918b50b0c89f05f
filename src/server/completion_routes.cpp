// POST /v1/completions and POST /v1/chat/completions: parse and validate on
// the handler thread, queue to the engine thread, then either wait for the
// whole completion or stream it as server-sent events. A client that goes
// away, streaming or not, cancels its request, so its KV blocks are freed at
// once.
#include <chrono>
#include <ctime>

#include <fmt/format.h>

#include "server/openai_response.h"
#include "server/server_context.h"
#include "server/sse.h"

namespace kvstack::server {
namespace {

using std::chrono::milliseconds;

// How long a handler sleeps on its channel before looking again (a stream's
// provider returns to httplib in between, which checks the connection).
constexpr milliseconds kPollInterval{100};

// SplitMix64: spreads a counter into well-mixed seeds.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Prepared {
  GenerationRequest gen;
  ResponseMeta meta;
  bool stream = false;
  bool include_usage = false;
  std::string cache_salt;
  std::shared_ptr<const TracedPrompt> traced;  // set with --record-trace
};

ApiResult<Prepared> Prepare(ServerContext& ctx, const httplib::Request& req, Endpoint endpoint) {
  auto json = ParseJsonObject(req.body);
  if (!json.ok()) return json.error();
  auto body = ParseCompletionBody(*json, endpoint, ctx.limits);
  if (!body.ok()) return body.error();
  auto tokens = TokenizePrompt(body->prompt, ctx.loop->tokenizer(), *ctx.chat);
  if (!tokens.ok()) return tokens.error();
  const uint64_t n = ctx.next_request.fetch_add(1);
  auto gen = BuildGeneration(*body, std::move(tokens).value(), ctx.limits, ctx.chat->StopStrings(),
                             Mix(ctx.id_salt ^ n));
  if (!gen.ok()) return gen.error();
  Prepared p;
  p.gen = std::move(gen).value();
  p.meta = ResponseMeta{.endpoint = endpoint,
                        .id = fmt::format("{}-{:08x}{:04d}", endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl",
                                          static_cast<uint32_t>(ctx.id_salt), n),
                        .model = ctx.model_name,
                        .created = static_cast<int64_t>(std::time(nullptr)),
                        .session_id = body->kv.session_id};
  p.stream = body->stream;
  p.include_usage = body->include_usage;
  p.cache_salt = body->kv.cache_salt;
  p.gen.session_id = body->kv.session_id;
  if (ctx.trace) {
    p.traced = std::make_shared<const TracedPrompt>(TracedPrompt{.tokens = p.gen.prompt,
                                                                 .retention = p.gen.retention,
                                                                 .priority = p.gen.priority,
                                                                 .session = body->kv.session_id,
                                                                 .tenant = body->kv.cache_salt});
  }
  return p;
}

// The one place every finished request passes through (whole or streamed):
// it logs the request and feeds the /metrics histograms.
void RecordFinished(ServerContext& ctx, const ResponseMeta& meta, const std::string& salt,
                    const TracedPrompt* traced, const GenerationEvent& last) {
  const RequestMetrics& m = last.metrics;
  ctx.recorder.Record(m);
  ctx.workload.Record(m, salt);
  if (ctx.trace && traced) ctx.trace->Record(*traced, m);
  ctx.log(fmt::format("{}: {}, prompt {} tokens ({} from the prefix cache), {} generated{}{}", meta.id,
                      FinishReasonName(last.finish), m.prompt_tokens, m.cached_tokens, m.generated_tokens,
                      salt.empty() ? "" : fmt::format(", cache_salt '{}'", salt),
                      meta.session_id.empty() ? "" : fmt::format(", session_id '{}'", meta.session_id)));
}

// A whole (non-streamed) completion. The body is sent only at the end, but
// through a chunked provider: between polls of the request's channel it asks
// the socket whether the client is still there (httplib's is_writable peeks
// at the connection), so a client that gives up cancels its request and
// frees its blocks, as a streaming one does. The status line goes out first,
// so the rare request cancelled by a forced shutdown gets its error object
// with status 200.
struct WholeState {
  WholeState(ServerContext& c, std::shared_ptr<RequestChannel> ch, AdmissionGate::Ticket t, const Prepared& p)
      : ctx(c), channel(std::move(ch)), ticket(std::move(t)), meta(p.meta), salt(p.cache_salt), traced(p.traced) {}
  ServerContext& ctx;
  std::shared_ptr<RequestChannel> channel;
  AdmissionGate::Ticket ticket;
  ResponseMeta meta;
  std::string salt;
  std::shared_ptr<const TracedPrompt> traced;
  std::string text;
  std::vector<GenerationEvent> events;
  bool finished = false;
};

void RespondWhole(ServerContext& ctx, httplib::Response& res, std::shared_ptr<RequestChannel> channel,
                  AdmissionGate::Ticket ticket, const Prepared& p) {
  auto st = std::make_shared<WholeState>(ctx, std::move(channel), std::move(ticket), p);
  res.status = 200;
  res.set_chunked_content_provider(
      "application/json",
      [st](size_t /*offset*/, httplib::DataSink& sink) {
        st->events.clear();
        const bool more = st->channel->Take(&st->events, kPollInterval);
        GenerationEvent* last = nullptr;
        for (GenerationEvent& e : st->events) {
          st->text += e.text;
          if (e.finish != FinishReason::kNone) last = &e;
        }
        if (last == nullptr) {
          if (more) return sink.is_writable();  // false: the client is gone, and the releaser cancels
          return false;
        }
        st->finished = true;
        RecordFinished(st->ctx, st->meta, st->salt, st->traced.get(), *last);
        std::string body;
        if (last->finish == FinishReason::kCancelled) {
          body = JsonText(ApiError{.http_status = 503,
                                   .message = "the request was cancelled: the server is shutting down",
                                   .type = "server_error",
                                   .code = "cancelled"}
                              .ToJson());
        } else {
          ++st->ctx.completed;
          body = JsonText(CompletionResponse(st->meta, st->text, last->finish, last->metrics));
        }
        if (!sink.write(body.data(), body.size())) return false;
        sink.done();
        return true;
      },
      [st](bool /*success*/) {
        if (!st->finished) {
          ++st->ctx.disconnected;
          st->ctx.log(fmt::format("{}: the client went away before its completion; cancelling the request",
                                  st->meta.id));
          st->ctx.loop->Cancel(st->channel);
        }
        st->ticket.Release();
      });
}

// One streamed request, shared by httplib's content provider and its
// releaser (which runs when the response is destroyed, finished or not).
struct StreamState {
  StreamState(ServerContext& c, std::shared_ptr<RequestChannel> ch, AdmissionGate::Ticket t, const Prepared& p)
      : ctx(c),
        channel(std::move(ch)),
        ticket(std::move(t)),
        sse(p.meta, p.include_usage),
        salt(p.cache_salt),
        traced(p.traced) {}
  ServerContext& ctx;
  std::shared_ptr<RequestChannel> channel;
  AdmissionGate::Ticket ticket;
  SseStream sse;
  std::string salt;
  std::shared_ptr<const TracedPrompt> traced;
  std::vector<GenerationEvent> events;
};

void StartStream(ServerContext& ctx, httplib::Response& res, std::shared_ptr<RequestChannel> channel,
                 AdmissionGate::Ticket ticket, const Prepared& p) {
  auto st = std::make_shared<StreamState>(ctx, std::move(channel), std::move(ticket), p);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [st](size_t /*offset*/, httplib::DataSink& sink) {
        st->events.clear();
        st->channel->Take(&st->events, kPollInterval);
        std::string frames;
        for (const GenerationEvent& e : st->events) {
          frames += st->sse.Frames(e);
          if (e.finish != FinishReason::kNone) RecordFinished(st->ctx, st->sse.meta(), st->salt, st->traced.get(), e);
        }
        // A failed write means the client is gone: returning false ends the
        // response, and the releaser cancels the request.
        if (!frames.empty() && !sink.write(frames.data(), frames.size())) return false;
        if (st->sse.done()) {
          ++st->ctx.completed;
          sink.done();
        }
        return true;
      },
      [st](bool /*success*/) {
        if (!st->sse.done()) {
          ++st->ctx.disconnected;
          st->ctx.log(fmt::format("{}: the client went away mid-stream; cancelling the request", st->sse.meta().id));
          st->ctx.loop->Cancel(st->channel);
        }
        st->ticket.Release();
      });
}

void Handle(ServerContext& ctx, const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  if (auto e = ctx.Precheck(req)) return SendError(res, *e);
  auto p = Prepare(ctx, req, endpoint);
  if (!p.ok()) return SendError(res, p.error());
  std::optional<AdmissionGate::Ticket> ticket = ctx.gate.TryEnter();
  if (!ticket) {
    ++ctx.refused_busy;
    return SendError(res, QueueFull(ctx.options.engine.max_running, ctx.options.max_queue));
  }
  std::shared_ptr<RequestChannel> channel = ctx.loop->Submit(std::move(p->gen));
  if (Status accepted = channel->WaitAccepted(); !accepted.ok()) return SendError(res, FromStatus(accepted));
  if (p->stream) return StartStream(ctx, res, std::move(channel), std::move(*ticket), *p);
  RespondWhole(ctx, res, std::move(channel), std::move(*ticket), *p);
}

}  // namespace

void AddCompletionRoutes(httplib::Server& http, ServerContext& ctx) {
  http.Post("/v1/completions", [&ctx](const httplib::Request& req, httplib::Response& res) {
    Handle(ctx, req, res, Endpoint::kCompletions);
  });
  http.Post("/v1/chat/completions", [&ctx](const httplib::Request& req, httplib::Response& res) {
    Handle(ctx, req, res, Endpoint::kChat);
  });
}

}  // namespace kvstack::server
