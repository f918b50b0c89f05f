// Phi-3.5 (Phi-3.5-mini-instruct):
//   {% for message in messages %}{% if message['role'] == 'system' and message['content'] %}
//   {{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}
//   {{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}
//   {{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}
//   {% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}
// An empty system message writes nothing.
#include "chat/formatters.h"

namespace kvstack::chat_impl {

Result<std::string> FormatPhi3(const ChatTemplate& t, std::span<const ChatMessage> messages,
                               bool add_generation_prompt) {
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  for (const ChatMessage& m : messages) {
    if (m.role == "system" && m.content.empty()) continue;
    out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
  }
  out += add_generation_prompt ? std::string("<|assistant|>\n") : t.eos_text;
  return out;
}

}  // namespace kvstack::chat_impl
