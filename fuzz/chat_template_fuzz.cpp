// libFuzzer target for the chat template detector and renderer: any template
// source is recognized or falls back, and any conversation renders or is
// refused with InvalidArgument, never a crash. The input is split at NUL
// bytes: the template source, then role/content pairs.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/chat_template.h"

using namespace kvstack;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> parts;
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  parts.push_back(cur);
  std::vector<ChatMessage> messages;
  for (size_t i = 1; i + 1 < parts.size(); i += 2) messages.push_back({parts[i], parts[i + 1]});
  const ChatTemplate detected = DetectChatTemplate(parts[0]);
  for (bool gen : {true, false}) {
    auto r = RenderChat(detected, messages, gen);
    if (r.ok()) (void)PromptStartsWithBos(detected, *r);
  }
  (void)ChatStopStrings(detected);
  // Every family renders the conversation too.
  for (int f = 0; f <= static_cast<int>(ChatFamily::kCommandR); ++f) {
    const ChatTemplate t = ChatTemplateFor(static_cast<ChatFamily>(f));
    auto r = RenderChat(t, messages);
    if (r.ok()) (void)PromptStartsWithBos(t, *r);
  }
  return 0;
}
