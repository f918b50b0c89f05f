// ChatFormat: turns a chat's messages into the prompt text a model expects.
//
// The server renders /v1/chat/completions through this interface only. The
// implementation stands on kvstack_chat (chat_template.h): the model's own
// Jinja template (tokenizer.chat_template in the GGUF) is recognized by
// family and rendered by kvstack's formatter for it; a template it does not
// recognize, or none, falls back to the nearest family (ChatML when none),
// and the server logs that at start.
//
// Thread safety: implementations are immutable; share freely.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/chat_template.h"
#include "kvstack/status.h"
#include "server/log.h"

namespace kvstack {
class Tokenizer;
}

namespace kvstack::server {

struct ChatPrompt {
  std::string text;
  // The text already starts with the model's BOS: the tokenizer must not
  // add another.
  bool starts_with_bos = false;
};

class ChatFormat {
 public:
  virtual ~ChatFormat() = default;
  // The prompt: every message, then the opening of the assistant's turn.
  // InvalidArgument naming the message when the format cannot render it.
  virtual Result<ChatPrompt> Render(std::span<const ChatMessage> messages) const = 0;
  // Text that ends the assistant's turn: generation stops there and the text
  // is not returned.
  virtual std::vector<std::string> StopStrings() const = 0;
  // The family's name ("chatml", "llama3.1", ...).
  virtual std::string_view name() const = 0;
};

// A format over a template from kvstack_chat.
std::unique_ptr<ChatFormat> MakeTemplateChatFormat(ChatTemplate chat_template);

// The format of the model in `model_path` (its tokenizer.chat_template), with
// the tokenizer's own BOS/EOS texts. Logs which family it uses, and why when
// it is a fallback. Fails only when the file cannot be read.
Result<std::unique_ptr<ChatFormat>> ChatFormatForModel(const std::string& model_path, const Tokenizer& tokenizer,
                                                       const Log& log);

}  // namespace kvstack::server
