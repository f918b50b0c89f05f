// Server-sent events for streamed completions.
//
// SseStream turns one request's GenerationEvents into the frames a client
// reads: "data: {chunk}\n\n" for each piece of text, the last chunk with its
// finish_reason, a usage chunk when stream_options.include_usage asked, then
// "data: [DONE]\n\n". A request that ends cancelled (the server stopped it)
// gets an error frame {"error": {...}} before [DONE].
// Thread safety: one SseStream per request, used by one thread at a time.
#pragma once

#include <string>
#include <string_view>

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

  // The frames for `event`; empty when it carries neither text nor a finish.
  // REQUIRES: !done().
  std::string Frames(const GenerationEvent& event);
  // The final event was framed: nothing more to send.
  bool done() const { return done_; }
  const ResponseMeta& meta() const { return meta_; }

 private:
  ResponseMeta meta_;
  bool include_usage_;
  bool first_ = true;
  bool done_ = false;
};

}  // namespace kvstack::server
