// RenderChat: checks what every family needs, then hands the conversation to
// the family's formatter.
#include <fmt/format.h>

#include "chat/formatters.h"
#include "kvstack/chat_template.h"

namespace kvstack {

namespace chat_impl {

Status CheckAlternation(std::span<const ChatMessage> messages, size_t first, std::string_view family) {
  for (size_t i = first; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role == "system") {
      return InvalidArgument(fmt::format(
          "messages[{}]: role \"system\": the {} chat template allows a system message only as the first message",
          i, family));
    }
    const bool want_user = (i - first) % 2 == 0;
    if ((role == "user") != want_user) {
      return InvalidArgument(fmt::format(
          "messages[{}]: role \"{}\": the {} chat template needs user and assistant messages to alternate, "
          "starting with user (after an optional first system message); expected {}",
          i, role, family, want_user ? "user" : "assistant"));
    }
  }
  return Status::Ok();
}

}  // namespace chat_impl

Result<std::string> RenderChat(const ChatTemplate& chat_template, std::span<const ChatMessage> messages,
                               bool add_generation_prompt) {
  using namespace chat_impl;
  if (messages.empty()) return InvalidArgument("messages: empty; a chat needs at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return InvalidArgument(
          fmt::format("messages[{}]: role \"{}\" is not supported; use \"system\", \"user\" or \"assistant\"", i, role));
    }
  }
  const ChatTemplate& t = chat_template;
  switch (t.family) {
    case ChatFamily::kChatMl: return FormatChatMl(t, messages, add_generation_prompt);
    case ChatFamily::kLlama2: return FormatLlama2(t, messages);
    case ChatFamily::kLlama3: return FormatLlama3(t, messages, add_generation_prompt);
    case ChatFamily::kLlama31: return FormatLlama31(t, messages, add_generation_prompt);
    case ChatFamily::kMistralV3Tekken: return FormatMistralV3Tekken(t, messages);
    case ChatFamily::kGemma: return FormatGemma(t, messages, add_generation_prompt);
    case ChatFamily::kPhi3: return FormatPhi3(t, messages, add_generation_prompt);
    case ChatFamily::kDeepSeekR1: return FormatDeepSeekR1(t, messages, add_generation_prompt, false);
    case ChatFamily::kDeepSeekR1LlamaCpp: return FormatDeepSeekR1(t, messages, add_generation_prompt, true);
    case ChatFamily::kCommandR: return FormatCommandR(t, messages, add_generation_prompt);
  }
  return Internal(fmt::format("chat family {}: no formatter", static_cast<int>(t.family)));
}

}  // namespace kvstack
