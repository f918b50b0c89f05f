// The logprobs objects of OpenAI's responses, from the engine's
// PositionLogprobs (log-softmax of the raw logits; see sampler.h).
//
//   /v1/completions   {"tokens": ["..."], "token_logprobs": [lp], "top_logprobs":
//                      [{"token": lp, ...}], "text_offset": [bytes]}: the top
//                      alternatives of each position plus the chosen token (so
//                      up to logprobs + 1 entries, as OpenAI documents); with
//                      echo, the prompt's positions come first and the first
//                      prompt token has null logprob and null top_logprobs.
//                      text_offset is each token's byte offset in the
//                      concatenation of the token strings.
//   /v1/chat/completions  {"content": [{"token", "logprob", "bytes": [..],
//                      "top_logprobs": [{"token", "logprob", "bytes"}]}],
//                      "refusal": null}
// A token's string is its piece (the bytes it stands for; a byte token that
// is half a UTF-8 character is replaced when the JSON is written).
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>

#include <nlohmann/json.hpp>

#include "kvstack/sampler.h"
#include "kvstack/tokenizer.h"

namespace kvstack::server {

// `echo_prompt` (may be empty) are the prompt's tokens shown before the
// generated ones; prompt_scores[i] scores echo_prompt[i + 1] (empty: the
// prompt's logprobs were not computed, and show as null). `*text_offset` is
// the first token's offset, advanced past every token.
nlohmann::json CompletionLogprobsJson(const Tokenizer& tokenizer, std::span<const Token> echo_prompt,
                                      std::span<const PositionLogprobs> prompt_scores,
                                      std::span<const PositionLogprobs> generated, int64_t* text_offset);

nlohmann::json ChatLogprobsJson(const Tokenizer& tokenizer, std::span<const PositionLogprobs> generated);

}  // namespace kvstack::server
