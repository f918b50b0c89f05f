// Chat templates: a conversation of role/content messages to the prompt text a
// chat model was trained on, for `/v1/chat/completions`.
//
// A GGUF file carries its chat template as Jinja source
// (`tokenizer.chat_template`). kvstack does not run Jinja. DetectChatTemplate
// recognizes the template's family from distinctive text in the source (as
// llama.cpp's llm_chat_detect_template does) and RenderChat formats messages
// with a hand-written formatter for that family. A template counts as
// recognized only when its source matches a layout whose output for plain
// system/user/assistant text messages (no tools) kvstack reproduces byte for
// byte, as Jinja renders it with add_generation_prompt set; the tests hold one
// exact prompt per recognized file in ../shared/chat-templates/.
//
// Fallback (documented, never silent): a template that is absent, of no known
// family, or of a known family but not in a layout reproduced exactly (tool-use
// variants that write function-calling preambles, reasoning variants, ...) is
// rendered with the nearest family's formatter: the family whose turn markers
// it uses, or ChatML when it uses none. `recognized` is then false and
// `warning` says why and names the fallback; the server logs it at start.
//
// Departures from the templates, on purpose:
//   * Roles other than system, user and assistant (tool, ipython, ...) are
//     rejected; the templates' tool branches are not reproduced.
//   * Gemma's template raises on a system message. kvstack does what llama.cpp
//     does when it renders that template (minja's system-role polyfill): system
//     texts are joined with "\n" and put, with a "\n", in front of the next
//     user message (or become a user message of their own).
//   * Llama 3.2's template takes "Today Date" from strftime_now when the
//     renderer defines it; date_string holds the template's own default
//     ("26 Jul 2024") until the caller sets it (FormatChatDate).
//
// Callers: the server (once per model at start, then per request) and tests.
// Thread safety: a ChatTemplate is a value; RenderChat only reads it, so any
// number of threads may render with one ChatTemplate at once.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/status.h"

namespace kvstack {

// The prompt formats kvstack can write. Names (ChatFamilyName) follow
// llama.cpp's `--chat-template` names where one exists.
enum class ChatFamily {
  kChatMl,           // "chatml": <|im_start|>role\n...<|im_end|>\n (OpenHermes, Qwen2/2.5)
  kLlama2,           // "llama2": Meta's Llama-2-chat, <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s>
  kLlama3,           // "llama3": Llama 3.0, one <|start_header_id|> turn per message
  kLlama31,          // "llama3.1": Llama 3.1/3.2/3.3, system turn with knowledge and today dates
  kMistralV3Tekken,  // "mistral-v3-tekken": Mistral Nemo, [INST]...[/INST] with the system text in the last user turn
  kGemma,            // "gemma": <start_of_turn>user|model ... <end_of_turn>
  kPhi3,             // "phi3": Phi-3.5, <|system|>/<|user|>/<|assistant|> ... <|end|>
  kDeepSeekR1,       // "deepseek-r1": DeepSeek-R1 (and its distills), <｜User｜>/<｜Assistant｜>, answers open <think>
  kDeepSeekR1LlamaCpp,  // "deepseek-r1-llama.cpp": llama.cpp's R1 template, which also ends user turns
  kCommandR,         // "command-r": Cohere Command-R, <|START_OF_TURN_TOKEN|><|USER_TOKEN|>...
};

// "chatml", "llama3.1", ... (see ChatFamily).
std::string_view ChatFamilyName(ChatFamily family);

// The family named `name` (as ChatFamilyName spells it); nullopt for any other
// name. For a server option that overrides detection.
std::optional<ChatFamily> ChatFamilyFromName(std::string_view name);

struct ChatMessage {
  std::string role;     // "system", "user" or "assistant"
  std::string content;  // plain text
};

// How to render a model's chats. DetectChatTemplate (or ChatTemplateFor) fills
// every field; the caller may then replace bos_text/eos_text with the texts of
// the model's own BOS/EOS tokens (the defaults are the family's usual ones)
// and date_string with today's date.
struct ChatTemplate {
  ChatFamily family = ChatFamily::kChatMl;
  // True when the template's output is reproduced exactly; false for a fallback.
  bool recognized = false;
  // Empty when recognized; otherwise why not, and which family is used instead.
  std::string warning;
  // What the template's bos_token/eos_token render as.
  std::string bos_text;
  std::string eos_text;
  // The template writes bos_token (at the start of the prompt; Llama-2 before
  // every [INST]). When false, the prompt carries no BOS text.
  bool writes_bos = false;
  // ChatML only: the system turn a template opens with when the conversation
  // has no system message of its own (Qwen's "You are Qwen, ..."). Empty: none.
  std::string default_system;
  // Llama 3.1 only: the text after "Today Date: ".
  std::string date_string;
  // Llama 3.1 only: the template asks strftime_now for today's date (Llama
  // 3.2); a server matching other renderers sets date_string to today.
  bool date_from_clock = false;
};

// Recognizes `jinja_source` (empty: the model file has no template). Never
// fails: an unrecognized template yields a fallback with a warning (see the
// file comment).
ChatTemplate DetectChatTemplate(std::string_view jinja_source);

// A recognized template of `family` with the family's usual BOS/EOS texts and
// defaults (writes_bos as the family's reference template does), for an
// explicit choice that overrides detection.
ChatTemplate ChatTemplateFor(ChatFamily family);

// The prompt for `messages`, ending with the assistant's opening when
// add_generation_prompt is set (families whose templates have no opening,
// Llama-2 and Mistral, end after the last [/INST] either way; Phi-3 writes EOS
// when it is not set, as its template does).
// Fails with InvalidArgument, naming the message index, when `messages` is
// empty, a role is not system/user/assistant, or the family cannot express the
// conversation (roles that must alternate user/assistant and do not; a system
// message after the first where only a leading one is allowed).
Result<std::string> RenderChat(const ChatTemplate& chat_template, std::span<const ChatMessage> messages,
                               bool add_generation_prompt = true);

// True when `prompt` (RenderChat's output) starts with the BOS text, so the
// tokenizer must not add another BOS token in front. False when bos_text is
// empty.
bool PromptStartsWithBos(const ChatTemplate& chat_template, std::string_view prompt);

// Texts that end the assistant's turn in this family ("<|im_end|>",
// "<|eot_id|>", "<end_of_turn>", ... ; eos_text for Llama-2 and Mistral, whose
// turns end with EOS): stop strings for generation. Never empty unless
// eos_text is.
std::vector<std::string> ChatStopStrings(const ChatTemplate& chat_template);

// `date` as Llama 3's templates print it (strftime "%d %b %Y", C locale):
// "05 Mar 2025".
std::string FormatChatDate(std::chrono::year_month_day date);

}  // namespace kvstack
