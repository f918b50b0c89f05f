// Every refusal of item 5 over HTTP, with its exact status and error object:
// API key (401), body size (413), context and max_tokens (400), malformed
// JSON and wrong types (400), a full queue (429), unknown routes and pins
// (404).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <chrono>
#include <thread>

#include "server/serve_process.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";
constexpr char kKey[] = "sekrit-key";

json Error(const std::string& message, const std::string& type, const json& param, const json& code) {
  return {{"error", {{"message", message}, {"type", type}, {"param", param}, {"code", code}}}};
}
json BadRequest(const std::string& message, const json& param = nullptr) {
  return Error(message, "invalid_request_error", param, nullptr);
}

class ServeErrorsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (Stories260KPath().empty()) return;
    server_ = new ServeProcess({"--model", Stories260KPath(), "--threads", "1", "--api-key", kKey, "--max-body-bytes",
                                "4096", "--max-tokens-limit", "64"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
    ASSERT_TRUE(server_->ok()) << server_->error();
    client_ = server_->Client(kKey);
  }
  void Expect(const JsonReply& r, int status, const json& body) {
    EXPECT_EQ(r.status, status) << r.raw;
    EXPECT_EQ(r.body, body) << r.raw;
  }
  static ServeProcess* server_;
  std::unique_ptr<httplib::Client> client_;
};
ServeProcess* ServeErrorsTest::server_ = nullptr;

TEST_F(ServeErrorsTest, MissingApiKeyIs401) {
  auto anonymous = server_->Client();
  Expect(PostJson(*anonymous, "/v1/completions", {{"prompt", "x"}}), 401,
         Error("missing API key: send the header 'Authorization: Bearer <key>'", "authentication_error", nullptr,
               "missing_api_key"));
  Expect(GetJson(*anonymous, "/v1/models"), 401,
         Error("missing API key: send the header 'Authorization: Bearer <key>'", "authentication_error", nullptr,
               "missing_api_key"));
  // Health checks need no key.
  EXPECT_EQ(GetJson(*anonymous, "/health").status, 200);
}

TEST_F(ServeErrorsTest, WrongApiKeyIs401) {
  auto wrong = server_->Client("not-the-key");
  Expect(PostJson(*wrong, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "x"}}}}}), 401,
         Error("invalid API key: the Authorization header does not carry this server's --api-key",
               "authentication_error", nullptr, "invalid_api_key"));
  EXPECT_EQ(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}).status, 200);
}

TEST_F(ServeErrorsTest, BodyOverTheLimitIs413) {
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", std::string(5000, 'a')}}), 413,
         Error("request body too large: the limit is 4096 bytes (--max-body-bytes)", "invalid_request_error", nullptr,
               "request_too_large"));
}

TEST_F(ServeErrorsTest, PromptLongerThanTheContextIs400) {
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", std::vector<int>(600, 100)}}), 400,
         BadRequest("prompt: 600 tokens leave no room in the context of 512 tokens", "prompt"));
}

TEST_F(ServeErrorsTest, MaxTokensOverTheLimitIs400) {
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 65}}), 400,
         BadRequest("max_tokens 65 exceeds this server's limit of 64 (--max-tokens-limit)", "max_tokens"));
}

TEST_F(ServeErrorsTest, MalformedJsonIs400) {
  Expect(PostRaw(*client_, "/v1/completions", "{\"prompt\": "), 400,
         BadRequest("invalid JSON: parse error at line 1, column 12: syntax error while parsing value - unexpected end "
                    "of input; expected '[', '{', or a literal"));
  Expect(PostRaw(*client_, "/v1/completions", "[1]"), 400, BadRequest("request body must be a JSON object"));
}

TEST_F(ServeErrorsTest, WrongFieldTypesAre400) {
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"temperature", "hot"}}), 400,
         BadRequest("temperature must be a number", "temperature"));
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"stream", 1}}), 400,
         BadRequest("stream must be a boolean", "stream"));
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"n", 9}}), 400,
         BadRequest("n 9: must be from 1 to 8 (this server's --max-n)", "n"));
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"top_p", 1.5}}), 400,
         BadRequest("top_p 1.5: must be in (0, 1] (1 = off)", "top_p"));
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", {1, 99999}}}), 400,
         BadRequest("prompt[1] 99999: not in the vocabulary (token ids 0 to 511)", "prompt"));
  Expect(PostJson(*client_, "/v1/chat/completions", {{"messages", "hi"}}), 400,
         BadRequest("messages must be a non-empty array of {\"role\", \"content\"} objects", "messages"));
}

