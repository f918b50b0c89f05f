// The prompt forms a request may carry (text, token ids, chat messages), how
// each becomes tokens, and the pin endpoint's body, which takes any of them.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "kvstack/tokenizer.h"
#include "server/json_fields.h"
#include "server/openai_request.h"

namespace kvstack::server {
namespace {

constexpr std::array<std::string_view, 4> kRoles = {"system", "user", "assistant", "developer"};

bool AllIntegers(const nlohmann::json& a) {
  for (const auto& v : a) {
    if (!v.is_number_integer()) return false;
  }
  return true;
}

ApiResult<std::vector<Token>> ReadTokenIds(const nlohmann::json& a, const std::string& field) {
  std::vector<Token> ids;
  ids.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const int64_t v = a[i].is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(a[i].get<uint64_t>(), INT64_MAX))
                                                : a[i].get<int64_t>();
    if (v < 0 || v > std::numeric_limits<Token>::max()) {
      return BadRequest(fmt::format("{}[{}] {}: not a token id", field, i, v), field);
    }
    ids.push_back(static_cast<Token>(v));
  }
  return ids;
}

// A string, an array of token ids, or an array holding one string or one
// array of ids (OpenAI's batch form, with a batch of one).
ApiResult<PromptInput> ParseTextOrIds(const nlohmann::json& v, const std::string& field) {
  PromptInput p;
  p.field = field;
  if (v.is_string()) {
    p.text = v.get<std::string>();
    return p;
  }
  if (v.is_array()) {
    if (v.empty()) return BadRequest(field + " must not be an empty array", field);
    if (AllIntegers(v)) {
      auto ids = ReadTokenIds(v, field);
      if (!ids.ok()) return ids.error();
      p.token_ids = std::move(ids).value();
      return p;
    }
    if (v.size() > 1 && (v[0].is_string() || v[0].is_array())) {
      return BadRequest(fmt::format("{}: {} prompts in one request; this server takes one prompt per request", field,
                                    v.size()),
                        field);
    }
    if (v.size() == 1 && v[0].is_string()) {
      p.text = v[0].get<std::string>();
      return p;
    }
    if (v.size() == 1 && v[0].is_array() && !v[0].empty() && AllIntegers(v[0])) {
      auto ids = ReadTokenIds(v[0], field);
      if (!ids.ok()) return ids.error();
      p.token_ids = std::move(ids).value();
      return p;
    }
  }
  return BadRequest(field + " must be a string, an array of token ids, or an array holding one string", field);
}

ApiResult<std::string> ReadContent(const nlohmann::json& m, const std::string& name) {
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) {
    return BadRequest(name + ".content must be a string or an array of text parts", name + ".content");
  }
  std::string text;
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& part = (*it)[i];
    const std::string pname = fmt::format("{}.content[{}]", name, i);
    if (!part.is_object()) return BadRequest(pname + " must be an object {\"type\": \"text\", \"text\": ...}", pname);
    const std::string type = part.value("type", "");
    if (type != "text") {
      return BadRequest(fmt::format("{}.type '{}': only text parts are supported", pname, type), pname + ".type");
    }
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) return BadRequest(pname + ".text must be a string", pname + ".text");
    text += t->get<std::string>();
  }
  return text;
}

ApiResult<PromptInput> ParseMessages(const nlohmann::json& v, const std::string& field) {
  if (!v.is_array() || v.empty()) {
    return BadRequest(field + " must be a non-empty array of {\"role\", \"content\"} objects", field);
  }
  PromptInput p;
  p.field = field;
  p.messages.emplace();
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string name = fmt::format("{}[{}]", field, i);
    const nlohmann::json& m = v[i];
    if (!m.is_object()) return BadRequest(name + " must be an object with role and content", name);
    auto role = m.find("role");
    if (role == m.end() || role->is_null()) return BadRequest(name + ".role is required", name + ".role");
    if (!role->is_string()) return BadRequest(name + ".role must be a string", name + ".role");
    const std::string r = role->get<std::string>();
    if (std::find(kRoles.begin(), kRoles.end(), r) == kRoles.end()) {
      return BadRequest(fmt::format("{}.role '{}': must be system, user, assistant or developer (tool calls are "
                                    "not supported)",
                                    name, r),
                        name + ".role");
    }
    auto content = ReadContent(m, name);
    if (!content.ok()) return content.error();
    // OpenAI's newer name for the system role.
    p.messages->push_back(ChatMessage{r == "developer" ? "system" : r, std::move(content).value()});
  }
  return p;
}

}  // namespace

