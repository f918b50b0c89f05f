// Mistral v3-tekken (Mistral-Nemo-Instruct-2407) without tools:
//   {%- if messages[0]["role"] == "system" %}{%- set system_message = messages[0]["content"] %}
//   {%- set loop_messages = messages[1:] %}...   (raise unless user/assistant alternate)
//   {{- bos_token }}{%- for message in loop_messages %}{%- if message["role"] == "user" %}
//   {%- if loop.last and system_message is defined %}
//   {{- "[INST]" + system_message + "\n\n" + message["content"] + "[/INST]" }}
//   {%- else %}{{- "[INST]" + message["content"] + "[/INST]" }}{%- endif %}
//   {%- elif message["role"] == "assistant" %}{{- message["content"] + eos_token}} ...
// The system text travels with the last message when that is a user message,
// and is dropped otherwise; add_generation_prompt changes nothing.
#include "chat/formatters.h"

namespace kvstack::chat_impl {

Result<std::string> FormatMistralV3Tekken(const ChatTemplate& t, std::span<const ChatMessage> messages) {
  const size_t first = LeadingSystemCount(messages);
  KVSTACK_RETURN_IF_ERROR(CheckAlternation(messages, first, "Mistral"));
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      const bool carries_system = first == 1 && i + 1 == messages.size();
      out += "[INST]";
      if (carries_system) out += messages[0].content + "\n\n";
      out += m.content + "[/INST]";
    } else {
      out += m.content + t.eos_text;
    }
  }
  return out;
}

}  // namespace kvstack::chat_impl
