// Meta's Llama templates: Llama-2-chat, Llama 3.0 and Llama 3.1 (also 3.2, 3.3).
#include "chat/formatters.h"
#include "chat/text.h"

namespace kvstack::chat_impl {
namespace {

void AppendLlama3Turn(std::string& out, std::string_view role, std::string_view content) {
  out += "<|start_header_id|>";
  out += role;
  out += "<|end_header_id|>\n\n";
  out += PyStrip(content);
  out += "<|eot_id|>";
}

constexpr std::string_view kLlama3Opening = "<|start_header_id|>assistant<|end_header_id|>\n\n";

}  // namespace

// Llama-2-chat (meta-llama/Llama-2-*-chat-hf):
//   {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}
//   {% set system_message = messages[0]['content'] %}{% else %}... system_message = false ...{% endif %}
//   {% for message in loop_messages %}(raise unless user/assistant alternate)
//   {% if loop.index0 == 0 and system_message != false %}
//   {% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}...
//   {% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
//   {% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}
// There is no generation prompt: the prompt ends after " [/INST]".
Result<std::string> FormatLlama2(const ChatTemplate& t, std::span<const ChatMessage> messages) {
  const size_t first = LeadingSystemCount(messages);
  KVSTACK_RETURN_IF_ERROR(CheckAlternation(messages, first, "Llama-2"));
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    std::string content = messages[i].content;
    // `system_message != false` holds for an empty system text too.
    if (i == first && first == 1) content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + content;
    if (messages[i].role == "user") {
      if (t.writes_bos) out += t.bos_text;
      out += "[INST] ";
      out += PyStrip(content);
      out += " [/INST]";
    } else {
      out += ' ';
      out += PyStrip(content);
      out += ' ';
      out += t.eos_text;
    }
  }
  return out;
}

// Llama 3.0 (Meta-Llama-3-*-Instruct): every message in place, trimmed.
//   {% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim
//   + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}
Result<std::string> FormatLlama3(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) {
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  for (const ChatMessage& m : messages) AppendLlama3Turn(out, m.role, m.content);
  if (add_generation_prompt) out += kLlama3Opening;
  return out;
}

// Llama 3.1/3.2/3.3 without tools: a system turn always comes first, holding
// the dates and the (trimmed) leading system message; later messages follow as
// in Llama 3.0.
//   {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
//   {{- "Cutting Knowledge Date: December 2023\n" }}{{- "Today Date: " + date_string + "\n\n" }}
//   {{- system_message }}{{- "<|eot_id|>" }}
Result<std::string> FormatLlama31(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                  bool add_generation_prompt) {
  const size_t first = LeadingSystemCount(messages);
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  out += "<|start_header_id|>system<|end_header_id|>\n\n";
  out += "Cutting Knowledge Date: December 2023\n";
  out += "Today Date: " + t.date_string + "\n\n";
  if (first == 1) out += PyStrip(messages[0].content);
  out += "<|eot_id|>";
  for (size_t i = first; i < messages.size(); ++i) AppendLlama3Turn(out, messages[i].role, messages[i].content);
  if (add_generation_prompt) out += kLlama3Opening;
  return out;
}

}  // namespace kvstack::chat_impl
