// The server's life: a client that disconnects mid-stream has its request
// cancelled and its KV blocks freed; SIGTERM refuses new requests, lets the
// one in flight finish, and exits 0; with no --model the demo model is
// generated and said to be random.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "server/serve_process.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";

// Sends a streamed completion over a raw socket, reads until the first SSE
// chunk, then closes the connection: a client that goes away.
bool StreamThenHangUp(int port, const json& body) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return false;
  }
  const std::string payload = body.dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload;
  if (::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return false;
  }
  std::string got;
  char buf[1024];
  while (got.find("data: ") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return got.find("data: ") != std::string::npos;
}

TEST(ServeLifecycle, ClientDisconnectCancelsTheRequestAndFreesItsBlocks) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1"});
  ASSERT_TRUE(server.ok()) << server.error();
  ASSERT_TRUE(StreamThenHangUp(server.port(), {{"prompt", "Once upon a time"},
                                               {"max_tokens", 500},
                                               {"ignore_eos", true},
                                               {"stream", true}}));
  auto client = server.Client();
  // Wait (bounded only against a hang) for the server to notice.
  json health, stats;
  for (int i = 0; i < 600; ++i) {
    health = GetJson(*client, "/health").body;
    stats = GetJson(*client, "/v1/cache/stats").body;
    if (health["requests_disconnected"] == 1 && stats["live_sequences"] == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(health["requests_disconnected"], 1) << server.Output();
  EXPECT_EQ(health["requests_completed"], 0);
  EXPECT_EQ(health["requests_in_flight"], 0);
  EXPECT_EQ(stats["in_use_blocks"], 0);
  EXPECT_EQ(stats["live_sequences"], 0);
  EXPECT_THAT(server.Output(), HasSubstr("the client went away mid-stream; cancelling the request"));
}

// Sends a whole (non-streamed) completion over a raw socket and returns the
// connected socket without reading anything (-1 on failure).
int SendWithoutReading(int port, const json& body) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  const std::string payload = body.dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A non-streamed request whose client hangs up mid-generation is cancelled
// too. The model is generated slow enough (4 layers of width 1024) that 400
// tokens take seconds, so the hang-up comes long before the end.
TEST(ServeLifecycle, ClientDisconnectCancelsAWholeRequestToo) {
  const std::filesystem::path model =
      std::filesystem::temp_directory_path() / ("kvstack_slow_" + std::to_string(::getpid()) + ".gguf");
  const std::string gen = std::string(KVSTACK_BINARY) + " gen-model -q --out " + model.string() +
                          " --layers 4 --embd 1024 --heads 16 --ff 2816 --ctx 1024 --type q8_0";
  ASSERT_EQ(std::system(gen.c_str()), 0) << gen;
  ServeProcess server({"--model", model.string(), "--threads", "1"});
  ASSERT_TRUE(server.ok()) << server.error();
  const int fd = SendWithoutReading(server.port(), {{"prompt", "Once upon a time"}, {"max_tokens", 400},
                                                    {"ignore_eos", true}});
  ASSERT_GE(fd, 0);
  auto client = server.Client();
  auto live = [&] {
    const json s = GetJson(*client, "/v1/cache/stats").body;
    return s.is_object() ? s.value("live_sequences", 0) : 0;
  };
  for (int i = 0; i < 600 && live() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  json stats = GetJson(*client, "/v1/cache/stats").body;
  ASSERT_EQ(stats["live_sequences"], 1) << "the request never started";
  ::close(fd);
  json health;
  for (int i = 0; i < 600; ++i) {
    health = GetJson(*client, "/health").body;
    stats = GetJson(*client, "/v1/cache/stats").body;
    if (health["requests_disconnected"] == 1 && stats["live_sequences"] == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(health["requests_disconnected"], 1) << server.Output();
  EXPECT_EQ(health["requests_completed"], 0) << "it ran to the end: the hang-up went unnoticed";
  EXPECT_EQ(health["requests_in_flight"], 0);
  EXPECT_EQ(stats["in_use_blocks"], 0);
  EXPECT_THAT(server.Output(), HasSubstr("the client went away before its completion; cancelling the request"));
  std::filesystem::remove(model);
}

TEST(ServeLifecycle, SigtermFinishesRequestsInFlightThenExitsZero) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1"});
  ASSERT_TRUE(server.ok()) << server.error();

  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  StreamReply stream;
  std::thread streamer([&] {
    auto c = server.Client();
    stream = PostStream(*c, "/v1/completions",
                        {{"prompt", "Once"},
                         {"max_tokens", 400},
                         {"ignore_eos", true},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}},
                        [&] {
                          std::lock_guard<std::mutex> lock(mu);
                          started = true;
                          cv.notify_all();
                        });
    std::lock_guard<std::mutex> lock(mu);
    started = true;
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return started; });
  }
  server.Signal(SIGTERM);
  // A request after the signal: 503 while the stream drains (or no answer at
  // all if the server already finished and exited).
  JsonReply late;
  for (int i = 0; i < 200; ++i) {
    auto c = server.Client();
    late = PostJson(*c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}});
    if (late.status != 200) break;  // the signal may take a moment to arrive
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  streamer.join();
  if (late.status != -1) {
    EXPECT_EQ(late.status, 503) << late.raw;
    EXPECT_EQ(late.body, json({{"error",
                                {{"message", "the server is shutting down and takes no new requests"},
                                 {"type", "server_error"},
                                 {"param", nullptr},
                                 {"code", "shutting_down"}}}}));
  }
  ASSERT_EQ(stream.status, 200);
  ASSERT_FALSE(stream.data.empty());
  EXPECT_EQ(stream.data.back(), "[DONE]");
  ASSERT_GE(stream.chunks.size(), 2u);
  EXPECT_EQ(stream.chunks.back()["usage"]["completion_tokens"], 400);
  EXPECT_EQ(stream.chunks[stream.chunks.size() - 2]["choices"][0]["finish_reason"], "length");

  EXPECT_EQ(server.WaitExit(std::chrono::seconds(60)), 0) << server.Output();
  const std::string out = server.Output();
  EXPECT_THAT(out, HasSubstr("SIGTERM: finishing requests in flight, then exiting"));
  EXPECT_THAT(out, HasSubstr("shutting down: refusing new requests; waiting for "));
  EXPECT_THAT(out, HasSubstr("stopped"));
}

TEST(ServeLifecycle, WithoutAModelServesTheDemoModelAndSaysItIsRandom) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvstack_serve_demo_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    ServeProcess server({"--model-cache-dir", dir.string(), "--threads", "1"});
    ASSERT_TRUE(server.ok()) << server.error();
    EXPECT_THAT(server.Output(), HasSubstr("RANDOM weights"));
    EXPECT_THAT(server.Output(), HasSubstr("generating the demo model into " + dir.string()));
    EXPECT_TRUE(std::filesystem::exists(dir / "kvstack-demo-stories-f16.gguf"));
    auto client = server.Client();
    const JsonReply r = PostJson(*client, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 4}});
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body["model"], "kvstack-demo-stories");
    EXPECT_EQ(r.body["usage"]["completion_tokens"], 4);
  }
  {
    // The second start reuses the file.
    ServeProcess server({"--model-cache-dir", dir.string(), "--threads", "1"});
    ASSERT_TRUE(server.ok()) << server.error();
    EXPECT_THAT(server.Output(), ::testing::Not(HasSubstr("generating the demo model")));
    EXPECT_THAT(server.Output(), HasSubstr("RANDOM weights"));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvstack::testing
