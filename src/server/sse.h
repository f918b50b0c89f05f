// Server-sent events for streamed completions.
//
// SseStream turns one request's GenerationEvents into the frames a client
// reads: "data: {chunk}\n\n" for each piece of text, the last chunk with its
// finish_reason, a usage chunk when stream_options.include_usage asked, then
// "data: [DONE]\n\n". A request that ends cancelled (the server stopped it)
// gets an error frame {"error": {...}} before [DONE]. With n > 1 each chunk
// carries one choice's index; each choice's first chunk carries the echoed
// prompt (and its logprobs) when echo asked, and its last its finish_reason;
// [DONE] follows the request's last event.
// Thread safety: one SseStream per request, used by one thread at a time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvstack/engine.h"
#include "server/openai_response.h"

namespace kvstack::server {

inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// "data: <json>\n\n".
std::string SseFrame(const nlohmann::json& data);

class SseStream {
 public:
  SseStream(ResponseMeta meta, bool include_usage) : meta_(std::move(meta)), include_usage_(include_usage) {}

  // The frames for `event`; empty when it carries neither text, logprobs nor
  // a finish, or after done().
  std::string Frames(const GenerationEvent& event);
  // The final event was framed: nothing more to send.
  bool done() const { return done_; }
  const ResponseMeta& meta() const { return meta_; }

 private:
  struct Choice {
    bool first = true;
    int64_t text_offset = 0;  // logprobs' text_offset so far
  };
  // One choice's chunk for `event` (with `index`, for score-only copies).
  std::string ChoiceFrame(const GenerationEvent& event, int32_t index, bool final);

  ResponseMeta meta_;
  bool include_usage_;
  bool done_ = false;
  std::vector<Choice> choices_;
  std::vector<PositionLogprobs> prompt_scores_;  // choice 0 brings them; every choice echoes them
  RequestMetrics usage_;
};

}  // namespace kvstack::server
