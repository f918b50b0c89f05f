#include "server/api_error.h"

#include <cctype>

namespace kvstack::server {

nlohmann::json ApiError::ToJson() const {
  nlohmann::json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return {{"error", std::move(e)}};
}

ApiError BadRequest(std::string message, std::string param) {
  return ApiError{.http_status = 400, .message = std::move(message), .param = std::move(param)};
}

namespace {

// "top_p 1.5: must be in (0, 1]" blames top_p, as do "prompt: ..." and
// "prompt[3]: ...": kvstack's messages start with the field they are about,
// then its value and a colon. Anything else blames no field.
std::string LeadingField(const std::string& message) {
  size_t n = 0;
  while (n < message.size() && (std::isalnum(static_cast<unsigned char>(message[n])) || message[n] == '_')) ++n;
  if (n == 0 || n == message.size()) return "";
  if (message[n] == ':' || message[n] == '[') return message.substr(0, n);
  if (message[n] != ' ') return "";
  const size_t value_end = message.find(' ', n + 1);
  if (value_end == std::string::npos || value_end == n + 1 || message[value_end - 1] != ':') return "";
  return message.substr(0, n);
}

}  // namespace

ApiError FromStatus(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return BadRequest(status.message(), LeadingField(status.message()));
    case StatusCode::kNotFound:
      return ApiError{.http_status = 404, .message = status.message(), .code = "not_found"};
    case StatusCode::kUnavailable:
      return ApiError{.http_status = 503, .message = status.message(), .type = "server_error", .code = "unavailable"};
    case StatusCode::kResourceExhausted:
      return ApiError{.http_status = 507, .message = status.message(), .type = "server_error",
                      .code = "insufficient_capacity"};
    default:
      return ApiError{.http_status = 500, .message = status.ToString(), .type = "server_error", .code = "internal"};
  }
}

}  // namespace kvstack::server
