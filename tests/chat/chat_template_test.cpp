// Every template in ../shared/chat-templates/ is either recognized, with the
// exact prompt it renders for one short conversation, or falls back with a
// warning that names the fallback.
//
// The expected prompts were worked out by reading each Jinja template by hand
// (add_generation_prompt=true, no tools, no date_string; Jinja as transformers
// configures it: trim_blocks, lstrip_blocks), not by running a Jinja engine.
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kvstack/chat_template.h"
#include "common/requirement.h"

namespace kvstack {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello!"},
    {"assistant", "Hi there."},
    {"user", "How are you?"},
};

std::filesystem::path TemplateDir() { return std::filesystem::path(KVSTACK_SHARED_DIR) / "chat-templates"; }

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct SharedCase {
  const char* file;
  ChatFamily family;
  bool recognized;
  // For recognized templates: the prompt for kConversation.
  const char* prompt;
};

constexpr const char* kLlama31Prompt =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
    "You are a helpful assistant.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n";

constexpr const char* kDeepSeekR1Prompt =
    "<｜begin▁of▁sentence｜>You are a helpful assistant."
    "<｜User｜>Hello!<｜Assistant｜>Hi there.<｜end▁of▁sentence｜>"
    "<｜User｜>How are you?<｜Assistant｜><think>\n";

