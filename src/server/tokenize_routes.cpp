// POST /tokenize and POST /detokenize (see tokenize_request.h). They read
// only the tokenizer and the chat format, both immutable: the handler thread
// answers without the engine thread.
#include <fmt/format.h>

#include "kvstack/tokenizer.h"
#include "server/json_fields.h"
#include "server/server_context.h"
#include "server/tokenize_request.h"

namespace kvstack::server {

ApiResult<TokenizeBody> ParseTokenizeBody(const nlohmann::json& body) {
  TokenizeBody b;
  const FieldReader r(body);
  if (r.Has("prompt") == r.Has("messages")) {
    return BadRequest("give exactly one of prompt (a string) or messages (a chat)", r.Has("prompt") ? "" : "prompt");
  }
  if (r.Has("prompt")) {
    if (!r.Get("prompt").is_string()) return BadRequest("prompt must be a string", "prompt");
    b.prompt.text = r.Get("prompt").get<std::string>();
    b.prompt.field = "prompt";
  } else {
    auto p = ParsePrompt(body, Endpoint::kChat);
    if (!p.ok()) return p.error();
    b.prompt = std::move(p).value();
  }
  if (OptError e = r.Bool("add_special_tokens", &b.add_special_tokens)) return *e;
  if (OptError e = r.Bool("return_token_strs", &b.return_token_strs)) return *e;
  return b;
}

ApiResult<std::vector<Token>> TokenizeForEndpoint(const TokenizeBody& body, const Tokenizer& tokenizer,
                                                  const ChatFormat& chat) {
  if (body.add_special_tokens) {
    // What the completion routes compute for the same prompt.
    if (body.prompt.text && body.prompt.text->empty()) return tokenizer.Encode("");
    return TokenizePrompt(body.prompt, tokenizer, chat);
  }
  std::string text = body.prompt.text.value_or("");
  if (body.prompt.messages) {
    auto rendered = chat.Render(*body.prompt.messages);
    if (!rendered.ok()) return BadRequest(rendered.status().message(), body.prompt.field);
    text = std::move(rendered->text);
  }
  return tokenizer.Encode(text, {.add_bos = false, .add_eos = false});
}

nlohmann::json TokenizeResponse(const std::vector<Token>& tokens, int32_t max_model_len, const Tokenizer& tokenizer,
                                bool return_token_strs) {
  nlohmann::json strs = nullptr;
  if (return_token_strs) {
    strs = nlohmann::json::array();
    for (Token t : tokens) strs.push_back(std::string(tokenizer.Piece(t)));
  }
  return {{"tokens", tokens}, {"count", tokens.size()}, {"max_model_len", max_model_len}, {"token_strs", strs}};
}

ApiResult<std::vector<Token>> ParseDetokenizeBody(const nlohmann::json& body, const Tokenizer& tokenizer) {
  const FieldReader r(body);
  if (!r.Has("tokens")) return BadRequest("tokens is required: an array of token ids", "tokens");
  const nlohmann::json& v = r.Get("tokens");
  if (!v.is_array()) return BadRequest("tokens must be an array of token ids", "tokens");
  std::vector<Token> tokens;
  tokens.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer()) return BadRequest(fmt::format("tokens[{}] must be an integer token id", i), "tokens");
    const int64_t id = v[i].get<int64_t>();
    if (id < 0 || id >= tokenizer.vocab_size()) {
      return BadRequest(fmt::format("tokens[{}] {}: not in the vocabulary (token ids 0 to {})", i, id,
                                    tokenizer.vocab_size() - 1),
                        "tokens");
    }
    tokens.push_back(static_cast<Token>(id));
  }
  return tokens;
}

void AddTokenizeRoutes(httplib::Server& http, ServerContext& ctx) {
  http.Post("/tokenize", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.Precheck(req)) return SendError(res, *e);
    auto json = ParseJsonObject(req.body);
    if (!json.ok()) return SendError(res, json.error());
    auto body = ParseTokenizeBody(*json);
    if (!body.ok()) return SendError(res, body.error());
    auto tokens = TokenizeForEndpoint(*body, ctx.loop->tokenizer(), *ctx.chat);
    if (!tokens.ok()) return SendError(res, tokens.error());
    SendJson(res, 200, TokenizeResponse(*tokens, ctx.limits.context_tokens, ctx.loop->tokenizer(), body->return_token_strs));
  });
  http.Post("/detokenize", [&ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.Precheck(req)) return SendError(res, *e);
    auto json = ParseJsonObject(req.body);
    if (!json.ok()) return SendError(res, json.error());
    auto tokens = ParseDetokenizeBody(*json, ctx.loop->tokenizer());
    if (!tokens.ok()) return SendError(res, tokens.error());
    const std::string text =
        ctx.loop->tokenizer().Decode(*tokens, {.skip_special = true, .strip_prefix_space = true});
    SendJson(res, 200, {{"prompt", text}});
  });
}

}  // namespace kvstack::server
