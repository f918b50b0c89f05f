// Server: wires the parts together (model, engine thread, chat format, HTTP
// routes) and runs the listener and the graceful stop.
//
// Stopping: Shutdown() wakes the stopper thread, which turns the server to
// draining (new requests get 503), waits until no generation request is in
// flight, then stops the listener and the engine thread, in that order, so
// nothing can reach the engine after it stops.
#include "kvstack/server.h"

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <openssl/rand.h>
#include <httplib.h>

#include "kvstack/engine.h"
#include "kvstack/tokenizer.h"
#include "server/chat_format.h"
#include "server/demo_model.h"
#include "server/tier_setup.h"
#include "server/engine_loop.h"
#include "server/kv_event_feed.h"
#include "server/lingering_server.h"
#include "server/memory_report.h"
#include "server/options.h"
#include "server/server_context.h"
#include "server/tenant_label.h"

namespace kvstack {

using server::EngineLoop;
using server::ServerContext;

struct Server::Impl {
  ServerOptions options;
  server::Log log;
  std::unique_ptr<EngineLoop> loop;
  std::unique_ptr<ServerContext> ctx;
  server::LingeringServer http;  // after ctx and loop: its handlers use them, so it goes first
  std::unique_ptr<server::KvEventFeed> kv_events;  // --kv-events; its pump uses loop, so it goes before it
  int port = 0;
  std::string host;

  std::mutex mu;
  std::condition_variable cv;
  bool shutdown_requested = false;  // GUARDED_BY(mu)
  bool listener_done = false;       // GUARDED_BY(mu)
  Status listen_status;             // GUARDED_BY(mu)

  std::once_flag join_once;
  std::thread listener;
  std::thread stopper;

  void RequestShutdown() {
    {
      std::lock_guard<std::mutex> lock(mu);
      shutdown_requested = true;
    }
    cv.notify_all();
  }

  void Listen() {
    const bool ok = http.listen_after_bind();
    {
      std::lock_guard<std::mutex> lock(mu);
      listener_done = true;
      if (!ok) listen_status = Unavailable(fmt::format("the HTTP listener on {}:{} failed", host, port));
    }
    RequestShutdown();
  }

  void StopWhenAsked() {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return shutdown_requested; });
    }
    ctx->draining = true;
    const int64_t in_flight = ctx->gate.in_flight();
    log(fmt::format("shutting down: refusing new requests; waiting for {} in flight", in_flight));
    ctx->gate.WaitIdle();
    // stop() only works once the listener runs; it starts right after bind.
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (listener_done) break;
      }
      if (http.is_running()) {
        http.stop();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    loop->Stop();
    log("stopped");
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Shutdown();
  Wait().IgnoreError();
}

int Server::port() const { return impl_->port; }
std::string Server::url() const { return fmt::format("http://{}:{}", impl_->host, impl_->port); }
const std::string& Server::model_name() const { return impl_->ctx->model_name; }

void Server::Shutdown() { impl_->RequestShutdown(); }

Status Server::Wait() {
  std::call_once(impl_->join_once, [this] {
    impl_->listener.join();
    impl_->stopper.join();
  });
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->listen_status;
}

namespace {

std::string ModelName(const ServerOptions& o, const std::string& path) {
  if (!o.served_model_name.empty()) return o.served_model_name;
  if (o.model_path.empty()) return server::kDemoModelName;
  return std::filesystem::path(path).stem().string();
}

uint64_t Entropy() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(std::time(nullptr));
}

// The tenant labeller: keyed by --tenant-label-key, else by a random secret
// of this process (said in the log, never the secret itself).
Result<std::unique_ptr<const server::TenantLabeler>> MakeTenantLabeler(const ServerOptions& o, const server::Log& log) {
  std::string key = o.tenant_label_key;
  if (key.empty()) {
    key.resize(32);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
      return Internal("cannot draw a random tenant label key (OpenSSL RAND_bytes failed); give --tenant-label-key-file");
    }
    log("tenant labels: keyed by a random secret drawn at start, so they change when the server restarts "
        "(--tenant-label-key-file keeps them stable)");
  }
  auto labeler = server::TenantLabeler::Create(std::move(key), o.tenant_names);
  if (!labeler.ok()) return labeler.status();
  if (!o.tenant_names.empty()) log(fmt::format("tenant labels: {} tenants named (--tenant-names)", o.tenant_names.size()));
  return std::make_unique<const server::TenantLabeler>(std::move(labeler).value());
}