const SharedCase kSharedCases[] = {
    {"CohereForAI-c4ai-command-r-plus-tool_use.jinja", ChatFamily::kCommandR, false, nullptr},
    {"CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", ChatFamily::kCommandR, false, nullptr},
    {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", ChatFamily::kChatMl, false, nullptr},
    {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ChatFamily::kChatMl, false, nullptr},
    {"Qwen-Qwen2.5-7B-Instruct.jinja", ChatFamily::kChatMl, true,
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
     "<|im_start|>user\nHello!<|im_end|>\n"
     "<|im_start|>assistant\nHi there.<|im_end|>\n"
     "<|im_start|>user\nHow are you?<|im_end|>\n"
     "<|im_start|>assistant\n"},
    {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", ChatFamily::kDeepSeekR1, true, kDeepSeekR1Prompt},
    {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", ChatFamily::kDeepSeekR1, true, kDeepSeekR1Prompt},
    {"fireworks-ai-llama-3-firefunction-v2.jinja", ChatFamily::kLlama3, false, nullptr},
    // The template raises on a system message; the system text is folded into
    // the first user turn as llama.cpp's renderer does (see the header).
    {"google-gemma-2-2b-it.jinja", ChatFamily::kGemma, true,
     "<bos><start_of_turn>user\nYou are a helpful assistant.\nHello!<end_of_turn>\n"
     "<start_of_turn>model\nHi there.<end_of_turn>\n"
     "<start_of_turn>user\nHow are you?<end_of_turn>\n"
     "<start_of_turn>model\n"},
    {"llama-cpp-deepseek-r1.jinja", ChatFamily::kDeepSeekR1LlamaCpp, true,
     "<｜begin▁of▁sentence｜>You are a helpful assistant."
     "<｜User｜>Hello!<｜end▁of▁sentence｜><｜Assistant｜>Hi there.<｜end▁of▁sentence｜>"
     "<｜User｜>How are you?<｜end▁of▁sentence｜><｜Assistant｜><think>\n"},
    {"meetkai-functionary-medium-v3.1.jinja", ChatFamily::kLlama3, false, nullptr},
    {"meetkai-functionary-medium-v3.2.jinja", ChatFamily::kLlama3, false, nullptr},
    {"meta-llama-Llama-3.1-8B-Instruct.jinja", ChatFamily::kLlama31, true, kLlama31Prompt},
    // With no strftime_now defined the template falls back to its own default
    // date; renderers that define it print today's (date_from_clock).
    {"meta-llama-Llama-3.2-3B-Instruct.jinja", ChatFamily::kLlama31, true, kLlama31Prompt},
    {"meta-llama-Llama-3.3-70B-Instruct.jinja", ChatFamily::kLlama31, true, kLlama31Prompt},
    {"microsoft-Phi-3.5-mini-instruct.jinja", ChatFamily::kPhi3, true,
     "<|system|>\nYou are a helpful assistant.<|end|>\n"
     "<|user|>\nHello!<|end|>\n"
     "<|assistant|>\nHi there.<|end|>\n"
     "<|user|>\nHow are you?<|end|>\n"
     "<|assistant|>\n"},
    // The system text goes into the last user turn; there is no generation prompt.
    {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ChatFamily::kMistralV3Tekken, true,
     "<s>[INST]Hello![/INST]Hi there.</s>[INST]You are a helpful assistant.\n\nHow are you?[/INST]"},
};

class SharedTemplateTest : public ::testing::TestWithParam<SharedCase> {};

TEST_P(SharedTemplateTest, RecognizedWithExactPromptOrFallsBackWithWarning) {
  const SharedCase& c = GetParam();
  const std::filesystem::path path = TemplateDir() / c.file;
  if (!std::filesystem::exists(path)) {
    KVSTACK_SKIP_MISSING() << path << " is absent; set KVSTACK_SHARED_DIR to the shared test assets";
  }
  const ChatTemplate t = DetectChatTemplate(ReadFile(path));
  EXPECT_EQ(ChatFamilyName(t.family), ChatFamilyName(c.family));
  ASSERT_EQ(t.recognized, c.recognized) << t.warning;
  const Result<std::string> prompt = RenderChat(t, kConversation);
  ASSERT_TRUE(prompt.ok()) << prompt.status().ToString();
  if (c.recognized) {
    EXPECT_TRUE(t.warning.empty());
    EXPECT_EQ(*prompt, c.prompt);
  } else {
    const std::string names_fallback = "falling back to the " + std::string(ChatFamilyName(c.family)) + " format";
    EXPECT_NE(t.warning.find(names_fallback), std::string::npos) << t.warning;
  }
}

std::string CaseName(const ::testing::TestParamInfo<SharedCase>& info) {
  std::string name = info.param.file;
  name = name.substr(0, name.find(".jinja"));
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(SharedTemplates, SharedTemplateTest, ::testing::ValuesIn(kSharedCases), CaseName);

// Reads a shared template or skips the test.
#define KVSTACK_DETECT_SHARED(var, file)                                                         \
  const std::filesystem::path var##_path = TemplateDir() / (file);                              \
  if (!std::filesystem::exists(var##_path)) KVSTACK_SKIP_MISSING() << var##_path << " is absent (shared test assets)"; \
  const ChatTemplate var = DetectChatTemplate(ReadFile(var##_path))

TEST(SharedTemplates, QwenOpensWithItsOwnSystemTurnWhenThereIsNone) {
  KVSTACK_DETECT_SHARED(t, "Qwen-Qwen2.5-7B-Instruct.jinja");
  EXPECT_EQ(t.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  const std::vector<ChatMessage> no_system = {{"user", "Hello!"}};
  const Result<std::string> prompt = RenderChat(t, no_system);
  ASSERT_TRUE(prompt.ok()) << prompt.status().ToString();
  EXPECT_EQ(*prompt,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_FALSE(PromptStartsWithBos(t, *prompt));
  EXPECT_EQ(ChatStopStrings(t), std::vector<std::string>{"<|im_end|>"});
}

TEST(SharedTemplates, OnlyLlama32TakesTodaysDateFromTheClock) {
  KVSTACK_DETECT_SHARED(llama31, "meta-llama-Llama-3.1-8B-Instruct.jinja");
  KVSTACK_DETECT_SHARED(llama32, "meta-llama-Llama-3.2-3B-Instruct.jinja");
  EXPECT_EQ(llama31.date_string, "26 Jul 2024");
  EXPECT_FALSE(llama31.date_from_clock);
  EXPECT_EQ(llama32.date_string, "26 Jul 2024");
  EXPECT_TRUE(llama32.date_from_clock);
  const Result<std::string> prompt = RenderChat(llama31, kConversation);
  ASSERT_TRUE(prompt.ok());
  EXPECT_TRUE(PromptStartsWithBos(llama31, *prompt));
}

TEST(SharedTemplates, FallbacksSayWhy) {
  KVSTACK_DETECT_SHARED(hermes, "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja");
  EXPECT_NE(hermes.warning.find("Hermes"), std::string::npos) << hermes.warning;
  KVSTACK_DETECT_SHARED(functionary, "meetkai-functionary-medium-v3.2.jinja");
  EXPECT_NE(functionary.warning.find("Functionary v3.2"), std::string::npos) << functionary.warning;
  // The fallback is Llama 3.0's plain turns, with the template's BOS.
  const std::vector<ChatMessage> hello = {{"user", "Hello!"}};
  const Result<std::string> prompt = RenderChat(functionary, hello);
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(*prompt,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(SharedTemplates, DeepSeekR1DropsPastReasoning) {
  KVSTACK_DETECT_SHARED(t, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  const std::vector<ChatMessage> messages = {{"user", "2+2?"}, {"assistant", "<think>\nadd\n</think>\n\n4"}, {"user", "3+3?"}};
  const Result<std::string> prompt = RenderChat(t, messages);
  ASSERT_TRUE(prompt.ok());
  EXPECT_EQ(*prompt,
            "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜><｜User｜>3+3?"
            "<｜Assistant｜><think>\n");
}

// A template added to ../shared needs a row above: recognized with its prompt,
// or a fallback.
TEST(SharedTemplates, EveryFileHasACase) {
  if (!std::filesystem::is_directory(TemplateDir())) {
    KVSTACK_SKIP_MISSING() << TemplateDir() << " is absent; set KVSTACK_SHARED_DIR to the shared test assets";
  }
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(TemplateDir())) {
    if (entry.path().extension() == ".jinja") files.insert(entry.path().filename().string());
  }
  std::set<std::string> cases;
  for (const SharedCase& c : kSharedCases) cases.insert(c.file);
  EXPECT_EQ(files, cases);
}

}  // namespace
}  // namespace kvstack
