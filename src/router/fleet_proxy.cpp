// The router's proxy: key the request as the worker will, pick a worker,
// forward the request, pass the answer through (a stream chunk by chunk).
//
// A request is retried on another worker while nothing has come back from
// the one it went to (a refused or broken connection before the response
// headers): the worker is marked down at once. Once a streamed response has
// started, a broken upstream ends the stream with an SSE error event.
#include <condition_variable>
#include <deque>

#include <fmt/format.h>

#include "router/fleet_impl.h"
#include "server/openai_request.h"

namespace kvstack::fleet {
namespace {

// One upstream call, run on its own thread so the handler can wait for the
// response headers and then for chunks.
struct Upstream {
  std::mutex mu;
  std::condition_variable cv;
  bool headers = false;        // GUARDED_BY(mu)
  int status = 0;              // GUARDED_BY(mu)
  std::string content_type;    // GUARDED_BY(mu)
  std::deque<std::string> chunks;  // GUARDED_BY(mu)
  bool done = false;           // GUARDED_BY(mu)
  bool failed = false;         // GUARDED_BY(mu): the connection broke
  std::string error;           // GUARDED_BY(mu)
  std::atomic<bool> cancelled{false};  // the client went away
  std::thread thread;

  ~Upstream() {
    cancelled = true;
    if (thread.joinable()) thread.join();
  }

  void Start(const Worker& w, const httplib::Request& in) {
    httplib::Request req;
    req.method = "POST";
    req.path = in.path;
    req.body = in.body;
    for (const char* h : {"Authorization", "Content-Type"}) {
      if (in.has_header(h)) req.headers.emplace(h, in.get_header_value(h));
    }
    const std::string host = w.host;
    const int port = w.port;
    thread = std::thread([this, host, port, req = std::move(req)]() mutable {
      httplib::Client client(host, port);
      client.set_connection_timeout(std::chrono::seconds(1));
      client.set_read_timeout(std::chrono::seconds(600));
      req.response_handler = [this](const httplib::Response& r) {
        std::lock_guard<std::mutex> lock(mu);
        headers = true;
        status = r.status;
        content_type = r.get_header_value("Content-Type");
        cv.notify_all();
        return true;
      };
      req.content_receiver = [this](const char* data, size_t n, uint64_t, uint64_t) {
        std::lock_guard<std::mutex> lock(mu);
        chunks.emplace_back(data, n);
        cv.notify_all();
        return !cancelled.load();
      };
      httplib::Response res;
      httplib::Error err = httplib::Error::Success;
      const bool ok = client.send(req, res, err);
      std::lock_guard<std::mutex> lock(mu);
      done = true;
      if (!ok) {
        failed = true;
        error = httplib::to_string(err);
      }
      cv.notify_all();
    });
  }

  // Waits until the headers came or the call ended.
  void WaitHeaders() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return headers || done; });
  }
};

struct Keyed {
  std::vector<BlockHash> keys;
  std::string session_id;
  int32_t prompt_tokens = 0;
};

// The request's block keys exactly as the worker computes them: the same
// prompt parsing and tokenizer, the model identity and the tenant's salt in
// the root. A request the worker will refuse gets no keys; the worker's own
// error goes back to the client.
Keyed KeyRequest(const FleetRouter::Impl& impl, const nlohmann::json& body, server::Endpoint endpoint) {
  Keyed k;
  if (!body.is_object()) return k;
  if (auto it = body.find("session_id"); it != body.end() && it->is_string()) k.session_id = it->get<std::string>();
  auto prompt = server::ParsePrompt(body, endpoint);
  if (!prompt.ok()) return k;
  auto tokens = server::TokenizePrompt(*prompt, *impl.tokenizer, *impl.chat);
  if (!tokens.ok()) return k;
  std::string salt;
  if (auto it = body.find("cache_salt"); it != body.end() && it->is_string()) salt = it->get<std::string>();
  k.prompt_tokens = static_cast<int32_t>(tokens->size());
  impl.hasher.ChainBlocks(impl.hasher.Root(ExtraKeys{.model_id = impl.cache_identity, .cache_salt = salt,
                                                     .adapter_id = ""}),
                          *tokens, static_cast<size_t>(impl.block_size), &k.keys);
  return k;
}

void SendError(httplib::Response& res, int status, const std::string& message, const std::string& code) {
  res.status = status;
  res.set_content(nlohmann::json{{"error", {{"message", message}, {"type", "server_error"}, {"param", nullptr},
                                            {"code", code}}}}
                      .dump(),
                  "application/json");
}

// Tells the worker's counters the request is over.
struct InFlight {
  InFlight(Worker* worker, int64_t n) : w(worker), blocks(n) {}
  Worker* w;
  int64_t blocks;
  bool answered = false;
  void Answered() {
    if (!answered) w->queued_blocks.fetch_sub(blocks), answered = true;
  }
  ~InFlight() {
    Answered();
    w->in_flight.fetch_sub(1);
  }
};

void CountUsage(Worker& w, const std::string& body) {
  // The worker's own report of what its cache served (non-streamed answers,
  // and streamed ones whose last chunk carries usage).
  const size_t at = body.rfind("\"cached_tokens\"");
  if (at == std::string::npos) return;
  const size_t colon = body.find(':', at);
  if (colon == std::string::npos) return;
  w.cached_tokens.fetch_add(std::strtoull(body.c_str() + colon + 1, nullptr, 10));
}