TEST_F(ServeErrorsTest, BadKvControlsAre400NamingTheField) {
  Expect(PostJson(*client_, "/v1/completions",
                  {{"prompt", "x"}, {"retention", {{"ranges", {{{"start", 0}, {"end", 4}, {"priority", 101}}}}}}}),
         400, BadRequest("retention.ranges[0].priority 101: must be from 0 to 100", "retention.ranges[0].priority"));
  const int n = static_cast<int>(EncodeStories("Hello").size());
  Expect(PostJson(*client_, "/v1/completions",
                  {{"prompt", "Hello"}, {"retention", {{"ranges", {{{"start", 0}, {"end", 700}, {"priority", 90}}}}}}}),
         400,
         BadRequest("retention.ranges[0].end 700: past the end of the prompt (" + std::to_string(n) + " tokens)",
                    "retention.ranges[0].end"));
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"priority", -1}}), 400,
         BadRequest("priority -1: must be from 0 to 100", "priority"));
  Expect(PostJson(*client_, "/v1/completions", {{"prompt", "x"}, {"cache_salt", 7}}), 400,
         BadRequest("cache_salt must be a string", "cache_salt"));
}

TEST_F(ServeErrorsTest, BadPinsAre400And404) {
  Expect(PostJson(*client_, "/v1/cache/pin", {{"prompt", "Hi"}}), 400,
         BadRequest("prompt: " + std::to_string(EncodeStories("Hi").size()) +
                        " tokens is less than one KV block (16 tokens); nothing to pin",
                    "prompt"));
  Expect(PostJson(*client_, "/v1/cache/pin", {{"cache_salt", "a"}}), 400,
         BadRequest("give exactly one of prompt, messages or token_ids: the prefix to pin", "prompt"));
  Expect(DeleteJson(*client_, "/v1/cache/pin/pin-999"), 404,
         Error("pin 'pin-999' does not exist for this cache_salt (never created, deleted, expired, or made under "
               "another salt)",
               "invalid_request_error", nullptr,
               "not_found"));
}

TEST_F(ServeErrorsTest, UnknownRouteIs404) {
  Expect(GetJson(*client_, "/v1/nothing-here"), 404,
         Error("no route GET /v1/nothing-here: see the endpoints in `kvstack serve --help`", "invalid_request_error",
               nullptr, "not_found"));
  Expect(GetJson(*client_, "/v1/completions"), 404,
         Error("no route GET /v1/completions: see the endpoints in `kvstack serve --help`", "invalid_request_error",
               nullptr, "not_found"));
}

// One place in flight (--max-running 1, --max-queue 0): while a long stream
// runs, the next request is refused with 429; once it ends, requests go
// through again.
TEST(ServeQueue, FullQueueIs429) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1", "--max-running", "1", "--max-queue", "0"});
  ASSERT_TRUE(server.ok()) << server.error();
  const json busy = Error("server busy: 1 requests in flight already (--max-running 1 plus --max-queue 0); retry later",
                          "rate_limit_error", nullptr, "queue_full");
  // The stream runs for 500 tokens after its first chunk; the refusal is
  // asked for right at that first chunk. Retried so a stream that happens to
  // finish first cannot fail the test.
  bool refused = false;
  for (int attempt = 0; attempt < 3 && !refused; ++attempt) {
    std::mutex mu;
    std::condition_variable cv;
    bool started = false;
    StreamReply stream;
    std::thread streamer([&] {
      auto c = server.Client();
      stream = PostStream(*c, "/v1/completions",
                          {{"prompt", "Once"}, {"max_tokens", 500}, {"ignore_eos", true}, {"stream", true}}, [&] {
                            std::lock_guard<std::mutex> lock(mu);
                            started = true;
                            cv.notify_all();
                          });
      std::lock_guard<std::mutex> lock(mu);
      started = true;  // even if it failed before any chunk
      cv.notify_all();
    });
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return started; });
    }
    auto c = server.Client();
    const JsonReply r = PostJson(*c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}});
    streamer.join();
    ASSERT_EQ(stream.status, 200);
    if (r.status == 429) {
      EXPECT_EQ(r.body, busy);
      refused = true;
    }
  }
  EXPECT_TRUE(refused);
  auto c = server.Client();
  // The stream's handler leaves the gate just after its last byte reaches
  // the client: wait for that, not for a fixed time.
  for (int i = 0; i < 1000 && GetJson(*c, "/health").body["requests_in_flight"].get<int>() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(PostJson(*c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}).status, 200);
  EXPECT_GE(GetJson(*c, "/health").body["requests_refused_busy"].get<int>(), 1);
}

}  // namespace
}  // namespace kvstack::testing
