// ChatML, as OpenHermes' template writes it:
//   {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
//   {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
// Qwen2/2.5 open with a system turn of their own when messages[0] is not a
// system message (ChatTemplate::default_system); a leading system message is
// written the same way the loop would write it.
#include "chat/formatters.h"

namespace kvstack::chat_impl {

Result<std::string> FormatChatMl(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) {
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  if (!t.default_system.empty() && LeadingSystemCount(messages) == 0) {
    out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace kvstack::chat_impl
