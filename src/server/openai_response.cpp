#include "server/openai_response.h"

#include "server/logprobs_json.h"

namespace kvstack::server {
namespace {

nlohmann::json Envelope(const ResponseMeta& meta, std::string_view object) {
  nlohmann::json j = {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
  if (!meta.session_id.empty()) j["session_id"] = meta.session_id;
  return j;
}

nlohmann::json FinishJson(std::optional<FinishReason> finish) {
  if (!finish) return nullptr;
  auto name = OpenAiFinishReason(*finish);
  return name ? nlohmann::json(*name) : nlohmann::json(nullptr);
}

}  // namespace

std::optional<std::string_view> OpenAiFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kNone:
    case FinishReason::kCancelled: return std::nullopt;
  }
  return std::nullopt;
}

nlohmann::json UsageJson(const RequestMetrics& m) {
  return {{"prompt_tokens", m.prompt_tokens},
          {"completion_tokens", m.generated_tokens},
          {"total_tokens", m.prompt_tokens + m.generated_tokens},
          {"prompt_tokens_details", {{"cached_tokens", m.cached_tokens}}}};
}

void AddChoiceUsage(RequestMetrics* total, const RequestMetrics& choice) {
  const int32_t generated = total->generated_tokens + choice.generated_tokens;
  *total = choice;  // prompt figures are the same for every choice
  total->generated_tokens = generated;
}

nlohmann::json CompletionResponse(const ResponseMeta& meta, const std::string& text, FinishReason finish,
                                  const RequestMetrics& metrics) {
  return CompletionResponse(meta, {ChoiceOutput{.text = text, .logprobs = {}, .finish = finish}}, {}, metrics);
}

nlohmann::json CompletionResponse(const ResponseMeta& meta, const std::vector<ChoiceOutput>& choices,
                                  std::span<const PositionLogprobs> prompt_scores, const RequestMetrics& usage) {
  const bool chat = meta.endpoint == Endpoint::kChat;
  nlohmann::json j = Envelope(meta, chat ? "chat.completion" : "text_completion");
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    nlohmann::json choice = {{"index", i}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = meta.logprobs >= 0 ? ChatLogprobsJson(*meta.tokenizer, c.logprobs) : nlohmann::json(nullptr);
    } else {
      choice["text"] = meta.echo ? meta.echo_text + c.text : c.text;
      if (meta.logprobs >= 0) {
        int64_t offset = 0;
        const std::span<const Token> echoed = meta.echo ? std::span<const Token>(meta.prompt_tokens) : std::span<const Token>();
        choice["logprobs"] = CompletionLogprobsJson(*meta.tokenizer, echoed, prompt_scores, c.logprobs, &offset);
      } else {
        choice["logprobs"] = nullptr;
      }
    }
    choice["finish_reason"] = FinishJson(c.finish);
    list.push_back(std::move(choice));
  }
  j["choices"] = std::move(list);
  j["usage"] = UsageJson(usage);
  return j;
}

nlohmann::json StreamChunk(const ResponseMeta& meta, const std::string& text, bool first,
                           std::optional<FinishReason> finish) {
  return StreamChunk(meta, 0, text, first, finish, nullptr);
}

nlohmann::json StreamChunk(const ResponseMeta& meta, int32_t index, const std::string& text, bool first,
                           std::optional<FinishReason> finish, nlohmann::json logprobs) {
  const bool chat = meta.endpoint == Endpoint::kChat;
  nlohmann::json j = Envelope(meta, chat ? "chat.completion.chunk" : "text_completion");
  nlohmann::json choice = {{"index", index}};
  if (chat) {
    nlohmann::json delta = nlohmann::json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = std::move(delta);
    if (!logprobs.is_null()) choice["logprobs"] = std::move(logprobs);
  } else {
    choice["text"] = text;
    choice["logprobs"] = std::move(logprobs);
  }
  choice["finish_reason"] = FinishJson(finish);
  j["choices"] = nlohmann::json::array({std::move(choice)});
  return j;
}

nlohmann::json UsageChunk(const ResponseMeta& meta, const RequestMetrics& metrics) {
  nlohmann::json j = Envelope(meta, meta.endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = nlohmann::json::array();
  j["usage"] = UsageJson(metrics);
  return j;
}

nlohmann::json ModelsResponse(const std::string& model, int64_t created, int32_t context_tokens) {
  return {{"object", "list"},
          {"data", nlohmann::json::array({{{"id", model},
                                           {"object", "model"},
                                           {"created", created},
                                           {"owned_by", "kvstack"},
                                           {"max_model_len", context_tokens}}})}};
}

}  // namespace kvstack::server
