#include "server/http_guard.h"

#include <fmt/format.h>

#include "server/access.h"
#include "server/lingering_server.h"

namespace kvstack::server {

AdmissionGate::Ticket& AdmissionGate::Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    Release();
    gate_ = o.gate_;
    o.gate_ = nullptr;
  }
  return *this;
}

void AdmissionGate::Ticket::Release() {
  if (gate_) gate_->Leave();
  gate_ = nullptr;
}

std::optional<AdmissionGate::Ticket> AdmissionGate::TryEnter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (in_flight_ >= capacity_) return std::nullopt;
  ++in_flight_;
  return Ticket(this);
}

void AdmissionGate::Leave() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_.notify_all();
}

int64_t AdmissionGate::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

void AdmissionGate::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return in_flight_ == 0; });
}

std::optional<ApiError> CheckApiKey(const httplib::Request& req, const std::string& api_key) {
  // One key, as a client key: the same constant-time check and messages.
  return AccessControl({api_key}, "", false).Check(req, Access::kClient);
}

ApiError QueueFull(int32_t max_running, int32_t max_queue) {
  return ApiError{.http_status = 429,
                  .message = fmt::format("server busy: {} requests in flight already (--max-running {} plus "
                                         "--max-queue {}); retry later",
                                         int64_t{max_running} + max_queue, max_running, max_queue),
                  .type = "rate_limit_error",
                  .code = "queue_full"};
}

ApiError Draining() {
  return ApiError{.http_status = 503,
                  .message = "the server is shutting down and takes no new requests",
                  .type = "server_error",
                  .code = "shutting_down"};
}

ApiError UnknownRoute(const std::string& method, const std::string& path) {
  return ApiError{.http_status = 404,
                  .message = fmt::format("no route {} {}: see the endpoints in `kvstack serve --help`", method, path),
                  .code = "not_found"};
}

ApiError BodyTooLarge(size_t limit) {
  return ApiError{.http_status = 413,
                  .message = fmt::format("request body too large: the limit is {} bytes (--max-body-bytes)", limit),
                  .code = "request_too_large"};
}

std::string JsonText(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void SendJson(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(JsonText(body), "application/json");
}

void SendError(httplib::Response& res, const ApiError& error) { SendJson(res, error.http_status, error.ToJson()); }

void InstallErrorBodies(httplib::Server& http, size_t max_body_bytes) {
  http.set_error_handler([max_body_bytes](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error reply
    if (res.status != 404) {
      // httplib's own refusal (413, 414, a malformed request): what follows
      // on the connection may be the unread rest of this request, so this
      // response is the connection's last (see lingering_server.h).
      res.set_header("Connection", "close");
      CloseAfterThisResponse();
    }
    switch (res.status) {
      case 404: SendError(res, UnknownRoute(req.method, req.path)); break;
      case 413: SendError(res, BodyTooLarge(max_body_bytes)); break;
      default:
        SendError(res, ApiError{.http_status = res.status,
                                .message = fmt::format("HTTP {}: the request could not be read", res.status)});
    }
  });
}

}  // namespace kvstack::server
