// DeepSeek-R1 and its distills, without tools:
//   {% set ns = namespace(..., system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}
//   {% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}
//   {%- for message in messages %}{%- if message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}...
//   {% set content = message['content'] %}{% if '</think>' in content %}
//   {% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}
//   ...{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %}
// The last system message's text comes right after BOS, wherever it was; past
// answers lose their reasoning (everything up to the last </think>).
// llama.cpp's models/templates/llama-cpp-deepseek-r1.jinja is the same but
// for '<｜User｜>' + message['content'] + '<｜end▁of▁sentence｜>'.
#include "chat/formatters.h"

namespace kvstack::chat_impl {
namespace {

constexpr std::string_view kEndOfSentence = "<｜end▁of▁sentence｜>";

}  // namespace

Result<std::string> FormatDeepSeekR1(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                     bool add_generation_prompt, bool end_user_turns) {
  std::string system_prompt;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") system_prompt = m.content;
  }
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  out += system_prompt;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      out += "<｜User｜>" + m.content;
      if (end_user_turns) out += kEndOfSentence;
    } else if (m.role == "assistant") {
      std::string_view content = m.content;
      const size_t think_end = content.rfind("</think>");
      if (think_end != std::string_view::npos) content.remove_prefix(think_end + std::string_view("</think>").size());
      out += "<｜Assistant｜>";
      out += content;
      out += kEndOfSentence;
    }
  }
  if (add_generation_prompt) out += "<｜Assistant｜><think>\n";
  return out;
}

}  // namespace kvstack::chat_impl
