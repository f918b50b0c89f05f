// `kvstack serve --kv-type`: two servers of different KV types sharing one
// disk tier folder and one real redis-server never hand each other blocks
// (the KV layout is part of every block key, Redis key and disk folder),
// and each answers exactly as it does alone; /v1/memory and /metrics name the
// KV types and bytes per token; bad types are refused by flag name.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include "common/requirement.h"
#include "server/serve_process.h"
#include "tiers/redis_server.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kPrompt =
    "Once upon a time there was a little cat named Tom. He liked to play in the big green garden behind the house "
    "with his best friend, a small brown dog called Max, every sunny morning before school started.";

JsonReply Complete(httplib::Client& c, const std::string& prompt) {
  return PostJson(c, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}});
}
int Cached(const JsonReply& r) { return r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(); }
std::string Text(const JsonReply& r) { return r.body["choices"][0]["text"].get<std::string>(); }

void Flood(httplib::Client& c) {
  for (int i = 0; i < 12; ++i) {
    const JsonReply r = Complete(c, "Flood " + std::to_string(i) + ": a girl named Lily found " +
                                        std::to_string(i * 13 + 5) + " shiny stones near the old river bank today.");
    ASSERT_EQ(r.status, 200) << r.raw;
  }
}

std::vector<std::string> Base(const std::string& kv_type) {
  return {"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "96KiB", "--kv-type", kv_type};
}

TEST(ServeKvTypesTest, SharedTiersNeverCrossKvLayouts) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << "needs ../shared/models/stories260K.gguf";
  if (!tier_test::RedisServerInstalled()) {
    KVSTACK_SKIP_MISSING() << "needs redis-server (scripts/install-deps installs it)";
  }
  tier_test::RedisServer redis;
  ASSERT_TRUE(redis.Start());
  const fs::path disk = fs::temp_directory_path() / ("kvstack-serve-kvtypes-" + std::to_string(::getpid()));
  fs::remove_all(disk);

  // Each type alone, without tiers: the reference answers.
  std::map<std::string, std::string> alone;
  for (const std::string t : {std::string("f16"), std::string("int8")}) {
    ServeProcess s(Base(t));
    ASSERT_TRUE(s.ok()) << s.error();
    const JsonReply r = Complete(*s.Client(), kPrompt);
    ASSERT_EQ(r.status, 200) << r.raw;
    alone[t] = Text(r);
  }

  auto with_tiers = [&](const std::string& t) {
    std::vector<std::string> a = Base(t);
    const std::vector<std::string> tiers = {"--host-tier", "1MiB", "--disk-tier", disk.string(), "--disk-tier-size",
                                            "16MiB", "--redis", "127.0.0.1:" + std::to_string(redis.port()),
                                            "--offload-min-priority", "0", "--onboard-always"};
    a.insert(a.end(), tiers.begin(), tiers.end());
    return a;
  };
  // f16 first: its blocks reach host, disk and Redis.
  ServeProcess f16(with_tiers("f16"));
  ASSERT_TRUE(f16.ok()) << f16.error();
  auto cf = f16.Client();
  const JsonReply f1 = Complete(*cf, kPrompt);
  ASSERT_EQ(f1.status, 200) << f1.raw;
  EXPECT_EQ(Text(f1), alone["f16"]);
  Flood(*cf);
  const JsonReply f2 = Complete(*cf, kPrompt);
  EXPECT_GT(Cached(f2), 0) << "f16 never used its tiers: the test would prove nothing";
  EXPECT_EQ(Text(f2), alone["f16"]);
  // The host tier writes through to disk and Redis in the background: wait
  // until both hold f16's blocks, so that int8 below could see them.
  bool written = false;
  for (int i = 0; i < 200 && !written; ++i) {
    const JsonReply m = GetJson(*cf, "/v1/memory");
    const json& levels = m.body["tiers"]["levels"];
    written = levels.size() == 3 && levels[1]["blocks"].get<int>() > 0 && levels[2]["blocks"].get<int>() > 0;
    if (!written) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(written) << "f16's blocks never reached disk and Redis";

  // int8 next, on the same disk folder and Redis, while f16 still runs: its
  // first request finds nothing of f16's.
  ServeProcess int8(with_tiers("int8"));
  ASSERT_TRUE(int8.ok()) << int8.error();
  EXPECT_NE(int8.Output().find("KV int8"), std::string::npos) << int8.Output();
  auto ci = int8.Client();
  const JsonReply i1 = Complete(*ci, kPrompt);
  ASSERT_EQ(i1.status, 200) << i1.raw;
  EXPECT_EQ(Cached(i1), 0) << "int8 took blocks of f16's layout";
  EXPECT_EQ(Text(i1), alone["int8"]);
  Flood(*ci);
  const JsonReply i2 = Complete(*ci, kPrompt);
  EXPECT_GT(Cached(i2), 0) << "int8's own blocks did not come back from the tiers";
  EXPECT_EQ(Text(i2), alone["int8"]);
  // And f16 again, after int8 wrote to the same tiers.
  Flood(*cf);
  const JsonReply f3 = Complete(*cf, kPrompt);
  EXPECT_EQ(Text(f3), alone["f16"]);

  const JsonReply mem = GetJson(*ci, "/v1/memory");
  ASSERT_EQ(mem.status, 200);
  EXPECT_EQ(mem.body["memory"]["kv"]["types"], "int8");
  // stories260K: 5 layers x 4 KV heads x 8 dims, blocks of 16 tokens: a K
  // head is 16 x 8 bytes + S + 8 channel codes, a V head 16 x (8 + a 2-byte
  // scale): 6,000 bytes a block, 375 a token (f16: 640).
  EXPECT_EQ(mem.body["memory"]["kv"]["bytes_per_token"].get<int>(), 375);
  EXPECT_NEAR(mem.body["memory"]["kv"]["capacity_vs_f16"].get<double>(), 640.0 / 375.0, 1e-9);
  auto metrics = ci->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kvstack_kv_bytes_per_token{kv_types=\"int8\"} 375"), std::string::npos)
      << metrics->body.substr(0, 2000);
  int8.Signal(SIGTERM);
  f16.Signal(SIGTERM);
  int8.WaitExit(std::chrono::seconds(20));
  f16.WaitExit(std::chrono::seconds(20));
  fs::remove_all(disk);
}

