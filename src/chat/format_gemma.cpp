// Gemma (gemma-2-*-it, gemma-*-it):
//   {{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}
//   {% endif %}{% for message in messages %}(raise unless user/assistant alternate, starting with user)
//   {% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}
//   {% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}
//   {% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}
// The template has no system role. As llama.cpp does when it renders it
// (minja's polyfill_system_role), system texts are joined with "\n" and put,
// with a "\n", in front of the next user message; before an assistant message
// or at the end they become a user message of their own.
#include <fmt/format.h>

#include <vector>

#include "chat/formatters.h"
#include "chat/text.h"

namespace kvstack::chat_impl {
namespace {

struct Turn {
  bool user;
  std::string content;
  size_t index;  // the message it came from (the last system message for a folded one)
};

std::vector<Turn> FoldSystemMessages(std::span<const ChatMessage> messages) {
  std::vector<Turn> turns;
  std::string pending;
  size_t pending_index = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") {
      if (!pending.empty()) pending += '\n';
      pending += m.content;
      pending_index = i;
      continue;
    }
    std::string content = m.content;
    if (!pending.empty()) {
      if (m.role == "user") {
        content = content.empty() ? pending : pending + "\n" + content;
      } else {
        turns.push_back({true, pending, pending_index});
      }
      pending.clear();
    }
    turns.push_back({m.role == "user", std::move(content), i});
  }
  if (!pending.empty()) turns.push_back({true, pending, pending_index});
  return turns;
}

}  // namespace

Result<std::string> FormatGemma(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                bool add_generation_prompt) {
  const std::vector<Turn> turns = FoldSystemMessages(messages);
  std::string out;
  if (t.writes_bos) out += t.bos_text;
  for (size_t k = 0; k < turns.size(); ++k) {
    const Turn& turn = turns[k];
    if (turn.user != (k % 2 == 0)) {
      return InvalidArgument(fmt::format(
          "messages[{}]: role \"{}\": the Gemma chat template needs user and assistant messages to alternate, "
          "starting with user (system messages are folded into the next user message)",
          turn.index, messages[turn.index].role));
    }
    out += turn.user ? "<start_of_turn>user\n" : "<start_of_turn>model\n";
    out += PyStrip(turn.content);
    out += "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

}  // namespace kvstack::chat_impl