ApiResult<PromptInput> ParsePrompt(const nlohmann::json& body, Endpoint endpoint) {
  const std::string field = endpoint == Endpoint::kChat ? "messages" : "prompt";
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return BadRequest(field + " is required", field);
  return endpoint == Endpoint::kChat ? ParseMessages(*it, field) : ParseTextOrIds(*it, field);
}

ApiResult<std::vector<Token>> TokenizePrompt(const PromptInput& prompt, const Tokenizer& tokenizer,
                                             const ChatFormat& chat) {
  std::vector<Token> tokens;
  if (prompt.token_ids) {
    tokens = *prompt.token_ids;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (!tokenizer.IsValid(tokens[i])) {
        return BadRequest(fmt::format("{}[{}] {}: not in the vocabulary (token ids 0 to {})", prompt.field, i,
                                      tokens[i], tokenizer.vocab_size() - 1),
                          prompt.field);
      }
    }
  } else if (prompt.messages) {
    auto chat_prompt = chat.Render(*prompt.messages);
    if (!chat_prompt.ok()) return BadRequest(chat_prompt.status().message(), prompt.field);
    Tokenizer::EncodeOptions options;
    // Templates that write BOS as text: "<s>" becomes the BOS token, once.
    if (chat_prompt->starts_with_bos) options.add_bos = false;
    tokens = tokenizer.Encode(chat_prompt->text, options);
  } else {
    tokens = tokenizer.Encode(prompt.text.value_or(""));
  }
  if (tokens.empty()) return BadRequest(prompt.field + " is empty: it gives no tokens", prompt.field);
  return tokens;
}

ApiResult<PinBody> ParsePinBody(const nlohmann::json& body) {
  PinBody pin;
  const FieldReader r(body);
  const int forms = r.Has("prompt") + r.Has("messages") + r.Has("token_ids");
  if (forms != 1) {
    return BadRequest("give exactly one of prompt, messages or token_ids: the prefix to pin", forms ? "" : "prompt");
  }
  ApiResult<PromptInput> prompt = r.Has("messages") ? ParseMessages(r.Get("messages"), "messages")
                                  : r.Has("token_ids")
                                      ? (r.Get("token_ids").is_array() && AllIntegers(r.Get("token_ids"))
                                             ? ParseTextOrIds(r.Get("token_ids"), "token_ids")
                                             : ApiResult<PromptInput>(BadRequest("token_ids must be an array of token ids", "token_ids")))
                                      : ParseTextOrIds(r.Get("prompt"), "prompt");
  if (!prompt.ok()) return prompt.error();
  pin.prompt = std::move(prompt).value();
  if (OptError e = r.String("cache_salt", &pin.cache_salt)) return *e;
  if (r.Has("ttl_s")) {
    double ttl = 0;
    if (OptError e = r.Number("ttl_s", &ttl)) return *e;
    if (!(ttl > 0) || ttl > 365.0 * 24 * 3600) {
      return BadRequest(fmt::format("ttl_s {}: must be more than 0 and at most a year (leave it out to keep the pin "
                                    "until DELETE /v1/cache/pin/{{id}})",
                                    ttl),
                        "ttl_s");
    }
    pin.ttl = static_cast<Micros>(std::llround(ttl * 1e6));
  }
  return pin;
}

}  // namespace kvstack::server
