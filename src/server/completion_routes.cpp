// POST /v1/completions and POST /v1/chat/completions: parse and validate on
// the handler thread, queue to the engine thread, then either wait for the
// whole completion or stream it as server-sent events. A client that goes
// away, streaming or not, cancels its request, so its KV blocks are freed at
// once.
#include <chrono>
#include <ctime>

#include <fmt/format.h>

#include "kvstack/tokenizer.h"
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
  std::string tenant;  // the salt's label: the salt itself never leaves the request
  std::shared_ptr<const TracedPrompt> traced;  // set with --record-trace
};

ApiResult<Prepared> Prepare(ServerContext& ctx, const httplib::Request& req, Endpoint endpoint) {
  auto json = ParseJsonObject(req.body);
  if (!json.ok()) return json.error();
  auto body = ParseCompletionBody(*json, endpoint, ctx.limits);
  if (!body.ok()) return body.error();
  auto tokens = TokenizePrompt(body->prompt, ctx.loop->tokenizer(), *ctx.chat);
  if (!tokens.ok()) return tokens.error();
  std::vector<Token> echoed;
  std::string echo_text;
  if (body->echo) {
    echoed = *tokens;
    echo_text = body->prompt.text ? *body->prompt.text
                                  : ctx.loop->tokenizer().Decode(*tokens, {.skip_special = true, .strip_prefix_space = true});
  }
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
                        .session_id = body->kv.session_id,
                        .n = body->n,
                        .logprobs = body->logprobs,
                        .echo = body->echo,
                        .score_only = p.gen.sampling.max_tokens == 0,
                        .echo_text = std::move(echo_text),
                        .prompt_tokens = std::move(echoed),
                        .tokenizer = &ctx.loop->tokenizer()};
  p.stream = body->stream;
  p.include_usage = body->include_usage;
  const TenantId tenant = ctx.tenants->Identify(body->kv.cache_salt);
  p.tenant = tenant.label;
  p.gen.session_id = TenantSessionId(tenant, body->kv.session_id);
  if (ctx.trace) {
    p.traced = std::make_shared<const TracedPrompt>(TracedPrompt{.tokens = p.gen.prompt,
                                                                 .retention = p.gen.retention,
                                                                 .priority = p.gen.priority,
                                                                 .session = body->kv.session_id,
                                                                 .tenant = p.tenant});
  }
  return p;
}

