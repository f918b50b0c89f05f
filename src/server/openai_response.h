// Response building for the OpenAI-compatible endpoints: complete responses,
// streamed chunks, usage, the model list.
//
//   /v1/completions       {"id": "cmpl-..", "object": "text_completion",
//                          "created", "model", "choices": [{"index": 0,
//                          "text", "logprobs": null, "finish_reason"}], "usage"}
//   /v1/chat/completions  {"id": "chatcmpl-..", "object": "chat.completion",
//                          ..., "choices": [{"index": 0, "message": {"role":
//                          "assistant", "content"}, "finish_reason"}], "usage"}
//   chunks                object "text_completion" / "chat.completion.chunk",
//                          choices[0].text / choices[0].delta, finish_reason
//                          null until the last; a usage chunk has choices []
//   usage                 {"prompt_tokens", "completion_tokens", "total_tokens",
//                          "prompt_tokens_details": {"cached_tokens"}}
// cached_tokens is RequestMetrics::cached_tokens: prompt tokens the prefix
// cache served. A request's session_id, when given, is echoed at top level.
// With n > 1 choices are indexed 0..n-1 (streamed chunks carry their index),
// and usage counts the prompt once and the tokens of every choice. logprobs
// are built by logprobs_json.h; with echo each choice's text (and logprobs)
// starts with the prompt's.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kvstack/engine.h"
#include "server/openai_request.h"

namespace kvstack::server {

// What every response and chunk of one request repeats.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;       // "cmpl-N" / "chatcmpl-N"
  std::string model;    // the served model name
  int64_t created = 0;  // Unix seconds
  std::string session_id;
  // What each choice shows besides its text.
  int32_t n = 1;
  int32_t logprobs = -1;   // alternatives per token; -1: "logprobs": null
  bool echo = false;       // completions: the prompt first
  bool score_only = false;  // max_tokens 0: the engine runs choice 0 only; every choice is a copy of it
  std::string echo_text;
  std::vector<Token> prompt_tokens;      // with echo and logprobs
  const Tokenizer* tokenizer = nullptr;  // REQUIRED when logprobs >= 0
};

// One choice of a whole response.
struct ChoiceOutput {
  std::string text;                        // generated (echo is added when built)
  std::vector<PositionLogprobs> logprobs;  // generated tokens, with logprobs
  FinishReason finish = FinishReason::kNone;
};

// Usage over choices: the prompt once, every choice's generated tokens.
void AddChoiceUsage(RequestMetrics* total, const RequestMetrics& choice);

// "stop" or "length"; nullopt while not finished. kCancelled has no OpenAI
// name: callers answer it as an error instead.
std::optional<std::string_view> OpenAiFinishReason(FinishReason reason);

nlohmann::json UsageJson(const RequestMetrics& metrics);

nlohmann::json CompletionResponse(const ResponseMeta& meta, const std::string& text, FinishReason finish,
                                  const RequestMetrics& metrics);
// Every choice, index i being choices[i]; prompt_scores are the prompt's
// logprobs (echo).
nlohmann::json CompletionResponse(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                                  std::span<const PositionLogprobs> prompt_scores, const RequestMetrics& usage);

// One streamed chunk carrying `text` (the first chat chunk also carries the
// role); finish set on the last.
nlohmann::json StreamChunk(const ResponseMeta& meta, const std::string& text, bool first,
                           std::optional<FinishReason> finish);
// The same for choice `index`, with `logprobs` (null when not asked) as the
// choice's logprobs field.
nlohmann::json StreamChunk(const ResponseMeta& meta, int32_t index, const std::string& text, bool first,
                           std::optional<FinishReason> finish, nlohmann::json logprobs);
// The chunk stream_options.include_usage asks for: choices [], usage set.
nlohmann::json UsageChunk(const ResponseMeta& meta, const RequestMetrics& metrics);

// GET /v1/models.
nlohmann::json ModelsResponse(const std::string& model, int64_t created, int32_t context_tokens);

}  // namespace kvstack::server
