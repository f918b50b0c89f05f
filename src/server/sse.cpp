#include "server/sse.h"

#include "server/api_error.h"
#include "server/logprobs_json.h"

namespace kvstack::server {

std::string SseFrame(const nlohmann::json& data) {
  // dump() escapes newlines inside strings, so a chunk is always one line.
  std::string out = "data: ";
  out += data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += "\n\n";
  return out;
}

std::string SseStream::ChoiceFrame(const GenerationEvent& event, int32_t index, bool final) {
  if (static_cast<size_t>(index) >= choices_.size()) choices_.resize(static_cast<size_t>(index) + 1);
  Choice& c = choices_[static_cast<size_t>(index)];
  const bool chat = meta_.endpoint == Endpoint::kChat;
  const bool echo = meta_.echo && c.first;
  const bool logprobs = meta_.logprobs >= 0;
  if (event.text.empty() && !final && !echo && !(logprobs && !event.logprobs.empty())) return {};
  nlohmann::json lp = nullptr;
  if (logprobs) {
    if (chat) {
      lp = ChatLogprobsJson(*meta_.tokenizer, event.logprobs);
    } else {
      const std::span<const Token> echoed = echo ? std::span<const Token>(meta_.prompt_tokens) : std::span<const Token>();
      lp = CompletionLogprobsJson(*meta_.tokenizer, echoed, prompt_scores_, event.logprobs, &c.text_offset);
    }
  }
  const std::string text = echo ? meta_.echo_text + event.text : event.text;
  std::string out =
      SseFrame(StreamChunk(meta_, index, text, c.first, final ? std::optional(event.finish) : std::nullopt, std::move(lp)));
  c.first = false;
  return out;
}

std::string SseStream::Frames(const GenerationEvent& event) {
  std::string out;
  if (done_) return out;
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
  if (!event.prompt_logprobs.empty()) prompt_scores_ = event.prompt_logprobs;
  const bool final = event.finish != FinishReason::kNone;
  out += ChoiceFrame(event, event.choice, final);
  if (final && meta_.score_only) {
    for (int32_t i = 1; i < meta_.n; ++i) out += ChoiceFrame(event, i, final);
  }
  if (final) AddChoiceUsage(&usage_, event.metrics);
  if (event.request_finished) {
    if (include_usage_) out += SseFrame(UsageChunk(meta_, usage_));
    out += kSseDone;
    done_ = true;
  }
  return out;
}

}  // namespace kvstack::server