// The one place every finished request passes through (whole or streamed):
// it logs the request and feeds the /metrics histograms.
void RecordFinished(ServerContext& ctx, const ResponseMeta& meta, const std::string& tenant,
                    const TracedPrompt* traced, FinishReason finish, const RequestMetrics& m) {
  ctx.recorder.Record(m);
  ctx.workload.Record(m, tenant);
  if (ctx.trace && traced) ctx.trace->Record(*traced, m);
  ctx.log(fmt::format("{}: {}, prompt {} tokens ({} from the prefix cache), {} generated{}{}", meta.id,
                      FinishReasonName(finish), m.prompt_tokens, m.cached_tokens, m.generated_tokens,
                      tenant.empty() ? "" : fmt::format(", tenant {}", tenant),
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
      : ctx(c), channel(std::move(ch)), ticket(std::move(t)), meta(p.meta), tenant(p.tenant), traced(p.traced) {}
  ServerContext& ctx;
  std::shared_ptr<RequestChannel> channel;
  AdmissionGate::Ticket ticket;
  ResponseMeta meta;
  std::string tenant;
  std::shared_ptr<const TracedPrompt> traced;
  std::vector<ChoiceOutput> choices;
  std::vector<PositionLogprobs> prompt_scores;
  RequestMetrics usage;
  bool cancelled = false;
  std::vector<GenerationEvent> events;
  bool finished = false;

  // Folds one event into its choice; true on the request's last.
  bool Add(GenerationEvent& e) {
    if (static_cast<size_t>(e.choice) >= choices.size()) choices.resize(static_cast<size_t>(e.choice) + 1);
    ChoiceOutput& c = choices[static_cast<size_t>(e.choice)];
    c.text += e.text;
    for (PositionLogprobs& p : e.logprobs) c.logprobs.push_back(std::move(p));
    if (!e.prompt_logprobs.empty()) prompt_scores = std::move(e.prompt_logprobs);
    if (e.finish != FinishReason::kNone) {
      c.finish = e.finish;
      cancelled = cancelled || e.finish == FinishReason::kCancelled;
      AddChoiceUsage(&usage, e.metrics);
    }
    return e.request_finished;
  }
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
        bool last = false;
        for (GenerationEvent& e : st->events) last = st->Add(e) || last;
        if (!last) {
          if (more) return sink.is_writable();  // false: the client is gone, and the releaser cancels
          return false;
        }
        st->finished = true;
        const FinishReason finish = st->cancelled ? FinishReason::kCancelled : st->choices[0].finish;
        RecordFinished(st->ctx, st->meta, st->tenant, st->traced.get(), finish, st->usage);
        std::string body;
        if (st->cancelled) {
          body = JsonText(ApiError{.http_status = 503,
                                   .message = "the request was cancelled: the server is shutting down",
                                   .type = "server_error",
                                   .code = "cancelled"}
                              .ToJson());
        } else {
          ++st->ctx.completed;
          if (st->meta.score_only) st->choices.resize(static_cast<size_t>(st->meta.n), st->choices[0]);
          body = JsonText(CompletionResponse(st->meta, st->choices, st->prompt_scores, st->usage));
        }
        // Counted and out of the gate before the client can read the answer:
        // its next request (or a /metrics read) sees this one finished.
        st->ticket.Release();
        if (!sink.write(body.data(), body.size())) return false;
        sink.done();
        return true;
      },
      [st](bool /*success*/) {
        // Out of the gate, cancelled and logged before it is counted:
        // whoever sees the disconnect counted sees no request in flight for
        // it, and the log line.
        const bool gone = !st->finished;
        st->ticket.Release();
        if (gone) {
          st->ctx.loop->Cancel(st->channel);
          st->ctx.log(fmt::format("{}: the client went away before its completion; cancelling the request",
                                  st->meta.id));
          ++st->ctx.disconnected;
        }
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
        tenant(p.tenant),
        traced(p.traced) {}
  ServerContext& ctx;
  std::shared_ptr<RequestChannel> channel;
  AdmissionGate::Ticket ticket;
  SseStream sse;
  std::string tenant;
  std::shared_ptr<const TracedPrompt> traced;
  std::vector<GenerationEvent> events;
  RequestMetrics usage;
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
          if (e.finish != FinishReason::kNone) AddChoiceUsage(&st->usage, e.metrics);
          if (e.request_finished) {
            RecordFinished(st->ctx, st->sse.meta(), st->tenant, st->traced.get(), e.finish, st->usage);
          }
        }
        // Counted and out of the gate before the last frames reach the
        // client: its next request (or a /metrics read) sees this one done.
        const bool done = st->sse.done();
        if (done) {
          ++st->ctx.completed;
          st->ticket.Release();
        }
        // A failed write means the client is gone: returning false ends the
        // response, and the releaser cancels the request.
        if (!frames.empty() && !sink.write(frames.data(), frames.size())) return false;
        if (done) sink.done();
        return true;
      },
      [st](bool /*success*/) {
        // Out of the gate, cancelled and logged before it is counted:
        // whoever sees the disconnect counted sees no request in flight for
        // it, and the log line.
        const bool gone = !st->sse.done();
        st->ticket.Release();
        if (gone) {
          st->ctx.loop->Cancel(st->channel);
          st->ctx.log(fmt::format("{}: the client went away mid-stream; cancelling the request", st->sse.meta().id));
          ++st->ctx.disconnected;
        }
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