void Proxy(FleetRouter::Impl& impl, const httplib::Request& req, httplib::Response& res, server::Endpoint endpoint) {
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
  const bool stream = body.is_object() && body.value("stream", false);
  const Keyed k = KeyRequest(impl, body, endpoint);
  std::vector<bool> tried(impl.workers.size(), false);

  for (size_t attempt = 0; attempt < impl.workers.size(); ++attempt) {
    RouteDecision d;
    {
      std::lock_guard<std::mutex> lock(impl.mu);
      std::vector<WorkerLoad> loads = impl.Loads();
      for (size_t i = 0; i < loads.size(); ++i) loads[i].healthy = loads[i].healthy && !tried[i];
      d = impl.router->Route(RouteQuery{.keys = k.keys,
                                        .prompt_blocks = static_cast<int32_t>(k.keys.size()),
                                        .session_id = k.session_id},
                             loads);
    }
    if (d.worker < 0) break;
    tried[static_cast<size_t>(d.worker)] = true;
    Worker& w = *impl.workers[static_cast<size_t>(d.worker)];
    impl.metrics.decisions[static_cast<int>(d.reason)].fetch_add(1);
    w.requests.fetch_add(1);
    w.prompt_tokens.fetch_add(static_cast<uint64_t>(k.prompt_tokens));
    w.predicted_tokens.fetch_add(static_cast<uint64_t>(d.match.blocks) * static_cast<uint64_t>(impl.block_size));
    const int64_t blocks = static_cast<int64_t>(k.keys.size()) - d.match.blocks;
    w.in_flight.fetch_add(1);
    w.queued_blocks.fetch_add(blocks);
    auto flight = std::make_shared<InFlight>(&w, blocks);

    auto up = std::make_shared<Upstream>();
    up->Start(w, req);
    up->WaitHeaders();
    bool failed_before_headers;
    {
      std::lock_guard<std::mutex> lock(up->mu);
      failed_before_headers = !up->headers && up->failed;
    }
    if (failed_before_headers) {
      // Nothing started: mark it down and try another worker.
      w.healthy.store(false);
      w.failures.fetch_add(1);
      impl.metrics.retries.fetch_add(1);
      impl.log(fmt::format("worker {}: down (request failed before its response: {})", w.url, up->error));
      continue;
    }
    std::string content_type;
    int status;
    {
      std::lock_guard<std::mutex> lock(up->mu);
      content_type = up->content_type;
      status = up->status;
    }
    res.set_header("X-Kvstack-Worker", w.url);
    if (!stream || status != 200) {
      // Whole answers (errors included) pass through unchanged.
      std::string out;
      {
        std::unique_lock<std::mutex> lock(up->mu);
        up->cv.wait(lock, [&] { return up->done; });
        for (std::string& c : up->chunks) out += c;
        if (up->failed) {
          w.failures.fetch_add(1);
          return SendError(res, 502, fmt::format("worker {} broke off its answer: {}", w.url, up->error),
                           "worker_failed");
        }
      }
      flight->Answered();
      CountUsage(w, out);
      res.status = status;
      res.set_content(out, content_type.empty() ? "application/json" : content_type);
      return;
    }
    // A stream: chunks as they come; a break becomes an error event.
    res.status = 200;
    res.set_chunked_content_provider(
        content_type.empty() ? "text/event-stream" : content_type,
        [up, flight, &impl, &w](size_t, httplib::DataSink& sink) {
          std::deque<std::string> chunks;
          bool done, failed;
          std::string error;
          {
            std::unique_lock<std::mutex> lock(up->mu);
            up->cv.wait(lock, [&] { return !up->chunks.empty() || up->done; });
            chunks.swap(up->chunks);
            done = up->done;
            failed = up->failed;
            error = up->error;
          }
          if (!chunks.empty()) flight->Answered();
          for (const std::string& c : chunks) {
            if (c.find("cached_tokens") != std::string::npos) CountUsage(w, c);
            if (!sink.write(c.data(), c.size())) {
              up->cancelled = true;
              return false;
            }
          }
          if (!done) return true;
          if (failed) {
            w.failures.fetch_add(1);
            w.healthy.store(false);
            impl.metrics.broken_streams.fetch_add(1);
            const std::string event = fmt::format(
                "data: {}\n\n",
                nlohmann::json{{"error",
                                {{"message", fmt::format("worker {} failed mid-stream: {}", w.url, error)},
                                 {"type", "server_error"},
                                 {"param", nullptr},
                                 {"code", "worker_failed"}}}}
                    .dump());
            sink.write(event.data(), event.size());
          }
          sink.done();
          return true;
        });
    return;
  }
  impl.metrics.no_worker.fetch_add(1);
  SendError(res, 503, "no worker is available (every worker is down or failed this request)", "no_worker");
}

}  // namespace

void AddProxyRoutes(FleetRouter::Impl& impl) {
  impl.http.Post("/v1/completions", [&impl](const httplib::Request& req, httplib::Response& res) {
    Proxy(impl, req, res, server::Endpoint::kCompletions);
  });
  impl.http.Post("/v1/chat/completions", [&impl](const httplib::Request& req, httplib::Response& res) {
    Proxy(impl, req, res, server::Endpoint::kChat);
  });
}

}  // namespace kvstack::fleet
