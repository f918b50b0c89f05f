// Detection on inline template snippets (no ../shared needed), the formatters'
// edge cases, errors, and the helpers the server uses.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kvstack/chat_template.h"

namespace kvstack {
namespace {

using ::testing::HasSubstr;

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello!"},
    {"assistant", "Hi there."},
    {"user", "How are you?"},
};

std::string Render(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) {
  Result<std::string> prompt = RenderChat(t, messages, add_generation_prompt);
  EXPECT_TRUE(prompt.ok()) << prompt.status().ToString();
  return prompt.ok() ? *prompt : std::string();
}

// Templates as GGUF files carry them: `\n` escapes inside Jinja strings.

// meta-llama/Llama-2-7b-chat-hf.
constexpr const char* kLlama2Source =
    R"({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})";

// meta-llama/Meta-Llama-3-8B-Instruct.
constexpr const char* kLlama3Source =
    R"({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})";

// CohereForAI/c4ai-command-r-plus (default template).
constexpr const char* kCommandRSource =
    R"({{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif false == true %}{% set loop_messages = messages %}{% set system_message = 'You are Command-R, a brilliant, sophisticated, AI-assistant trained to assist human users by providing thorough responses. You are trained by Cohere.' %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% if system_message != false %}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% elif message['role'] == 'assistant' %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'  + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %})";

// teknium/OpenHermes-2.5-Mistral-7B.
constexpr const char* kChatMlSource =
    R"({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})";

// Qwen/Qwen2-7B-Instruct.
constexpr const char* kQwen2Source =
    R"({% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})";

TEST(DetectChatTemplate, Llama2) {
  const ChatTemplate t = DetectChatTemplate(kLlama2Source);
  EXPECT_EQ(t.family, ChatFamily::kLlama2);
  EXPECT_TRUE(t.recognized) << t.warning;
  EXPECT_EQ(Render(t, kConversation),
            "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. </s>"
            "<s>[INST] How are you? [/INST]");
}

TEST(DetectChatTemplate, Llama3) {
  const ChatTemplate t = DetectChatTemplate(kLlama3Source);
  EXPECT_EQ(t.family, ChatFamily::kLlama3);
  EXPECT_TRUE(t.recognized) << t.warning;
  EXPECT_EQ(Render(t, kConversation),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(DetectChatTemplate, CommandR) {
  const ChatTemplate t = DetectChatTemplate(kCommandRSource);
  EXPECT_EQ(t.family, ChatFamily::kCommandR);
  EXPECT_TRUE(t.recognized) << t.warning;
  EXPECT_EQ(Render(t, {{"system", " Be brief. "}, {"user", " Hello! "}, {"assistant", "Hi there."}, {"user", "Bye"}}),
            "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|> Be brief. <|END_OF_TURN_TOKEN|>"
            "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello!<|END_OF_TURN_TOKEN|>"
            "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi there.<|END_OF_TURN_TOKEN|>"
            "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Bye<|END_OF_TURN_TOKEN|>"
            "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
}

TEST(DetectChatTemplate, ChatMl) {
  const ChatTemplate t = DetectChatTemplate(kChatMlSource);
  EXPECT_EQ(t.family, ChatFamily::kChatMl);
  EXPECT_TRUE(t.recognized) << t.warning;
  EXPECT_FALSE(t.writes_bos);
  EXPECT_EQ(t.default_system, "");
  EXPECT_EQ(Render(t, {{"user", "Hello!"}}), "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(Render(t, {{"user", "Hello!"}}, false), "<|im_start|>user\nHello!<|im_end|>\n");
}

TEST(DetectChatTemplate, Qwen2DefaultSystemOnlyWithoutASystemMessage) {
  const ChatTemplate t = DetectChatTemplate(kQwen2Source);
  EXPECT_EQ(t.family, ChatFamily::kChatMl);
  EXPECT_TRUE(t.recognized) << t.warning;
  EXPECT_EQ(t.default_system, "You are a helpful assistant.");
  EXPECT_EQ(Render(t, {{"user", "Hello!"}}),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(Render(t, {{"system", "Terse."}, {"user", "Hello!"}}),
            "<|im_start|>system\nTerse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n");
}

TEST(DetectChatTemplate, NoTemplateFallsBackToChatMl) {
  const ChatTemplate t = DetectChatTemplate("");
  EXPECT_EQ(t.family, ChatFamily::kChatMl);
  EXPECT_FALSE(t.recognized);
  EXPECT_THAT(t.warning, HasSubstr("no chat template"));
  EXPECT_THAT(t.warning, HasSubstr("falling back to the chatml format"));
  EXPECT_EQ(Render(t, {{"user", "Hi"}}), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(DetectChatTemplate, UnknownMarkersFallBackToChatMl) {
  const ChatTemplate t =
      DetectChatTemplate("{% for message in messages %}### {{ message['role'] }}: {{ message['content'] }}\n{% endfor %}");
  EXPECT_EQ(t.family, ChatFamily::kChatMl);
  EXPECT_FALSE(t.recognized);
  EXPECT_THAT(t.warning, HasSubstr("none of the turn markers"));
  EXPECT_THAT(t.warning, HasSubstr("falling back to the chatml format"));
}

TEST(DetectChatTemplate, KnownFamilyInAnotherLayoutFallsBackToThatFamily) {
  // Mistral v7 (system prompts in [SYSTEM_PROMPT]) is not reproduced.
  const ChatTemplate v7 = DetectChatTemplate(
      "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + m['content'] + "
      "'[/SYSTEM_PROMPT]' }}{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + '[/INST]' }}{% endif %}"
      "{% endfor %}");
  EXPECT_EQ(v7.family, ChatFamily::kMistralV3Tekken);
  EXPECT_FALSE(v7.recognized);
  EXPECT_THAT(v7.warning, HasSubstr("[SYSTEM_PROMPT]"));
  EXPECT_THAT(v7.warning, HasSubstr("falling back to the mistral-v3-tekken format"));

  // Phi-4 writes <|im_sep|> where ChatML has a newline.
  const ChatTemplate phi4 = DetectChatTemplate(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + "
      "'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}");
  EXPECT_EQ(phi4.family, ChatFamily::kChatMl);
  EXPECT_FALSE(phi4.recognized);
  EXPECT_THAT(phi4.warning, HasSubstr("falling back to the chatml format"));

  // A Llama 3 template that mentions tools is not the plain Llama 3.0 layout.
  const ChatTemplate tools = DetectChatTemplate(std::string(kLlama3Source) + "{% if tools %}{% endif %}");
  EXPECT_EQ(tools.family, ChatFamily::kLlama3);
  EXPECT_FALSE(tools.recognized);
}

TEST(DetectChatTemplate, NewlineEscapesAndRealNewlinesMatchAlike) {
  std::string real_newlines = kChatMlSource;
  for (size_t at = real_newlines.find("\\n"); at != std::string::npos; at = real_newlines.find("\\n", at)) {
    real_newlines.replace(at, 2, "\n");
  }
  const ChatTemplate t = DetectChatTemplate(real_newlines);
  EXPECT_EQ(t.family, ChatFamily::kChatMl);
  EXPECT_TRUE(t.recognized) << t.warning;
}

TEST(RenderChat, RejectsEmptyConversationAndUnknownRoles) {
  const ChatTemplate t = ChatTemplateFor(ChatFamily::kChatMl);
  const Result<std::string> empty = RenderChat(t, std::vector<ChatMessage>{});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);

  const Result<std::string> tool = RenderChat(t, std::vector<ChatMessage>{{"user", "a"}, {"assistant", "b"}, {"tool", "c"}});
  ASSERT_FALSE(tool.ok());
  EXPECT_EQ(tool.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(tool.status().message(), HasSubstr("messages[2]"));
  EXPECT_THAT(tool.status().message(), HasSubstr("\"tool\""));
}

TEST(RenderChat, AlternatingFamiliesNameTheMessageThatBreaksTheOrder) {
  for (ChatFamily family : {ChatFamily::kLlama2, ChatFamily::kMistralV3Tekken, ChatFamily::kCommandR}) {
    const ChatTemplate t = ChatTemplateFor(family);
    const Result<std::string> twice = RenderChat(t, std::vector<ChatMessage>{{"system", "s"}, {"user", "a"}, {"user", "b"}});
    ASSERT_FALSE(twice.ok()) << ChatFamilyName(family);
    EXPECT_EQ(twice.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(twice.status().message(), HasSubstr("messages[2]"));

    const Result<std::string> late_system =
        RenderChat(t, std::vector<ChatMessage>{{"user", "a"}, {"assistant", "b"}, {"system", "s"}});
    ASSERT_FALSE(late_system.ok()) << ChatFamilyName(family);
    EXPECT_THAT(late_system.status().message(), HasSubstr("messages[2]"));

    const Result<std::string> assistant_first = RenderChat(t, std::vector<ChatMessage>{{"assistant", "a"}});
    ASSERT_FALSE(assistant_first.ok()) << ChatFamilyName(family);
    EXPECT_THAT(assistant_first.status().message(), HasSubstr("messages[0]"));
  }
}

TEST(RenderChat, GemmaFoldsSystemMessagesIntoTheNextUserTurn) {
  const ChatTemplate t = ChatTemplateFor(ChatFamily::kGemma);
  // Two system messages join with "\n"; the folded text is trimmed as a whole
  // (U+00A0 is whitespace to Jinja's trim).
  EXPECT_EQ(Render(t, {{"system", " A"}, {"system", "B"}, {"user", "  Hi\xC2\xA0\n"}}),
            "<bos><start_of_turn>user\nA\nB\n  Hi<end_of_turn>\n<start_of_turn>model\n");
  // Before an assistant message, the system text is a user turn of its own.
  EXPECT_EQ(Render(t, {{"system", "S"}, {"assistant", "x"}}, false),
            "<bos><start_of_turn>user\nS<end_of_turn>\n<start_of_turn>model\nx<end_of_turn>\n");
  const Result<std::string> twice = RenderChat(t, std::vector<ChatMessage>{{"user", "a"}, {"system", "s"}, {"user", "b"}});
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(twice.status().message(), HasSubstr("messages[2]"));
}

TEST(RenderChat, MistralDropsTheSystemTextWhenTheLastMessageIsNotAUserMessage) {
  const ChatTemplate t = ChatTemplateFor(ChatFamily::kMistralV3Tekken);
  EXPECT_EQ(Render(t, {{"system", "S"}, {"user", "a"}, {"assistant", "b"}}, false), "<s>[INST]a[/INST]b</s>");
  EXPECT_EQ(Render(t, {{"system", "S"}, {"user", "a"}}, false), "<s>[INST]S\n\na[/INST]");
}

TEST(RenderChat, Phi3WritesEosWithoutGenerationPromptAndSkipsEmptySystem) {
  const ChatTemplate t = ChatTemplateFor(ChatFamily::kPhi3);
  EXPECT_EQ(Render(t, {{"system", ""}, {"user", "Hi"}, {"assistant", "Yo"}}, false),
            "<|user|>\nHi<|end|>\n<|assistant|>\nYo<|end|>\n<|endoftext|>");
}

TEST(RenderChat, DeepSeekR1KeepsTheLastSystemMessageAndDropsPastReasoning) {
  const ChatTemplate t = ChatTemplateFor(ChatFamily::kDeepSeekR1);
  EXPECT_EQ(Render(t, {{"user", "Q"}, {"assistant", "<think>a</think>x</think>\n\nA"}, {"system", "S1"}, {"system", "S2"}},
                   false),
            "<｜begin▁of▁sentence｜>S2<｜User｜>Q<｜Assistant｜>\n\nA<｜end▁of▁sentence｜>");
}

TEST(RenderChat, Llama31WritesTheDatedSystemTurnEvenWithoutASystemMessage) {
  ChatTemplate t = ChatTemplateFor(ChatFamily::kLlama31);
  t.date_string = FormatChatDate(std::chrono::year{2025} / std::chrono::March / std::chrono::day{5});
  EXPECT_EQ(Render(t, {{"user", " Hi "}}, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 05 Mar 2025\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(RenderChat, TrimRemovesWhatPythonsStripRemoves) {
  const ChatTemplate t = ChatTemplateFor(ChatFamily::kLlama3);
  // U+3000 and U+2028 are whitespace; a stray 0xFF byte is not, nor is the
  // zero-width space U+200B.
  EXPECT_EQ(Render(t, {{"user", "\xE3\x80\x80Hi\xE2\x80\xA8 \xFF \t"}, {"assistant", "\xE2\x80\x8Bx"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi\xE2\x80\xA8 \xFF<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n\xE2\x80\x8Bx<|eot_id|>");
}

TEST(ChatTemplateHelpers, PromptStartsWithBos) {
  const ChatTemplate llama = ChatTemplateFor(ChatFamily::kLlama31);
  EXPECT_TRUE(PromptStartsWithBos(llama, Render(llama, kConversation)));
  ChatTemplate chatml = ChatTemplateFor(ChatFamily::kChatMl);
  EXPECT_FALSE(PromptStartsWithBos(chatml, Render(chatml, kConversation)));  // no BOS text at all
  chatml.bos_text = "<|endoftext|>";  // the vocabulary has one, but the template does not write it
  EXPECT_FALSE(PromptStartsWithBos(chatml, Render(chatml, kConversation)));
  chatml.writes_bos = true;
  EXPECT_TRUE(PromptStartsWithBos(chatml, Render(chatml, kConversation)));
}

TEST(ChatTemplateHelpers, StopStrings) {
  EXPECT_EQ(ChatStopStrings(ChatTemplateFor(ChatFamily::kChatMl)), std::vector<std::string>{"<|im_end|>"});
  EXPECT_EQ(ChatStopStrings(ChatTemplateFor(ChatFamily::kLlama31)), std::vector<std::string>{"<|eot_id|>"});
  EXPECT_EQ(ChatStopStrings(ChatTemplateFor(ChatFamily::kGemma)), std::vector<std::string>{"<end_of_turn>"});
  EXPECT_EQ(ChatStopStrings(ChatTemplateFor(ChatFamily::kPhi3)), std::vector<std::string>{"<|end|>"});
  EXPECT_EQ(ChatStopStrings(ChatTemplateFor(ChatFamily::kMistralV3Tekken)), std::vector<std::string>{"</s>"});
  ChatTemplate no_eos = ChatTemplateFor(ChatFamily::kLlama2);
  no_eos.eos_text.clear();
  EXPECT_TRUE(ChatStopStrings(no_eos).empty());
}

TEST(ChatTemplateHelpers, FamilyNamesRoundTrip) {
  for (ChatFamily family :
       {ChatFamily::kChatMl, ChatFamily::kLlama2, ChatFamily::kLlama3, ChatFamily::kLlama31,
        ChatFamily::kMistralV3Tekken, ChatFamily::kGemma, ChatFamily::kPhi3, ChatFamily::kDeepSeekR1,
        ChatFamily::kDeepSeekR1LlamaCpp, ChatFamily::kCommandR}) {
    EXPECT_EQ(ChatFamilyFromName(ChatFamilyName(family)), family) << ChatFamilyName(family);
  }
  EXPECT_EQ(ChatFamilyFromName("vicuna"), std::nullopt);
}

TEST(ChatTemplateHelpers, FormatChatDate) {
  using namespace std::chrono;
  EXPECT_EQ(FormatChatDate(year{2024} / July / day{26}), "26 Jul 2024");
  EXPECT_EQ(FormatChatDate(year{2025} / December / day{1}), "01 Dec 2025");
}

}  // namespace
}  // namespace kvstack
