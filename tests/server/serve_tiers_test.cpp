// `kvstack serve` with tiers (host RAM, disk, a real redis-server): a prompt
// evicted from the device pool by a flood comes back from the tiers (positive
// cached_tokens, identical greedy text), /v1/memory and /metrics report the
// tiers, and bad tier options are refused with a message naming them.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "server/serve_process.h"
#include "tiers/redis_server.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";

const std::string kLongPrompt =
    "Once upon a time there was a little cat named Tom. He liked to play in the big green garden behind the house "
    "with his best friend, a small brown dog called Max, every sunny morning before school started.";

JsonReply Complete(httplib::Client& c, const std::string& prompt) {
  return PostJson(c, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0}});
}

int Cached(const JsonReply& r) { return r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(); }

// Evicts everything from a 16-block device pool.
void Flood(httplib::Client& c) {
  for (int i = 0; i < 12; ++i) {
    const JsonReply r = Complete(c, "Flood " + std::to_string(i) + ": a girl named Lily found " +
                                        std::to_string(i * 13 + 5) + " shiny stones near the old river bank today.");
    ASSERT_EQ(r.status, 200) << r.raw;
  }
}

TEST(ServeTiersTest, EvictedPromptComesBackFromTheTiers) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  const fs::path disk = fs::temp_directory_path() / ("kvstack-serve-tiers-" + std::to_string(::getpid()));
  fs::remove_all(disk);
  tier_test::RedisServer redis;
  std::vector<std::string> args = {"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "160KiB",
                                   "--host-tier", "1MiB", "--disk-tier", disk.string(), "--disk-tier-size", "16MiB",
                                   "--offload-min-priority", "0", "--onboard-always"};
  // All three tiers or nothing: a run that quietly left Redis out would
  // pass while testing less than it says.
  if (!tier_test::RedisServerInstalled()) {
    KVSTACK_SKIP_MISSING() << "needs redis-server (" << tier_test::kRedisServerBinary << "; scripts/install-deps)";
  }
  ASSERT_TRUE(redis.Start()) << "redis-server is installed but did not start";
  args.push_back("--redis");
  args.push_back("127.0.0.1:" + std::to_string(redis.port()));
  std::string reference;
  {
    ServeProcess plain({"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "160KiB"});
    ASSERT_TRUE(plain.ok()) << plain.error();
    auto c = plain.Client();
    const JsonReply r = Complete(*c, kLongPrompt);
    ASSERT_EQ(r.status, 200) << r.raw;
    reference = r.body["choices"][0]["text"];
  }
  ServeProcess server(args);
  ASSERT_TRUE(server.ok()) << server.error();
  EXPECT_NE(server.Output().find("tiers: host"), std::string::npos) << server.Output();
  auto c = server.Client();
  const JsonReply first = Complete(*c, kLongPrompt);
  ASSERT_EQ(first.status, 200) << first.raw;
  EXPECT_EQ(first.body["choices"][0]["text"], reference);
  Flood(*c);
  const JsonReply again = Complete(*c, kLongPrompt);
  ASSERT_EQ(again.status, 200) << again.raw;
  EXPECT_EQ(again.body["choices"][0]["text"], reference) << "a block from the tiers changed the output";
  EXPECT_GT(Cached(again), 0) << "the evicted prompt was not brought back from the tiers";

  const JsonReply memory = GetJson(*c, "/v1/memory");
  ASSERT_EQ(memory.status, 200);
  const json& tiers = memory.body["tiers"];
  EXPECT_TRUE(tiers["enabled"]);
  ASSERT_EQ(tiers["levels"].size(), 3u);
  EXPECT_EQ(tiers["levels"][2]["tier"], "redis");
  EXPECT_EQ(tiers["levels"][0]["tier"], "host");
  EXPECT_EQ(tiers["levels"][1]["tier"], "disk");
  EXPECT_GT(tiers["offload"]["stored"].get<int>(), 0);
  EXPECT_GT(tiers["onboard"]["onboarded_blocks"].get<int>(), 0);
  EXPECT_EQ(tiers["onboard"]["onboarded_blocks"].get<int>() * 16, Cached(again));

  auto metrics = c->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kvstack_tier_hits_total{tier=\"host\"}"), std::string::npos);
  EXPECT_NE(metrics->body.find("kvstack_onboard_blocks_total"), std::string::npos);
  if (!fs::exists("/usr/bin/promtool") && kvstack::test_support::UnderCi()) {
    ADD_FAILURE() << "CI=true and /usr/bin/promtool is absent (scripts/install-deps installs prometheus)";
  }
  if (fs::exists("/usr/bin/promtool")) {
    const std::string path = (fs::temp_directory_path() / ("kvstack_tier_metrics_" + std::to_string(::getpid()))).string();
    std::ofstream(path) << metrics->body;
    const int rc = std::system(("/usr/bin/promtool check metrics < " + path + " > " + path + ".out 2>&1").c_str());
    std::ifstream out(path + ".out");
    std::stringstream text;
    text << out.rdbuf();
    fs::remove(path);
    fs::remove(path + ".out");
    EXPECT_EQ(rc, 0) << "promtool check metrics: " << text.str();
  }
  server.Signal(SIGTERM);
  server.WaitExit(std::chrono::seconds(20));
  fs::remove_all(disk);
}

