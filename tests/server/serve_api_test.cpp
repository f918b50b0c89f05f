// The real `kvstack serve` over HTTP: completions and chat, whole and
// streamed, give the engine's own greedy text; models, health, help.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kvstack/chat_template.h"
#include "kvstack/engine.h"
#include "kvstack/tokenizer.h"
#include "server/serve_process.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";

// Greedy text from a direct Engine run: what the server must answer.
struct Direct {
  std::string text;
  RequestMetrics metrics;
  FinishReason finish = FinishReason::kNone;
};
Direct RunEngine(const std::vector<Token>& prompt, int max_tokens, std::vector<std::string> stops = {}) {
  EngineOptions o;
  o.model_path = Stories260KPath();
  o.threads = 1;
  auto engine = Engine::Create(o);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  GenerationRequest r;
  r.prompt = prompt;
  r.sampling.max_tokens = max_tokens;
  r.sampling.stop_strings = std::move(stops);
  EXPECT_TRUE((*engine)->Submit(r).ok());
  Direct d;
  std::vector<GenerationEvent> events;
  while ((*engine)->HasWork()) {
    events.clear();
    EXPECT_TRUE((*engine)->Step(&events).ok());
    for (const auto& e : events) {
      d.text += e.text;
      if (e.finish != FinishReason::kNone) {
        d.finish = e.finish;
        d.metrics = e.metrics;
      }
    }
  }
  return d;
}

class ServeApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!Stories260KPath().empty()) server_ = new ServeProcess({"--model", Stories260KPath(), "--threads", "1"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
    ASSERT_TRUE(server_->ok()) << server_->error();
    client_ = server_->Client();
  }
  static ServeProcess* server_;
  std::unique_ptr<httplib::Client> client_;
};
ServeProcess* ServeApiTest::server_ = nullptr;

TEST(ServeCommand, HelpExplainsEveryOption) {
  const std::string command = std::string(KVSTACK_BINARY) + " serve --help 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(pipe), 0) << out;
  for (const char* option : {"--model", "--host", "--port", "--kv-memory", "--block-size", "--max-context",
                             "--api-key", "--threads", "--max-batch-tokens", "--max-running", "--max-queue",
                             "--max-body-bytes", "--max-tokens-limit", "--max-n", "--model-cache-dir", "--served-model-name",
                             "RANDOM", "/v1/cache/pin", "cache_salt", "retention", "SIGTERM", "curl"}) {
    EXPECT_THAT(out, HasSubstr(option));
  }
}

TEST_F(ServeApiTest, PrintsTheUrlAndAWorkingCurl) {
  const std::string out = server_->Output();
  EXPECT_THAT(out, HasSubstr("kvstack serve: listening on http://127.0.0.1:" + std::to_string(server_->port())));
  EXPECT_THAT(out, HasSubstr("try: curl http://127.0.0.1:" + std::to_string(server_->port()) + "/v1/completions"));
}

TEST_F(ServeApiTest, CompletionIsTheEnginesGreedyText) {
  const std::string prompt = "Once upon a time";
  const Direct want = RunEngine(EncodeStories(prompt), 32);
  const JsonReply r = PostJson(*client_, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 32}, {"cache_salt", "greedy"}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "text_completion");
  EXPECT_THAT(r.body["id"].get<std::string>(), ::testing::StartsWith("cmpl-"));
  EXPECT_EQ(r.body["model"], "stories260K");
  EXPECT_TRUE(r.body["created"].is_number_integer());
  ASSERT_EQ(r.body["choices"].size(), 1u);
  EXPECT_EQ(r.body["choices"][0]["text"], want.text);
  EXPECT_FALSE(want.text.empty());
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r.body["usage"], json({{"prompt_tokens", want.metrics.prompt_tokens},
                                   {"completion_tokens", 32},
                                   {"total_tokens", want.metrics.prompt_tokens + 32},
                                   {"prompt_tokens_details", {{"cached_tokens", 0}}}}));
}

TEST_F(ServeApiTest, TokenIdPromptGivesTheSameText) {
  const std::vector<Token> ids = EncodeStories("The little dog");
  const JsonReply text = PostJson(*client_, "/v1/completions", {{"prompt", "The little dog"}, {"max_tokens", 16}});
  const JsonReply tokens = PostJson(*client_, "/v1/completions", {{"prompt", ids}, {"max_tokens", 16}});
  ASSERT_EQ(text.status, 200) << text.raw;
  ASSERT_EQ(tokens.status, 200) << tokens.raw;
  EXPECT_EQ(tokens.body["choices"][0]["text"], text.body["choices"][0]["text"]);
  EXPECT_EQ(tokens.body["usage"]["prompt_tokens"], static_cast<int>(ids.size()));
}

