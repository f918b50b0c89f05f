// EngineLoop: the engine thread of the server, and the only way to it.
//
// The thread owns the Engine (and so its KV cache) and the PinRegistry, and
// loops until stopped:
//   1. run every queued command, oldest first (submit, cancel, pin, unpin, a
//      read such as the cache's metrics);
//   2. release the pins whose TTL has passed;
//   3. Step() the engine once and hand each event to its request's route.
// With no work and no command it sleeps until a command comes or the next pin
// expires.
//
// Ownership: a command is a closure the queue owns until the engine thread
// takes it. Routes (RequestId -> the sink of its events) and the pins live on
// the engine thread only: nothing but a command touches them. A request's
// route is removed with its final event.
//
// Thread safety: the public methods may be called from any thread; Pin,
// Unpin and Call block until the engine thread has answered.
// Locking: mu_ is the loop's only lock. It guards the command queue and the
// stopping flag, and is never held while a command runs or a channel is
// touched (RequestChannel's own lock is taken only outside mu_).
#pragma once

#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "kvstack/engine.h"
#include "server/log.h"
#include "server/pin_registry.h"
#include "server/request_channel.h"

namespace kvstack::server {

class EngineLoop {
 public:
  // Starts the engine thread. REQUIRES: engine is not null; `clock` (nullptr:
  // the steady clock) is the one the engine reads, and outlives the loop.
  EngineLoop(std::unique_ptr<Engine> engine, const Clock* clock, Log log);
  // Stop().
  ~EngineLoop();
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // Queues a request. Its events (or its rejection: Engine::Submit's error,
  // or Unavailable once the loop is stopping) come through the channel.
  std::shared_ptr<RequestChannel> Submit(GenerationRequest request);
  // Ends the request if it still runs (a final kCancelled event follows);
  // nothing if it has finished. Safe to call more than once.
  void Cancel(const std::shared_ptr<RequestChannel>& channel);

  struct PinSpec {
    std::vector<Token> tokens;
    std::string cache_salt;
    std::optional<Micros> ttl;
    TenantId tenant;  // cache_salt's: the pin's label and owner (PinRegistry::Add)
  };
  // Computes the prompt's KV unless it is all cached (a one-token generation
  // whose token is dropped), then pins its full blocks. Blocks until done.
  // Fails as KvCache::Pin does (ResourceExhausted over the pin cap), with
  // Engine::Submit's errors, or Unavailable when the loop stops first.
  Result<PinInfo> Pin(PinSpec spec);
  // NotFound naming the id when there is no such pin, or (with `owner`) no
  // such pin of that tenant. nullopt owner: any pin (the operator).
  Status Unpin(const std::string& id, std::optional<std::string> owner = std::nullopt);
  // Every pin, or with `owner` only that tenant's.
  Result<std::vector<PinInfo>> ListPins(std::optional<std::string> owner = std::nullopt);

  // Runs fn(engine) on the engine thread between two steps and returns what
  // it returns: the seam for endpoints that read the engine (cache metrics,
  // memory). Unavailable once the loop is stopping. fn must not block.
  template <typename F>
  auto Call(F fn) -> Result<std::invoke_result_t<F, Engine&>> {
    using T = std::invoke_result_t<F, Engine&>;
    auto promise = std::make_shared<std::promise<T>>();
    std::future<T> future = promise->get_future();
    if (!Post([this, promise, fn = std::move(fn)]() mutable { promise->set_value(fn(*engine_)); })) {
      return Stopping();
    }
    return future.get();
  }

  // Cancels every request, runs the commands already queued (submits are
  // accepted and cancelled at once), releases every pin and joins the
  // thread. Idempotent.
  void Stop();

  // Immutable after construction: safe from any thread.
  const Tokenizer& tokenizer() const { return engine_->tokenizer(); }
  const EngineInfo& info() const { return engine_->info(); }
  int32_t block_size() const { return block_size_; }
  const Clock& clock() const { return *clock_; }

 private:
  using Command = std::function<void()>;
  using Route = std::function<void(GenerationEvent&&)>;

  static Status Stopping();
  // False (and `command` dropped) once the loop is stopping.
  bool Post(Command command);
  void Run();
  // Engine thread only, below.
  void RouteEvents(std::vector<GenerationEvent>& events);
  void StartPin(PinSpec spec, std::shared_ptr<std::promise<Result<PinInfo>>> done);

  std::unique_ptr<Engine> engine_;
  const Clock* clock_;
  const int32_t block_size_;
  Log log_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> commands_;  // GUARDED_BY(mu_)
  bool stopping_ = false;          // GUARDED_BY(mu_)

  // Engine thread only.
  std::unordered_map<RequestId, Route> routes_;
  PinRegistry pins_;

  std::once_flag stop_once_;
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace kvstack::server
