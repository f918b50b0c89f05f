// The server's edge checks and error replies: API key, admission (the queue
// limit), and the JSON error bodies for what httplib itself refuses (unknown
// routes, bodies over the size limit).
//
//   401  missing or wrong "Authorization: Bearer <key>" (see access.h)
//   413  body larger than --max-body-bytes
//   429  --max-running requests run and --max-queue more wait already
//   503  the server is draining (SIGTERM) and takes no new requests
//   404  no such route
// Thread safety: AdmissionGate is safe from any thread; the rest are pure.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace kvstack::server {

// Counts the generation requests in flight (queued, running or streaming)
// and refuses one more past `capacity`.
class AdmissionGate {
 public:
  explicit AdmissionGate(int64_t capacity) : capacity_(capacity) {}

  // Holds one place while it lives (move-only).
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& o) noexcept : gate_(o.gate_) { o.gate_ = nullptr; }
    Ticket& operator=(Ticket&& o) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { Release(); }
    void Release();

   private:
    friend class AdmissionGate;
    explicit Ticket(AdmissionGate* gate) : gate_(gate) {}
    AdmissionGate* gate_ = nullptr;
  };

  // A place, or nullopt when `capacity` requests are in flight.
  std::optional<Ticket> TryEnter();
  int64_t in_flight() const;
  int64_t capacity() const { return capacity_; }
  // Blocks until nothing is in flight.
  void WaitIdle();

 private:
  void Leave();
  const int64_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable idle_;
  int64_t in_flight_ = 0;  // GUARDED_BY(mu_)
};

// nullopt when `api_key` is empty or the request carries it (AccessControl
// with one client key; the server itself uses ServerContext::access).
std::optional<ApiError> CheckApiKey(const httplib::Request& req, const std::string& api_key);

ApiError QueueFull(int32_t max_running, int32_t max_queue);
ApiError Draining();
ApiError UnknownRoute(const std::string& method, const std::string& path);
ApiError BodyTooLarge(size_t limit);

// JSON text; invalid UTF-8 in strings becomes U+FFFD instead of throwing.
std::string JsonText(const nlohmann::json& j);
void SendJson(httplib::Response& res, int status, const nlohmann::json& body);
void SendError(httplib::Response& res, const ApiError& error);

// Turns httplib's own refusals (404, 413, malformed HTTP) into OpenAI-style
// error bodies; replies that already have a body are left alone.
void InstallErrorBodies(httplib::Server& http, size_t max_body_bytes);

}  // namespace kvstack::server
