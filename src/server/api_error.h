// ApiError: an error as an HTTP client sees it, in OpenAI's shape:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// with the HTTP status it goes out with. ApiResult<T> is a value or such an
// error: what request parsing and the route handlers pass around.
//
// Every message says what was wrong and what to do ("max_tokens 5000 exceeds
// this server's limit of 4096 (--max-tokens-limit)"); `param` names the
// request field when one is to blame.
// Thread safety: values.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

#include "kvstack/status.h"

namespace kvstack::server {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field to blame; empty: null
  std::string code;   // a stable machine-readable code; empty: null

  nlohmann::json ToJson() const;
};

// 400 invalid_request_error blaming `param` (empty: none).
ApiError BadRequest(std::string message, std::string param = "");
// An engine-side Status as the client sees it: InvalidArgument is 400 (the
// param is the message's first word when it names a field), Unavailable 503,
// ResourceExhausted 507, NotFound 404, anything else 500.
ApiError FromStatus(const Status& status);

template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  ApiResult(ApiError error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  // REQUIRES: !ok().
  const ApiError& error() const { return std::get<ApiError>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

}  // namespace kvstack::server