TEST(ServeTiersTest, BadTierOptionsAreRefusedByName) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"--redis", "localhost"}, "--redis 'localhost'"},
      {{"--redis", "127.0.0.1:99999"}, "the port must be from 1 to 65535"},
      {{"--offload-min-priority", "101"}, "--offload-min-priority 101"},
      {{"--host-tier", "lots"}, "--host-tier"},
      {{"--host-tier", "16B"}, "holds no KV block"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"serve", "--port", "0", "--model-cache-dir",
                                     (fs::temp_directory_path() / "kvstack-demo-model").string()};
    if (!Stories260KPath().empty()) args = {"serve", "--port", "0", "--model", Stories260KPath()};
    args.insert(args.end(), c.args.begin(), c.args.end());
    std::string cmd = KVSTACK_BINARY;
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " 2>&1";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string out;
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    const int status = ::pclose(pipe);
    ASSERT_TRUE(WIFEXITED(status)) << out;
    EXPECT_EQ(WEXITSTATUS(status), 2) << c.args[0] << ": " << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace kvstack::testing

namespace kvstack::testing {
namespace {

// POST /v1/cache/prefetch {"session_id"}: a conversation coming back.
TEST(ServeTiersTest, SessionPrefetchHint) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  {
    ServeProcess plain({"--model", Stories260KPath(), "--threads", "1"});
    ASSERT_TRUE(plain.ok()) << plain.error();
    auto c = plain.Client();
    const JsonReply r = PostJson(*c, "/v1/cache/prefetch", {{"session_id", "chat-1"}});
    EXPECT_EQ(r.status, 409) << r.raw;
    EXPECT_EQ(r.body["error"]["code"], "no_tiers");
  }
  const fs::path disk = fs::temp_directory_path() / ("kvstack-serve-prefetch-" + std::to_string(::getpid()));
  fs::remove_all(disk);
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "160KiB", "--host-tier",
                       "20KiB", "--disk-tier", disk.string(), "--disk-tier-size", "16MiB", "--offload-min-priority",
                       "0"});
  ASSERT_TRUE(server.ok()) << server.error();
  auto c = server.Client();
  EXPECT_EQ(PostJson(*c, "/v1/cache/prefetch", json::object()).status, 400);
  const JsonReply unknown = PostJson(*c, "/v1/cache/prefetch", {{"session_id", "nobody"}});
  EXPECT_EQ(unknown.status, 404) << unknown.raw;
  const JsonReply turn = PostJson(
      *c, "/v1/completions", {{"prompt", kLongPrompt}, {"max_tokens", 16}, {"session_id", "chat-1"}});
  ASSERT_EQ(turn.status, 200) << turn.raw;
  Flood(*c);  // the conversation leaves the device pool and (2 blocks of) host RAM
  const JsonReply hint = PostJson(*c, "/v1/cache/prefetch", {{"session_id", "chat-1"}});
  ASSERT_EQ(hint.status, 200) << hint.raw;
  EXPECT_EQ(hint.body["session_id"], "chat-1");
  EXPECT_GT(hint.body["blocks"].get<int>(), 0);
  fs::remove_all(disk);
}

}  // namespace
}  // namespace kvstack::testing