TEST_F(ServeApiTest, StreamSendsTheSameTextInChunks) {
  const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"cache_salt", "stream"}};
  const JsonReply whole = PostJson(*client_, "/v1/completions", body);
  ASSERT_EQ(whole.status, 200);
  json streamed = body;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const StreamReply s = PostStream(*client_, "/v1/completions", streamed);
  ASSERT_EQ(s.status, 200);
  ASSERT_GE(s.chunks.size(), 3u);
  ASSERT_EQ(s.data.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < s.chunks.size(); ++i) {
    EXPECT_EQ(s.chunks[i]["object"], "text_completion");
    EXPECT_EQ(s.chunks[i]["id"], s.chunks[0]["id"]);
    text += s.chunks[i]["choices"][0]["text"].get<std::string>();
    const bool last = i + 2 == s.chunks.size();
    EXPECT_EQ(s.chunks[i]["choices"][0]["finish_reason"], last ? json("length") : json(nullptr)) << i;
  }
  EXPECT_EQ(text, whole.body["choices"][0]["text"]);
  const json& usage = s.chunks.back();
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 24);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], whole.body["usage"]["prompt_tokens"]);
}

TEST_F(ServeApiTest, ChatRendersTheTemplateAndStopsAtTheTurnEnd) {
  const json messages = {{{"role", "system"}, {"content", "You tell stories."}},
                         {{"role", "user"}, {"content", "Tell me about a cat."}}};
  // stories260K has no chat template: the server uses ChatML.
  ChatTemplate chatml = ChatTemplateFor(ChatFamily::kChatMl);
  const std::vector<ChatMessage> msgs = {{"system", "You tell stories."}, {"user", "Tell me about a cat."}};
  auto rendered = RenderChat(chatml, msgs);
  ASSERT_TRUE(rendered.ok());
  const Direct want = RunEngine(EncodeStories(*rendered), 40, ChatStopStrings(chatml));

  const JsonReply r = PostJson(*client_, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 40}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "chat.completion");
  EXPECT_THAT(r.body["id"].get<std::string>(), ::testing::StartsWith("chatcmpl-"));
  EXPECT_EQ(r.body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r.body["choices"][0]["message"]["content"], want.text);
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], FinishReasonName(want.finish));
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], want.metrics.prompt_tokens);

  const StreamReply s = PostStream(*client_, "/v1/chat/completions",
                                   {{"messages", messages}, {"max_tokens", 40}, {"stream", true}});
  ASSERT_EQ(s.status, 200);
  ASSERT_EQ(s.data.back(), "[DONE]");
  ASSERT_FALSE(s.chunks.empty());
  EXPECT_EQ(s.chunks[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(s.chunks[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (const json& c : s.chunks) text += c["choices"][0]["delta"].value("content", "");
  EXPECT_EQ(text, want.text);
  EXPECT_EQ(s.chunks.back()["choices"][0]["finish_reason"], FinishReasonName(want.finish));
}

TEST_F(ServeApiTest, StopStringsEndTheText) {
  const JsonReply all = PostJson(*client_, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 32}});
  ASSERT_EQ(all.status, 200);
  const std::string text = all.body["choices"][0]["text"];
  ASSERT_GT(text.size(), 12u);
  const std::string stop = text.substr(8, 4);
  const JsonReply cut =
      PostJson(*client_, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 32}, {"stop", stop}});
  ASSERT_EQ(cut.status, 200);
  EXPECT_EQ(cut.body["choices"][0]["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(cut.body["choices"][0]["finish_reason"], "stop");
}

TEST_F(ServeApiTest, ModelsAndHealth) {
  const JsonReply models = GetJson(*client_, "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body["object"], "list");
  EXPECT_EQ(models.body["data"][0]["id"], "stories260K");
  EXPECT_EQ(models.body["data"][0]["max_model_len"], 512);
  const JsonReply health = GetJson(*client_, "/health");
  ASSERT_EQ(health.status, 200);
  EXPECT_EQ(health.body["status"], "ok");
  EXPECT_EQ(health.body["requests_in_flight"], 0);
}

TEST_F(ServeApiTest, SessionIdIsEchoedAndLogged) {
  const JsonReply r = PostJson(*client_, "/v1/completions",
                               {{"prompt", "Hi"}, {"max_tokens", 2}, {"session_id", "sess-42"}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["session_id"], "sess-42");
  EXPECT_THAT(server_->Output(), HasSubstr("session_id 'sess-42'"));
}

}  // namespace
}  // namespace kvstack::testing
