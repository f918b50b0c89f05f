// What each family is called, which BOS/EOS texts and stop strings it uses,
// and the small facts the server needs about a ChatTemplate.
#include <array>
#include <utility>

#include <fmt/format.h>

#include "kvstack/chat_template.h"

namespace kvstack {
namespace {

struct FamilyFacts {
  ChatFamily family;
  std::string_view name;
  // The texts the family's reference models use for bos_token/eos_token.
  std::string_view bos;
  std::string_view eos;
  // What ends an assistant turn; empty where the turn ends with EOS itself.
  std::string_view end_of_turn;
  // Whether the family's reference template writes bos_token.
  bool writes_bos;
};

// ChatML has no BOS of its own: models from several vocabularies use it, and
// the caller knows the real token texts.
constexpr std::array<FamilyFacts, 10> kFamilies = {{
    {ChatFamily::kChatMl, "chatml", "", "", "<|im_end|>", false},
    {ChatFamily::kLlama2, "llama2", "<s>", "</s>", "", true},
    {ChatFamily::kLlama3, "llama3", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", true},
    {ChatFamily::kLlama31, "llama3.1", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", true},
    {ChatFamily::kMistralV3Tekken, "mistral-v3-tekken", "<s>", "</s>", "", true},
    {ChatFamily::kGemma, "gemma", "<bos>", "<eos>", "<end_of_turn>", true},
    {ChatFamily::kPhi3, "phi3", "<s>", "<|endoftext|>", "<|end|>", false},
    {ChatFamily::kDeepSeekR1, "deepseek-r1", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
     "<｜end▁of▁sentence｜>", true},
    {ChatFamily::kDeepSeekR1LlamaCpp, "deepseek-r1-llama.cpp", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
     "<｜end▁of▁sentence｜>", true},
    {ChatFamily::kCommandR, "command-r", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", true},
}};

const FamilyFacts& Facts(ChatFamily family) {
  for (const FamilyFacts& facts : kFamilies) {
    if (facts.family == family) return facts;
  }
  return kFamilies[0];  // unreachable for a valid enum value
}

}  // namespace

std::string_view ChatFamilyName(ChatFamily family) { return Facts(family).name; }

std::optional<ChatFamily> ChatFamilyFromName(std::string_view name) {
  for (const FamilyFacts& facts : kFamilies) {
    if (facts.name == name) return facts.family;
  }
  return std::nullopt;
}

ChatTemplate ChatTemplateFor(ChatFamily family) {
  const FamilyFacts& facts = Facts(family);
  ChatTemplate t;
  t.family = family;
  t.recognized = true;
  t.bos_text = std::string(facts.bos);
  t.eos_text = std::string(facts.eos);
  t.writes_bos = facts.writes_bos;
  if (family == ChatFamily::kLlama31) t.date_string = "26 Jul 2024";  // the default in Meta's templates
  return t;
}

bool PromptStartsWithBos(const ChatTemplate& chat_template, std::string_view prompt) {
  return !chat_template.bos_text.empty() && prompt.starts_with(chat_template.bos_text);
}

std::vector<std::string> ChatStopStrings(const ChatTemplate& chat_template) {
  const std::string_view end_of_turn = Facts(chat_template.family).end_of_turn;
  if (!end_of_turn.empty()) return {std::string(end_of_turn)};
  if (chat_template.eos_text.empty()) return {};
  return {chat_template.eos_text};
}

std::string FormatChatDate(std::chrono::year_month_day date) {
  static constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const unsigned month = static_cast<unsigned>(date.month());
  const std::string_view month_name = month >= 1 && month <= 12 ? kMonths[month - 1] : "???";
  return fmt::format("{:02} {} {:04}", static_cast<unsigned>(date.day()), month_name, static_cast<int>(date.year()));
}

}  // namespace kvstack
