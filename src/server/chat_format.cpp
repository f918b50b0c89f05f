#include "server/chat_format.h"

#include <chrono>

#include <fmt/format.h>

#include "kvstack/gguf.h"
#include "kvstack/tokenizer.h"

namespace kvstack::server {
namespace {

class TemplateChatFormat final : public ChatFormat {
 public:
  explicit TemplateChatFormat(ChatTemplate t) : template_(std::move(t)), stops_(ChatStopStrings(template_)) {}

  Result<ChatPrompt> Render(std::span<const ChatMessage> messages) const override {
    auto text = RenderChat(template_, messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return text.status();
    ChatPrompt p;
    p.starts_with_bos = PromptStartsWithBos(template_, *text);
    p.text = std::move(text).value();
    return p;
  }
  std::vector<std::string> StopStrings() const override { return stops_; }
  std::string_view name() const override { return ChatFamilyName(template_.family); }

 private:
  ChatTemplate template_;
  std::vector<std::string> stops_;
};

}  // namespace

std::unique_ptr<ChatFormat> MakeTemplateChatFormat(ChatTemplate chat_template) {
  return std::make_unique<TemplateChatFormat>(std::move(chat_template));
}

Result<std::unique_ptr<ChatFormat>> ChatFormatForModel(const std::string& model_path, const Tokenizer& tokenizer,
                                                       const Log& log) {
  auto file = GgufFile::Open(model_path);
  if (!file.ok()) return file.status();
  std::string jinja;
  if (auto source = file->GetString("tokenizer.chat_template"); source.ok()) jinja = std::string(*source);
  ChatTemplate t = DetectChatTemplate(jinja);
  // The template's bos_token/eos_token are the model's own tokens.
  if (tokenizer.bos()) t.bos_text = std::string(tokenizer.Text(*tokenizer.bos()));
  if (tokenizer.eos()) t.eos_text = std::string(tokenizer.Text(*tokenizer.eos()));
  if (t.date_from_clock) {
    const auto today = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
    t.date_string = FormatChatDate(std::chrono::year_month_day(today));
  }
  if (t.recognized) {
    log(fmt::format("chat template: {} (from the model file)", ChatFamilyName(t.family)));
  } else {
    log(fmt::format("chat template: {}; {}", ChatFamilyName(t.family),
                    jinja.empty() ? "the model file has none, so ChatML is used" : t.warning));
  }
  return std::unique_ptr<ChatFormat>(MakeTemplateChatFormat(std::move(t)));
}

}  // namespace kvstack::server
