#include "server/openai_response.h"

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

nlohmann::json CompletionResponse(const ResponseMeta& meta, const std::string& text, FinishReason finish,
                                  const RequestMetrics& metrics) {
  const bool chat = meta.endpoint == Endpoint::kChat;
  nlohmann::json j = Envelope(meta, chat ? "chat.completion" : "text_completion");
  nlohmann::json choice = {{"index", 0}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  choice["finish_reason"] = FinishJson(finish);
  j["choices"] = nlohmann::json::array({std::move(choice)});
  j["usage"] = UsageJson(metrics);
  return j;
}

nlohmann::json StreamChunk(const ResponseMeta& meta, const std::string& text, bool first,
                           std::optional<FinishReason> finish) {
  const bool chat = meta.endpoint == Endpoint::kChat;
  nlohmann::json j = Envelope(meta, chat ? "chat.completion.chunk" : "text_completion");
  nlohmann::json choice = {{"index", 0}};
  if (chat) {
    nlohmann::json delta = nlohmann::json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
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
