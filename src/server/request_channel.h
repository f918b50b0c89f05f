// RequestChannel: carries one request's events from the engine thread to the
// HTTP handler thread that waits for them.
//
// Ownership: a shared_ptr held by the handler (which waits on it) and by the
// engine loop's route table (which fills it); whichever lets go last frees it.
//
// States, in order (each set once, by the engine thread):
//   pending    queued; the engine thread has not submitted it yet
//   accepted   Engine::Submit took it (id() is its RequestId); events follow,
//              and the last one has request_finished set
//   rejected   Engine::Submit (or a stopped loop) refused it: status() says
//              why, and no event will ever come
// Thread safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "kvstack/engine.h"
#include "kvstack/status.h"

namespace kvstack::server {

class RequestChannel {
 public:
  // --- Engine thread ---------------------------------------------------------
  void Accept(RequestId id);
  void Reject(Status status);
  // REQUIRES: accepted, and no final event pushed yet.
  void Push(GenerationEvent event);

  // --- Handler thread --------------------------------------------------------
  // Blocks until the engine thread accepted or rejected the request: OK, or
  // the rejection.
  Status WaitAccepted();
  // Moves every waiting event to *out; when none waits, first waits up to
  // `timeout` for one. Returns false once the final event has been taken
  // (nothing more will come), true otherwise.
  bool Take(std::vector<GenerationEvent>* out, std::chrono::milliseconds timeout);

  // The engine's id, once accepted.
  std::optional<RequestId> id() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<RequestId> id_;        // set: accepted
  std::optional<Status> rejected_;     // set: rejected
  std::deque<GenerationEvent> events_;  // pushed, not yet taken
  bool final_taken_ = false;
};

}  // namespace kvstack::server