// --tier-kv-type int8: the f16 server's evicted blocks go to its host tier
// as int8 (6,000 bytes a block instead of 10,240) and come back as hits; the
// answer is the one the server gives without tiers (8 greedy tokens of
// stories260K survive int8 KV: it keeps llama.cpp's completions with int8
// KV, kv_quant_engine_test).
TEST(ServeKvTypesTest, Int8TierKvTypeServesHitsFromHalfSizeBlocks) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << "needs ../shared/models/stories260K.gguf";
  std::string alone;
  {
    ServeProcess s(Base("f16"));
    ASSERT_TRUE(s.ok()) << s.error();
    const JsonReply r = Complete(*s.Client(), kPrompt);
    ASSERT_EQ(r.status, 200) << r.raw;
    alone = Text(r);
  }
  std::vector<std::string> a = Base("f16");
  for (const char* arg : {"--host-tier", "1MiB", "--tier-kv-type", "int8", "--offload-min-priority", "0",
                          "--onboard-always"}) {
    a.push_back(arg);
  }
  ServeProcess s(a);
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_NE(s.Output().find("tiers store KV as int8 (6000 bytes a block"), std::string::npos) << s.Output();
  auto c = s.Client();
  const JsonReply first = Complete(*c, kPrompt);
  ASSERT_EQ(first.status, 200) << first.raw;
  EXPECT_EQ(Text(first), alone);
  Flood(*c);
  const JsonReply again = Complete(*c, kPrompt);
  ASSERT_EQ(again.status, 200) << again.raw;
  EXPECT_GT(Cached(again), 0) << "no block came back from the int8 tier";
  EXPECT_EQ(Text(again), alone);
  const JsonReply mem = GetJson(*c, "/v1/memory");
  ASSERT_EQ(mem.status, 200);
  EXPECT_EQ(mem.body["memory"]["kv"]["types"], "f16");
  EXPECT_EQ(mem.body["tiers"]["kv_types"], "int8");
  EXPECT_EQ(mem.body["tiers"]["bytes_per_block"].get<int>(), 6000);
  EXPECT_GT(mem.body["tiers"]["onboard"]["onboarded_blocks"].get<int>(), 0);
  const json& host = mem.body["tiers"]["levels"][0];
  EXPECT_EQ(host["bytes_in"].get<int64_t>() % 6000, 0) << host.dump();
  EXPECT_GT(host["bytes_in"].get<int64_t>(), 0) << host.dump();
}

TEST(ServeKvTypesTest, BadKvTypesAreRefusedByFlag) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << "needs ../shared/models/stories260K.gguf";
  for (auto [flag, value] : {std::pair{"--kv-type", "q8"}, std::pair{"--kv-type-k", "int3"},
                             std::pair{"--kv-type-v", "fp4"}, std::pair{"--eviction-policy", "random"},
                             std::pair{"--tier-kv-type", "int3"},
                             // A real type, but no tier to store it in.
                             std::pair{"--tier-kv-type", "int8"}}) {
    std::string cmd = std::string(KVSTACK_BINARY) + " serve --port 0 --model '" + Stories260KPath() + "' " + flag +
                      " " + value + " 2>&1";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string out;
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    const int status = ::pclose(pipe);
    ASSERT_TRUE(WIFEXITED(status)) << out;
    EXPECT_EQ(WEXITSTATUS(status), 2) << flag << ": " << out;
    EXPECT_NE(out.find(value), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace kvstack::testing
