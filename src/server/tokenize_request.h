// POST /tokenize and POST /detokenize, in vLLM's shapes (what routers and
// clients use to count and align tokens):
//
//   /tokenize    {"prompt": "text"} or {"messages": [...]} (rendered with the
//                model's chat template, the assistant's turn opened, as
//                /v1/chat/completions does), "add_special_tokens" (default
//                true: BOS as the model wants it; false: none added by the
//                tokenizer), "return_token_strs" (default false)
//             -> {"tokens": [ids], "count": N, "max_model_len": context,
//                 "token_strs": [pieces] or null}
//   /detokenize  {"tokens": [ids]} -> {"prompt": "text"}: control tokens
//                (BOS) leave no text and the space a SentencePiece
//                vocabulary puts before the first word is dropped, so
//                detokenize(tokenize(text)) gives the text back.
// Every failure is a 400 naming the field. Control-token text in a prompt
// ("<s>") is read as that token, as llama.cpp and the completion routes do.
// Thread safety: pure functions (the tokenizer is immutable).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/openai_request.h"

namespace kvstack::server {

struct TokenizeBody {
  PromptInput prompt;  // text or messages
  bool add_special_tokens = true;
  bool return_token_strs = false;
};
ApiResult<TokenizeBody> ParseTokenizeBody(const nlohmann::json& body);

ApiResult<std::vector<Token>> TokenizeForEndpoint(const TokenizeBody& body, const Tokenizer& tokenizer,
                                                  const ChatFormat& chat);

// {"tokens", "count", "max_model_len", "token_strs"}.
nlohmann::json TokenizeResponse(const std::vector<Token>& tokens, int32_t max_model_len, const Tokenizer& tokenizer,
                                bool return_token_strs);

// The ids of POST /detokenize's "tokens", checked against the vocabulary.
ApiResult<std::vector<Token>> ParseDetokenizeBody(const nlohmann::json& body, const Tokenizer& tokenizer);

}  // namespace kvstack::server
