// FleetRouter: start-up checks, the threads, stopping (see fleet_router.h).
#include "kvstack/fleet_router.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <regex>

#include <fmt/format.h>

#include "kvstack/gguf.h"
#include "kvstack/model_identity.h"
#include "router/fleet_impl.h"

namespace kvstack {

std::vector<WorkerLoad> FleetRouter::Impl::Loads() const {
  std::vector<WorkerLoad> out;
  out.reserve(workers.size());
  for (const auto& w : workers) {
    out.push_back(WorkerLoad{.healthy = w->healthy.load(),
                             .running = w->in_flight.load(),
                             .waiting = 0,
                             .queued_prefill_blocks = w->queued_blocks.load()});
  }
  return out;
}

bool FleetRouter::Impl::SleepFor(int ms) {
  std::unique_lock<std::mutex> lock(stop_mu);
  stop_cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping.load(); });
  return !stopping.load();
}

namespace {

Result<std::pair<std::string, int>> ParseWorkerUrl(const std::string& url) {
  static const std::regex re(R"(^http://([A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})/?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) {
    return InvalidArgument(fmt::format("--worker {}: expected http://HOST:PORT", url));
  }
  const int port = std::stoi(m[2]);
  if (port < 1 || port > 65535) return InvalidArgument(fmt::format("--worker {}: port must be 1..65535", url));
  return std::pair(m[1].str(), port);
}

}  // namespace

Result<std::unique_ptr<FleetRouter>> FleetRouter::Start(const FleetRouterOptions& o) {
  if (o.workers.empty()) return InvalidArgument("--worker: give at least one worker (http://HOST:PORT)");
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->log = o.log ? o.log : [](std::string_view line) { std::fprintf(stderr, "%.*s\n", int(line.size()), line.data()); };

  auto file = GgufFile::Open(o.model_path);
  if (!file.ok()) return file.status();
  auto tokenizer = Tokenizer::FromGguf(*file);
  if (!tokenizer.ok()) return tokenizer.status();
  impl->tokenizer = std::move(tokenizer).value();
  auto identity = ModelIdentityOf(o.model_path);
  if (!identity.ok()) return identity.status();
  impl->model_identity = *identity;
  auto chat = server::ChatFormatForModel(o.model_path, *impl->tokenizer, impl->log);
  if (!chat.ok()) return chat.status();
  impl->chat = std::move(chat).value();

  for (size_t i = 0; i < o.workers.size(); ++i) {
    auto hp = ParseWorkerUrl(o.workers[i]);
    if (!hp.ok()) return hp.status();
    auto w = std::make_unique<fleet::Worker>();
    w->id = static_cast<WorkerId>(i);
    w->url = o.workers[i];
    w->host = hp->first;
    w->port = hp->second;
    w->key = o.worker_key;
    auto info = fleet::FetchEventInfo(*w);
    if (!info.ok()) return info.status();
    if (info->model_identity != impl->model_identity) {
      return FailedPrecondition(fmt::format("worker {} serves model {}, this router's --model {} is {}: block keys "
                                            "would never match",
                                            w->url, info->model_identity, o.model_path, impl->model_identity));
    }
    if (i == 0) {
      impl->block_size = info->block_size;
      impl->hasher = BlockHasher(info->hash_seed);
      impl->cache_identity = info->cache_identity;
    } else if (info->cache_identity != impl->cache_identity) {
      return FailedPrecondition(fmt::format("worker {} stores KV as {}, worker {} as {}: their block keys differ; "
                                            "start every worker with the same --kv-type and --block-size",
                                            w->url, info->cache_identity, o.workers[0], impl->cache_identity));
    } else if (info->block_size != impl->block_size || info->hash_seed != impl->hasher.seed()) {
      return FailedPrecondition(fmt::format("worker {} uses block size {} (hash seed {}), worker {} uses {} ({}): "
                                            "start every worker with the same --block-size",
                                            w->url, info->block_size, info->hash_seed, o.workers[0],
                                            impl->block_size, impl->hasher.seed()));
    }
    w->events = *info;
    impl->workers.push_back(std::move(w));
  }
  for (const std::string& spec : o.foreign_workers) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument(fmt::format("--foreign-worker {}: expected http://HOST:PORT=tcp://EVENTS[,tcp://REPLAY]",
                                         spec));
    }
    auto hp = ParseWorkerUrl(spec.substr(0, eq));
    if (!hp.ok()) return hp.status();
    auto w = std::make_unique<fleet::Worker>();
    w->id = static_cast<WorkerId>(impl->workers.size());
    w->url = spec.substr(0, eq);
    w->host = hp->first;
    w->port = hp->second;
    w->foreign = true;
    const std::string endpoints = spec.substr(eq + 1);
    const size_t comma = endpoints.find(',');
    w->events.endpoint = endpoints.substr(0, comma);
    if (comma != std::string::npos) w->events.replay_endpoint = endpoints.substr(comma + 1);
    impl->workers.push_back(std::move(w));
  }
  if (impl->block_size == 0) {
    return InvalidArgument("--worker: give at least one kvstack worker (its block size and hash seed set the keys)");
  }
  impl->index = std::make_unique<BlockIndex>(BlockIndex::Options{.hash_seed = impl->hasher.seed(),
                                                                 .model_id = impl->cache_identity,
                                                                 .durable_priority = 50});
  for (const auto& w : impl->workers) impl->index->AddWorker(w->foreign);
  impl->router = std::make_unique<Router>(o.routing, impl->index.get(), nullptr);

  fleet::AddProxyRoutes(*impl);
  fleet::AddViewRoutes(*impl);
  impl->http.new_task_queue = [] { return new httplib::ThreadPool(64); };
  impl->port = o.port == 0 ? impl->http.bind_to_any_port(o.host) : (impl->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (impl->port < 0) {
    return Unavailable(fmt::format("cannot listen on {}:{}: {}", o.host, o.port, std::strerror(errno)));
  }
  Impl* raw = impl.get();
  for (auto& w : impl->workers) {
    fleet::Worker* wp = w.get();
    w->subscriber = std::thread([raw, wp] { fleet::RunSubscriber(*raw, *wp); });
  }
  impl->health = std::thread([raw] { fleet::RunHealth(*raw); });
  impl->listener = std::thread([raw] {
    if (!raw->http.listen_after_bind()) raw->listen_status = Unavailable("the router's HTTP listener failed");
  });
  impl->log(fmt::format("kvstack router: {} workers, policy {}, model {} (block size {})", impl->workers.size(),
                        RoutingPolicyName(o.routing.policy), impl->model_identity, impl->block_size));
  return std::unique_ptr<FleetRouter>(new FleetRouter(std::move(impl)));
}

FleetRouter::FleetRouter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FleetRouter::~FleetRouter() {
  Shutdown();
  Wait().IgnoreError();
}

int FleetRouter::port() const { return impl_->port; }
std::string FleetRouter::url() const { return fmt::format("http://{}:{}", impl_->options.host, impl_->port); }

void FleetRouter::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(impl_->stop_mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  // stop() works once the listener runs; it starts right after bind.
  while (!impl_->http.is_running() && impl_->listener.joinable() && impl_->listen_status.ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->http.stop();
}

Status FleetRouter::Wait() {
  if (impl_->listener.joinable()) impl_->listener.join();
  if (impl_->health.joinable()) impl_->health.join();
  for (auto& w : impl_->workers) {
    if (w->subscriber.joinable()) w->subscriber.join();
  }
  return impl_->listen_status;
}

}  // namespace kvstack
