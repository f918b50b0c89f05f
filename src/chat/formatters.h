// One formatter per ChatFamily. Each reproduces its family's reference
// template (quoted in its .cpp) for system/user/assistant text messages.
//
// REQUIRES (checked by RenderChat before dispatch): `messages` is not empty and
// every role is "system", "user" or "assistant".
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "kvstack/chat_template.h"
#include "kvstack/status.h"

namespace kvstack::chat_impl {

Result<std::string> FormatChatMl(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt);
Result<std::string> FormatLlama2(const ChatTemplate& t, std::span<const ChatMessage> messages);
Result<std::string> FormatLlama3(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt);
Result<std::string> FormatLlama31(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                  bool add_generation_prompt);
Result<std::string> FormatMistralV3Tekken(const ChatTemplate& t, std::span<const ChatMessage> messages);
Result<std::string> FormatGemma(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt);
Result<std::string> FormatPhi3(const ChatTemplate& t, std::span<const ChatMessage> messages, bool add_generation_prompt);
// `end_user_turns`: llama.cpp's variant closes each user turn with <｜end▁of▁sentence｜>.
Result<std::string> FormatDeepSeekR1(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                     bool add_generation_prompt, bool end_user_turns);
Result<std::string> FormatCommandR(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                   bool add_generation_prompt);

// The check shared by templates that take an optional leading system message
// and then raise unless user and assistant alternate, starting with user:
// messages[first..] must be user, assistant, user, ... with no system among
// them. `family` names the template in the error.
Status CheckAlternation(std::span<const ChatMessage> messages, size_t first, std::string_view family);

// 1 when messages[0] is a system message (the templates above take it out of
// the loop), else 0.
inline size_t LeadingSystemCount(std::span<const ChatMessage> messages) {
  return !messages.empty() && messages[0].role == "system" ? 1 : 0;
}

}  // namespace kvstack::chat_impl
