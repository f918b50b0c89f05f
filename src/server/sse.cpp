#include "server/sse.h"

#include "server/api_error.h"

namespace kvstack::server {

std::string SseFrame(const nlohmann::json& data) {
  // dump() escapes newlines inside strings, so a chunk is always one line.
  std::string out = "data: ";
  out += data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += "\n\n";
  return out;
}

std::string SseStream::Frames(const GenerationEvent& event) {
  std::string out;
  if (event.finish == FinishReason::kCancelled) {
    out += SseFrame(ApiError{.http_status = 503,
                             .message = "the request was cancelled: the server is shutting down",
                             .type = "server_error",
                             .code = "cancelled"}
                        .ToJson());
    out += kSseDone;
    done_ = true;
    return out;
  }
  const bool final = event.finish != FinishReason::kNone;
  if (!event.text.empty() || final) {
    out += SseFrame(StreamChunk(meta_, event.text, first_, final ? std::optional(event.finish) : std::nullopt));
    first_ = false;
  }
  if (final) {
    if (include_usage_) out += SseFrame(UsageChunk(meta_, event.metrics));
    out += kSseDone;
    done_ = true;
  }
  return out;
}

}  // namespace kvstack::server