// Who may call what, in one line (never a key).
void LogAccess(const ServerOptions& o, const server::Log& log) {
  const size_t clients = server::ServerContext::ClientKeys(o).size();
  if (clients == 0 && o.admin_key.empty()) {
    log("access: no keys: every endpoint is open (set --api-key and --admin-key on a shared network)");
    return;
  }
  log(fmt::format("access: {} client key{}; operator views (/metrics, /v1/memory, /v1/cache/stats) {}{}", clients,
                  clients == 1 ? "" : "s", o.admin_key.empty() ? "closed (no --admin-key)" : "need the admin key",
                  o.public_metrics ? "; /metrics public (--public-metrics)" : ""));
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& o) {
  KVSTACK_RETURN_IF_ERROR(server::ValidateOptions(o));
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->log = o.log ? o.log : server::StderrLog();
  impl->host = o.host;
  const server::Log& log = impl->log;
  auto tenants = MakeTenantLabeler(o, log);
  if (!tenants.ok()) return tenants.status();
  LogAccess(o, log);

  std::string path = o.model_path;
  if (path.empty()) {
    auto demo = server::EnsureDemoModel(o.model_cache_dir, log);
    if (!demo.ok()) return demo.status();
    path = *demo;
  }
  EngineOptions eo = o.engine;
  eo.model_path = path;
  eo.make_tiers = server::MakeTierFactory(o.tiers, log);
  eo.onboard_only_when_faster = !o.tiers.onboard_always;
  // Drained every few milliseconds by the feed; sized for bursts far larger.
  if (o.kv_events.enabled()) eo.event_buffer_limit = size_t{1} << 20;
  auto engine = Engine::Create(eo);
  if (!engine.ok()) return engine.status();
  const EngineInfo info = (*engine)->info();
  const CacheMetrics kv = (*engine)->cache().Metrics();
  log(fmt::format("model {}: {}, {} layers, {} heads ({} KV), vocab {}, context {} tokens; {} threads, {} kernels",
                  path, info.architecture, info.n_layer, info.n_head, info.n_head_kv, info.n_vocab, info.n_ctx,
                  info.threads, info.cpu_level));
  log(fmt::format("KV cache: {} blocks of {} tokens ({:.1f} MiB, {} tokens; KV {}, {} bytes per token, {:.2f}x the "
                  "tokens of f16 KV)",
                  kv.total_blocks, kv.block_size, double(kv.total_blocks) * double(kv.kv_bytes_per_block) / (1 << 20),
                  int64_t{kv.total_blocks} * kv.block_size, info.kv_types, info.kv_bytes_per_token,
                  server::KvCapacityVsF16(info)));
  if (!info.tier_kv_types.empty() && info.tier_kv_types != info.kv_types) {
    log(fmt::format("tiers store KV as {} ({} bytes a block, {:.2f}x the device's {}); onboarded blocks are widened "
                    "back",
                    info.tier_kv_types, info.tier_block_bytes,
                    double(info.tier_block_bytes) / double(kv.kv_bytes_per_block), info.kv_types));
  }
  auto chat = server::ChatFormatForModel(path, (*engine)->tokenizer(), log);
  if (!chat.ok()) return chat.status();

  impl->loop = std::make_unique<EngineLoop>(std::move(engine).value(), nullptr, log);
  impl->ctx = std::make_unique<ServerContext>(o, impl->loop.get(), std::move(chat).value(), ModelName(o, path), log);
  ServerContext& ctx = *impl->ctx;
  ctx.tenants = std::move(tenants).value();
  ctx.limits = server::RequestLimits{.context_tokens = info.n_ctx, .max_tokens_limit = o.max_tokens_limit};
  ctx.limits.max_n = o.max_n;
  ctx.started_unix = static_cast<int64_t>(std::time(nullptr));
  ctx.id_salt = Entropy();
  ctx.random_weights = o.model_path.empty();
  if (!o.record_trace.empty()) {
    // The engine's clock (EngineOptions::clock: the steady one here), so
    // that the traces of several servers on one machine share a time line.
    auto trace = server::TraceRecorder::Open(o.record_trace, SteadyClock::Default().Now(), log);
    if (!trace.ok()) {
      impl->loop->Stop();
      return trace.status();
    }
    ctx.trace = std::move(trace).value();
    log(fmt::format("recording every finished request to {} (kvstack trace format)", o.record_trace));
  }

  if (!o.kv_events.enabled() && !o.kv_events.replay_endpoint.empty()) {
    impl->loop->Stop();
    return InvalidArgument("--kv-events-replay needs --kv-events (the endpoint the events themselves go to)");
  }
  if (o.kv_events.enabled()) {
    auto feed = server::KvEventFeed::Start(o.kv_events, impl->loop.get(), log);
    if (!feed.ok()) {
      impl->loop->Stop();
      return feed.status();
    }
    impl->kv_events = std::move(feed).value();
  }

  httplib::Server& http = impl->http;
  const int threads = server::HttpThreads(o);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(o.max_body_bytes);
  server::InstallErrorBodies(http, o.max_body_bytes);
  server::AddCompletionRoutes(http, ctx);
  server::AddCacheRoutes(http, ctx);
  server::AddInfoRoutes(http, ctx);
  server::AddMetricsRoutes(http, ctx);
  server::AddMemoryRoutes(http, ctx);
  server::AddTokenizeRoutes(http, ctx);
  server::AddKvEventRoutes(http, ctx, impl->kv_events.get());

  if (o.port == 0) {
    impl->port = http.bind_to_any_port(o.host);
  } else {
    impl->port = http.bind_to_port(o.host, o.port) ? o.port : -1;
  }
  if (impl->port < 0) {
    const int err = errno;
    impl->loop->Stop();
    return Unavailable(fmt::format("cannot listen on {}:{}: {} (is another server on that port? --port 0 picks a "
                                   "free one)",
                                   o.host, o.port, err ? std::strerror(err) : "bind failed"));
  }
  Impl* raw = impl.get();
  impl->listener = std::thread([raw] { raw->Listen(); });
  impl->stopper = std::thread([raw] { raw->StopWhenAsked(); });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

}  // namespace kvstack
