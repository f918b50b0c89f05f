// Cohere Command-R / R+ (the default, non-tool template):
//   {{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}
//   {% set system_message = messages[0]['content'] %}...{% else %}... system_message = false ...{% endif %}
//   {% if system_message != false %}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message
//   + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% for message in loop_messages %}(raise unless alternating)
//   {% if message['role'] == 'user' %}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip()
//   + '<|END_OF_TURN_TOKEN|>' }}{% elif message['role'] == 'assistant' %}
//   {{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'  + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}
//   {% endfor %}{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}
// The system text is written as given (not stripped).
#include "chat/formatters.h"
#include "chat/text.h"

namespace kvstack::chat_impl {

Result<std::string> FormatCommandR(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                   bool add_generation_prompt) {
  const size_t first = LeadingSystemCount(messages);
  KVSTACK_RETURN_IF_ERROR(CheckAlternation(messages, first, "Command-R"));
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  if (first == 1) out += "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>" + messages[0].content + "<|END_OF_TURN_TOKEN|>";
  for (size_t i = first; i < messages.size(); ++i) {
    out += messages[i].role == "user" ? "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"
                                      : "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>";
    out += PyStrip(messages[i].content);
    out += "<|END_OF_TURN_TOKEN|>";
  }
  if (add_generation_prompt) out += "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>";
  return out;
}

}  // namespace kvstack::chat_impl
