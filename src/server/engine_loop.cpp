#include "server/engine_loop.h"

#include <chrono>

#include <fmt/format.h>

namespace kvstack::server {

EngineLoop::EngineLoop(std::unique_ptr<Engine> engine, const Clock* clock, Log log)
    : engine_(std::move(engine)),
      clock_(clock ? clock : &SteadyClock::Default()),
      block_size_(engine_->cache().block_size()),
      log_(std::move(log)),
      pins_(clock_),
      thread_([this] { Run(); }) {}

EngineLoop::~EngineLoop() { Stop(); }

Status EngineLoop::Stopping() { return Unavailable("the server is shutting down; retry on another instance"); }

bool EngineLoop::Post(Command command) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    commands_.push_back(std::move(command));
  }
  cv_.notify_one();
  return true;
}

std::shared_ptr<RequestChannel> EngineLoop::Submit(GenerationRequest request) {
  auto channel = std::make_shared<RequestChannel>();
  auto req = std::make_shared<GenerationRequest>(std::move(request));
  const bool posted = Post([this, channel, req] {
    auto id = engine_->Submit(std::move(*req));
    if (!id.ok()) {
      channel->Reject(id.status());
      return;
    }
    channel->Accept(*id);
    routes_[*id] = [channel](GenerationEvent&& e) { channel->Push(std::move(e)); };
  });
  if (!posted) channel->Reject(Stopping());
  return channel;
}

void EngineLoop::Cancel(const std::shared_ptr<RequestChannel>& channel) {
  Post([this, channel] {
    const std::optional<RequestId> id = channel->id();
    // Finished requests have no route: nothing to cancel.
    if (id && routes_.count(*id)) engine_->Cancel(*id).IgnoreError();
  });
}

Result<PinInfo> EngineLoop::Pin(PinSpec spec) {
  auto done = std::make_shared<std::promise<Result<PinInfo>>>();
  std::future<Result<PinInfo>> future = done->get_future();
  auto shared = std::make_shared<PinSpec>(std::move(spec));
  if (!Post([this, shared, done] { StartPin(std::move(*shared), done); })) return Stopping();
  return future.get();
}

void EngineLoop::StartPin(PinSpec spec, std::shared_ptr<std::promise<Result<PinInfo>>> done) {
  const ExtraKeys keys{.model_id = engine_->info().cache_identity, .cache_salt = spec.cache_salt};
  const PrefixMatch match = engine_->cache().Lookup(spec.tokens, keys);
  if (match.full_blocks == 0 || match.matched_blocks == match.full_blocks) {
    // Cached already (or too short, which Pin reports).
    done->set_value(pins_.Add(engine_->cache(), spec.tokens, keys, spec.ttl, spec.tenant));
    return;
  }
  // The engine has no prefill-only request: generate one token and drop it.
  // The prompt's full blocks enter the prefix cache when its prefill is
  // computed, and stay cached when the request ends; the route below runs
  // on this thread right after that Step, before anything could evict them.
  GenerationRequest r;
  r.prompt = spec.tokens;
  r.sampling.max_tokens = 1;
  r.cache_salt = spec.cache_salt;
  auto id = engine_->Submit(std::move(r));
  if (!id.ok()) {
    done->set_value(id.status());
    return;
  }
  auto shared = std::make_shared<PinSpec>(std::move(spec));
  routes_[*id] = [this, shared, keys, done](GenerationEvent&& e) {
    if (e.finish == FinishReason::kNone) return;
    if (e.finish == FinishReason::kCancelled) {
      done->set_value(Unavailable("pin: the prompt's prefill was cancelled: the server is shutting down"));
      return;
    }
    done->set_value(pins_.Add(engine_->cache(), shared->tokens, keys, shared->ttl, shared->tenant));
  };
}

Status EngineLoop::Unpin(const std::string& id, std::optional<std::string> owner) {
  auto done = std::make_shared<std::promise<Status>>();
  std::future<Status> future = done->get_future();
  if (!Post([this, id, owner = std::move(owner), done] { done->set_value(pins_.Remove(id, owner)); })) {
    return Stopping();
  }
  return future.get();
}

Result<std::vector<PinInfo>> EngineLoop::ListPins(std::optional<std::string> owner) {
  auto done = std::make_shared<std::promise<std::vector<PinInfo>>>();
  std::future<std::vector<PinInfo>> future = done->get_future();
  if (!Post([this, owner = std::move(owner), done] { done->set_value(pins_.List(owner)); })) return Stopping();
  return future.get();
}

void EngineLoop::Stop() {
  std::call_once(stop_once_, [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  });
}

void EngineLoop::RouteEvents(std::vector<GenerationEvent>& events) {
  for (GenerationEvent& e : events) {
    auto it = routes_.find(e.id);
    if (it == routes_.end()) continue;  // cannot happen: every submit has a route
    const bool final = e.request_finished;
    // Move the route out first: a pin's route may add routes.
    Route route = final ? std::move(it->second) : it->second;
    if (final) routes_.erase(it);
    route(std::move(e));
  }
}

void EngineLoop::Run() {
  std::vector<Command> batch;
  std::vector<GenerationEvent> events;
  bool cancelled_all = false;
  for (;;) {
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (commands_.empty() && !stopping_ && !engine_->HasWork()) {
        const auto ready = [&] { return !commands_.empty() || stopping_; };
        if (const std::optional<Micros> next = pins_.NextExpiry()) {
          const Micros wait = std::max<Micros>(*next - clock_->Now(), 0);
          cv_.wait_for(lock, std::chrono::microseconds(wait), ready);
        } else {
          cv_.wait(lock, ready);
        }
      }
      batch.swap(commands_);
      stopping = stopping_;
    }
    for (Command& c : batch) c();
    batch.clear();

    if (stopping && !cancelled_all) {
      for (const auto& [id, route] : routes_) engine_->Cancel(id).IgnoreError();
      cancelled_all = true;
    }
    for (const std::string& id : pins_.ExpireDue()) log_(fmt::format("pin {} expired: its blocks are evictable again", id));

    if (!engine_->HasWork()) {
      if (stopping) break;
      continue;
    }
    events.clear();
    Status s = engine_->Step(&events);
    RouteEvents(events);
    if (!s.ok()) {
      // A failed step is a bug or a broken model: end every request (each
      // gets kCancelled from the next step) rather than retry forever.
      log_(fmt::format("engine step failed: {}; cancelling {} requests", s.ToString(), routes_.size()));
      for (const auto& [id, route] : routes_) engine_->Cancel(id).IgnoreError();
    }
  }
  pins_.Clear();
  log_("engine thread stopped");
}

}  // namespace kvstack::server
