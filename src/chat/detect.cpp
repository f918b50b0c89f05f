// DetectChatTemplate: which family a Jinja chat template belongs to, and
// whether kvstack reproduces it exactly.
//
// Step 1 picks the family by its turn markers, in the spirit of llama.cpp's
// llm_chat_detect_template. Step 2 looks for the expressions that make up the
// reference layout of that family (quoted in the formatter files); when they
// are all there, and nothing that changes the output for plain text messages
// is, the template is recognized. Otherwise the family's formatter is still
// used, as a fallback with a warning. Matching runs on the source with `\n`
// escapes turned into newlines (UnescapeNewlines), since GGUF files carry both
// spellings.
#include <algorithm>
#include <array>
#include <cctype>
#include <initializer_list>

#include <fmt/format.h>

#include "chat/text.h"
#include "kvstack/chat_template.h"

namespace kvstack {
namespace {

using chat_impl::Contains;

bool ContainsAll(std::string_view text, std::initializer_list<std::string_view> needles) {
  return std::all_of(needles.begin(), needles.end(), [&](std::string_view n) { return Contains(text, n); });
}

// Templates of a known family that write text of their own even when no tools
// are given, and why kvstack does not reproduce them.
struct KnownPreamble {
  std::string_view marker;
  std::string_view why;
};
constexpr std::array<KnownPreamble, 6> kPreambles = {{
    {"You are a function calling AI model", "it is a tool-use template that writes Hermes' function-calling system turn"},
    {"functools[", "it is FireFunction's tool-use template, whose system turn needs `functions` and `datetime`"},
    {"start_tag => `<function`", "it is Functionary v3.1's tool-use template (its own system turn)"},
    {">>>all", "it is Functionary v3.2's tool-use template (its own system turn, answers opened with \">>>\")"},
    {"<|START_THINKING|>", "it is Command R7B's template (safety and default preambles, <|START_RESPONSE|> turns)"},
    {"## Available Tools", "it is Cohere's tool-use template (safety, system and tool preambles)"},
}};

std::string WhyNotExact(std::string_view text, ChatFamily family) {
  for (const KnownPreamble& p : kPreambles) {
    if (Contains(text, p.marker)) return std::string(p.why);
  }
  return fmt::format("it uses {} turn markers but not the layout kvstack reproduces exactly", ChatFamilyName(family));
}

ChatTemplate Recognized(ChatFamily family, std::string_view text) {
  ChatTemplate t = ChatTemplateFor(family);
  t.writes_bos = Contains(text, "bos_token");
  return t;
}

ChatTemplate Fallback(ChatFamily family, std::string_view text, std::string_view why) {
  ChatTemplate t = ChatTemplateFor(family);
  t.recognized = false;
  t.writes_bos = Contains(text, "bos_token");
  t.warning = fmt::format(
      "chat template not recognized: {}; falling back to the {} format, so prompts may differ from what the model "
      "was trained on",
      why, ChatFamilyName(family));
  return t;
}

ChatTemplate FallbackWithinFamily(ChatFamily family, std::string_view text) {
  return Fallback(family, text, WhyNotExact(text, family));
}

// ChatML. A template that writes a system turn of its own is recognized only
// when that turn is one of Qwen's defaults, written when messages[0] is not a
// system message; the leading system message itself is written as the loop
// would write it.
struct ChatMlDefault {
  std::string_view system;
  std::string_view guard;
};
constexpr std::array<ChatMlDefault, 2> kChatMlDefaults = {{
    {"You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", "messages[0]['role'] == 'system'"},
    {"You are a helpful assistant.", "loop.first and messages[0]['role'] != 'system'"},
}};

ChatTemplate DetectChatMl(std::string_view text) {
  const bool turn = Contains(text, "'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
                                   "'\n'") ||
                    Contains(text, "'<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n'");
  const bool exact = turn && ContainsAll(text, {"add_generation_prompt", "'<|im_start|>assistant\n'"}) &&
                     !Contains(text, "<|im_sep|>") && !Contains(text, "<think>") &&
                     !Contains(text, "<end_of_utterance>");
  if (!exact) return FallbackWithinFamily(ChatFamily::kChatMl, text);
  if (!Contains(text, "<|im_start|>system")) return Recognized(ChatFamily::kChatMl, text);
  for (const ChatMlDefault& d : kChatMlDefaults) {
    const std::string turn_text = fmt::format("<|im_start|>system\n{}<|im_end|>", d.system);
    if (Contains(text, turn_text) && Contains(text, d.guard)) {
      ChatTemplate t = Recognized(ChatFamily::kChatMl, text);
      t.default_system = std::string(d.system);
      return t;
    }
  }
  for (const KnownPreamble& p : kPreambles) {
    if (Contains(text, p.marker)) return Fallback(ChatFamily::kChatMl, text, p.why);
  }
  return Fallback(ChatFamily::kChatMl, text, "it writes a system turn of its own, which kvstack does not reproduce");
}

// [INST] templates: Meta's Llama-2-chat, or Mistral.
ChatTemplate DetectInst(std::string_view text) {
  if (Contains(text, "<<SYS>>")) {
    const bool exact = ContainsAll(text, {"bos_token + '[INST] ' + content.strip() + ' [/INST]'",
                                          "content.strip() + ' ' + eos_token",
                                          "'<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content']",
                                          "loop.index0 == 0 and system_message != false"}) &&
                       !Contains(text, "true == true") && !Contains(text, "USE_DEFAULT_PROMPT");
    return exact ? Recognized(ChatFamily::kLlama2, text) : FallbackWithinFamily(ChatFamily::kLlama2, text);
  }
  if (Contains(text, "[SYSTEM_PROMPT]")) {
    return Fallback(ChatFamily::kMistralV3Tekken, text,
                    "it is a Mistral v7 template ([SYSTEM_PROMPT]), whose layout kvstack does not reproduce");
  }
  const bool exact = ContainsAll(text, {"\"[INST]\" + system_message + \"\n\n\" + message[\"content\"] + \"[/INST]\"",
                                        "\"[INST]\" + message[\"content\"] + \"[/INST]\"",
                                        "loop.last and system_message is defined",
                                        "{{- message[\"content\"] + eos_token", "{{- bos_token }}"});
  return exact ? Recognized(ChatFamily::kMistralV3Tekken, text)
               : FallbackWithinFamily(ChatFamily::kMistralV3Tekken, text);
}

ChatTemplate DetectPhi3(std::string_view text) {
  const bool exact = ContainsAll(text, {"message['role'] == 'system' and message['content']",
                                        "'<|system|>\n' + message['content'] + '<|end|>\n'",
                                        "'<|user|>\n' + message['content'] + '<|end|>\n'",
                                        "'<|assistant|>\n' + message['content'] + '<|end|>\n'",
                                        "{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}"});
  return exact ? Recognized(ChatFamily::kPhi3, text) : FallbackWithinFamily(ChatFamily::kPhi3, text);
}

ChatTemplate DetectGemma(std::string_view text) {
  const bool exact = ContainsAll(text, {"raise_exception('System role not supported')", "set role = 'model'",
                                        "'<start_of_turn>' + role + '\n' + message['content'] | trim + "
                                        "'<end_of_turn>\n'",
                                        "{{'<start_of_turn>model\n'}}"});
  return exact ? Recognized(ChatFamily::kGemma, text) : FallbackWithinFamily(ChatFamily::kGemma, text);
}

ChatTemplate DetectCommandR(std::string_view text) {
  const bool exact =
      ContainsAll(text, {"'<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>'",
                         "'<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>'",
                         "content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}",
                         "{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}", "system_message = false"}) &&
      !Contains(text, "true == true") && !Contains(text, "## Available Tools");
  return exact ? Recognized(ChatFamily::kCommandR, text) : FallbackWithinFamily(ChatFamily::kCommandR, text);
}

// Llama 3.1-3.3 (dated system turn) or Llama 3.0 (plain turns); tool-use
// templates built on these markers fall back to Llama 3.0's plain turns.
ChatTemplate DetectLlama3(std::string_view text) {
  constexpr std::string_view kTurn =
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>'";
  constexpr std::string_view kDateDefault = "set date_string = \"";
  const size_t date_at = text.find(kDateDefault);
  if (date_at != std::string_view::npos &&
      ContainsAll(text, {kTurn, "\"Today Date: \" + date_string", "Cutting Knowledge Date: December 2023\n\"",
                         "set system_message = messages[0]['content']|trim",
                         "'<|start_header_id|>assistant<|end_header_id|>\n\n'"})) {
    const size_t begin = date_at + kDateDefault.size();
    const size_t end = text.find('"', begin);
    if (end != std::string_view::npos) {
      ChatTemplate t = Recognized(ChatFamily::kLlama31, text);
      t.date_string = std::string(text.substr(begin, end - begin));
      t.date_from_clock = Contains(text, "strftime_now");
      return t;
    }
  }
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  const bool plain = ContainsAll(text, {kTurn, "loop.index0 == 0", "bos_token + content", "add_generation_prompt"}) &&
                     !Contains(lower, "tool") && !Contains(text, "Cutting Knowledge");
  return plain ? Recognized(ChatFamily::kLlama3, text) : FallbackWithinFamily(ChatFamily::kLlama3, text);
}

ChatTemplate DetectDeepSeek(std::string_view text) {
  const bool common = ContainsAll(text, {"{{bos_token}}", "{{ns.system_prompt}}",
                                         "set ns.system_prompt = message['content']",
                                         "content.split('</think>')[-1]",
                                         "'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'",
                                         "'<｜Assistant｜><think>\n'"});
  if (common && Contains(text, "'<｜User｜>' + message['content'] + '<｜end▁of▁sentence｜>'")) {
    return Recognized(ChatFamily::kDeepSeekR1LlamaCpp, text);
  }
  if (common && Contains(text, "'<｜User｜>' + message['content']}}")) {
    return Recognized(ChatFamily::kDeepSeekR1, text);
  }
  return FallbackWithinFamily(ChatFamily::kDeepSeekR1, text);
}

}  // namespace

ChatTemplate DetectChatTemplate(std::string_view jinja_source) {
  if (jinja_source.empty()) {
    return Fallback(ChatFamily::kChatMl, "", "the model file has no chat template (tokenizer.chat_template)");
  }
  const std::string text = chat_impl::UnescapeNewlines(jinja_source);
  if (Contains(text, "<|im_start|>")) return DetectChatMl(text);
  if (Contains(text, "[INST]")) return DetectInst(text);
  if (Contains(text, "<|assistant|>") && Contains(text, "<|end|>")) return DetectPhi3(text);
  if (Contains(text, "<start_of_turn>")) return DetectGemma(text);
  if (Contains(text, "<|START_OF_TURN_TOKEN|>")) return DetectCommandR(text);
  if (Contains(text, "<|start_header_id|>")) return DetectLlama3(text);
  if (Contains(text, "<｜User｜>") && Contains(text, "<｜Assistant｜>")) return DetectDeepSeek(text);
  return Fallback(ChatFamily::kChatMl, text, "it uses none of the turn markers of the families kvstack knows");
}

}  // namespace kvstack
