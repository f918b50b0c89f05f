// Request parsing and validation for the OpenAI-compatible endpoints: the
// JSON body to a typed request, then, with the tokenizer, to the engine's
// GenerationRequest. Every failure is a 400 that names the field.
//
// Two steps, so the first can be tested without a model:
//   ParseCompletionBody  JSON types and ranges, OpenAI fields and kvstack's
//                        KV controls (see kv_controls.h)
//   TokenizePrompt +     prompt tokens; limits that depend on the prompt's
//   BuildGeneration      length (context, retention ranges)
//
// Supported: /v1/completions (prompt: a string, an array of token ids, or an
// array holding one string), /v1/chat/completions (messages with string
// content or text parts). Fields: max_tokens (max_completion_tokens for chat),
// temperature, top_p, top_k, min_p, repetition_penalty, seed, stop, stream,
// stream_options.include_usage, ignore_eos, n (1..--max-n), best_of (equal to
// n), logprobs (completions: 0..20 alternatives; chat: true/false with
// top_logprobs 0..20), echo (completions; with max_tokens 0 it scores the
// prompt). Accepted and ignored: model, user, presence_penalty,
// frequency_penalty, logit_bias and any field this server does not know.
// Refused: best_of other than n, echo on chat, suffix, tools.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvstack/engine.h"
#include "server/api_error.h"
#include "server/chat_format.h"
#include "server/kv_controls.h"

namespace kvstack {
class Tokenizer;
}

namespace kvstack::server {

enum class Endpoint : uint8_t { kCompletions, kChat };

// The prompt as the client gave it: exactly one of text, token ids, messages.
struct PromptInput {
  std::optional<std::string> text;
  std::optional<std::vector<Token>> token_ids;
  std::optional<std::vector<ChatMessage>> messages;
  std::string field = "prompt";  // the request field it came from, for errors
};

struct CompletionBody {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // as sent (responses carry the served name)
  PromptInput prompt;
  SamplingParams sampling;  // max_tokens and seed are decided by BuildGeneration
  std::optional<int64_t> max_tokens;
  std::optional<uint64_t> seed;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;
  KvControls kv;
  int32_t n = 1;          // choices
  int32_t logprobs = -1;  // alternatives per token (-1: no logprobs)
  bool echo = false;      // completions: the prompt comes back before each choice
};

struct RequestLimits {
  int32_t context_tokens = 0;    // the engine's context (prompt + generated)
  int32_t max_tokens_limit = 4096;
  int32_t default_max_tokens = 16;  // /v1/completions without max_tokens (OpenAI's default)
  int32_t max_n = 8;                // the most choices a request may ask for (--max-n)
};

// "invalid JSON: ..." or "request body must be a JSON object" otherwise.
ApiResult<nlohmann::json> ParseJsonObject(std::string_view body);

ApiResult<CompletionBody> ParseCompletionBody(const nlohmann::json& body, Endpoint endpoint,
                                              const RequestLimits& limits);

// "prompt" of /v1/completions or the pin endpoint's "prompt" / "token_ids";
// "messages" of a chat. REQUIRES: body.is_object().
ApiResult<PromptInput> ParsePrompt(const nlohmann::json& body, Endpoint endpoint);

// The prompt's tokens: text with BOS as the model wants it (and control-token
// text such as "<|im_start|>" read as those tokens), ids as given (checked
// against the vocabulary), messages rendered by `chat` first. 400 naming the
// prompt's field when it is empty or holds unknown ids.
ApiResult<std::vector<Token>> TokenizePrompt(const PromptInput& prompt, const Tokenizer& tokenizer,
                                             const ChatFormat& chat);

// The engine's request. Checks the prompt against the context, max_tokens
// against the server's limit, the retention ranges against the prompt; for
// chat adds `chat_stops` to the stop strings. `fallback_seed` is used when the
// client sent no seed.
ApiResult<GenerationRequest> BuildGeneration(const CompletionBody& body, std::vector<Token> prompt,
                                             const RequestLimits& limits, const std::vector<std::string>& chat_stops,
                                             uint64_t fallback_seed);

// POST /v1/cache/pin: {"prompt": "..." | "messages": [...] | "token_ids": [...],
// "cache_salt": "...", "ttl_s": N}.
struct PinBody {
  PromptInput prompt;
  std::string cache_salt;
  std::optional<Micros> ttl;
};
ApiResult<PinBody> ParsePinBody(const nlohmann::json& body);

}  // namespace kvstack::server
