// `kvstack serve` over a real Redis Cluster (3 masters, 3 replicas on
// 127.0.0.1): two servers share KV through it (a conversation's second turn on
// the other server onboards the first turn's blocks, with the same text as
// computing them), a master killed mid-run fails no request and changes no
// output (then blocks are hits again after failover), and a live reshard of a
// third of the slots during a run fails no request.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/requirement.h"
#include "server/serve_process.h"
#include "tiers/redis_cluster.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;
using tier_test::RedisCluster;

const std::string kFirstTurn =
    "Once upon a time there was a little cat named Tom. He liked to play in the big green garden behind the house "
    "with his best friend, a small brown dog called Max, every sunny morning before school started.";

JsonReply Complete(httplib::Client& c, const std::string& prompt, int max_tokens = 16) {
  return PostJson(c, "/v1/completions", {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}});
}
int Cached(const JsonReply& r) { return r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(); }

std::string Prompt(int i) {
  return "Story " + std::to_string(i) + ": a girl named Lily found " + std::to_string(i * 13 + 5) +
         " shiny stones near the old river bank, and her brother Ben counted them twice before dinner.";
}

// The redis level of /v1/memory's tiers.
json RedisLevel(httplib::Client& c) {
  const JsonReply m = GetJson(c, "/v1/memory");
  for (const json& l : m.body["tiers"]["levels"]) {
    if (l["tier"] == "redis") return l;
  }
  return json();
}

class ServeRedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << "needs ../shared/models/stories260K.gguf";
    if (!RedisCluster::Installed()) {
      KVSTACK_SKIP_MISSING() << "redis-server or redis-cli is not installed (apt-get install redis-server redis-tools)";
    }
    std::string error;
    ASSERT_TRUE(cluster_.Start(&error)) << error;
  }

  // A small device pool and two blocks of host RAM, so blocks leave for the
  // cluster quickly and come back from it.
  std::vector<std::string> Args() const {
    return {"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "160KiB", "--host-tier", "20KiB",
            "--redis-cluster", cluster_.Seeds(), "--offload-min-priority", "0", "--onboard-always"};
  }

  // Greedy texts of `prompts` from a server without tiers.
  static std::vector<std::string> Reference(const std::vector<std::string>& prompts) {
    ServeProcess plain({"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "160KiB"});
    EXPECT_TRUE(plain.ok()) << plain.error();
    auto c = plain.Client();
    std::vector<std::string> out;
    for (const std::string& p : prompts) {
      const JsonReply r = Complete(*c, p);
      EXPECT_EQ(r.status, 200) << r.raw;
      out.push_back(r.body["choices"][0]["text"]);
    }
    return out;
  }

  RedisCluster cluster_;
};

TEST_F(ServeRedisClusterTest, ASecondServerOnboardsTheFirstTurnFromTheCluster) {
  ServeProcess a(Args());
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_NE(a.Output().find("redis cluster via"), std::string::npos) << a.Output();
  auto ca = a.Client();
  const JsonReply first = Complete(*ca, kFirstTurn);
  ASSERT_EQ(first.status, 200) << first.raw;
  const std::string second_turn = kFirstTurn + first.body["choices"][0]["text"].get<std::string>() +
                                  " Then Tom asked Max where the ball had gone.";
  const std::vector<std::string> reference = Reference({second_turn});
  // Evict the first turn from A's device pool: its blocks are written through
  // to the cluster. Wait (bounded) until the writes have landed.
  for (int i = 0; i < 12; ++i) ASSERT_EQ(Complete(*ca, Prompt(i), 4).status, 200);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const json level = RedisLevel(*ca);
    const JsonReply m = GetJson(*ca, "/v1/memory");
    if (!level.is_null() && level["stored"].get<int64_t>() >= m.body["tiers"]["offload"]["stored"].get<int64_t>()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  ServeProcess b(Args());
  ASSERT_TRUE(b.ok()) << b.error();
  auto cb = b.Client();
  const JsonReply second = Complete(*cb, second_turn);
  ASSERT_EQ(second.status, 200) << second.raw;
  EXPECT_EQ(second.body["choices"][0]["text"], reference[0]) << "a block from the cluster changed the output";
  EXPECT_GT(Cached(second), 0) << "server B did not find server A's blocks in the cluster";
  const json level = RedisLevel(*cb);
  ASSERT_FALSE(level.is_null());
  EXPECT_GT(level["hits"].get<int64_t>(), 0);
  // Per node: the cluster's six nodes, and the hits came from masters.
  ASSERT_EQ(level["nodes"].size(), 6u);
  int64_t master_hits = 0;
  for (const json& n : level["nodes"]) {
    if (n["role"] == "master") master_hits += n["hits"].get<int64_t>();
  }
  EXPECT_EQ(master_hits, level["hits"].get<int64_t>());
  auto metrics = cb->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kvstack_tier_node_hits_total{tier=\"redis\",node=\"127.0.0.1:"), std::string::npos);
  EXPECT_NE(metrics->body.find("kvstack_tier_slot_map_refreshes_total{tier=\"redis\"}"), std::string::npos);
}

TEST_F(ServeRedisClusterTest, AMasterKilledMidRunFailsNoRequest) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(Prompt(i));
  const std::vector<std::string> reference = Reference(prompts);
  ServeProcess s(Args());
  ASSERT_TRUE(s.ok()) << s.error();
  auto c = s.Client();
  auto round = [&](const char* phase) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      const JsonReply r = Complete(*c, prompts[i]);
      ASSERT_EQ(r.status, 200) << phase << " " << i << ": " << r.raw;
      EXPECT_EQ(r.body["choices"][0]["text"], reference[i]) << phase << " " << i;
    }
  };
  round("before");
  round("warm");  // blocks evicted by the first round come back from the cluster
  const int64_t hits_before = RedisLevel(*c)["hits"].get<int64_t>();
  EXPECT_GT(hits_before, 0);
  // Kill the master serving the most blocks' slots: the first master.
  const int master = cluster_.MasterOf(0);
  ASSERT_GT(master, 0);
  cluster_.node(static_cast<size_t>(cluster_.IndexOf(master))).Kill();
  round("master down");  // misses for its slots, no failure, same text
  ASSERT_TRUE(cluster_.WaitReady(std::chrono::seconds(30))) << "no failover";
  // After failover: hits again (the map is re-read; the replica serves).
  int64_t hits_after = 0;
  for (int attempt = 0; attempt < 20 && hits_after == 0; ++attempt) {
    const int64_t before = RedisLevel(*c)["hits"].get<int64_t>();
    round("after failover");
    hits_after = RedisLevel(*c)["hits"].get<int64_t>() - before;
  }
  EXPECT_GT(hits_after, 0) << "no block was a hit again after the replica took over";
  EXPECT_GE(RedisLevel(*c)["slot_map_refreshes"].get<int64_t>(), 2);
}

TEST_F(ServeRedisClusterTest, ALiveReshardFailsNoRequest) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 6; ++i) prompts.push_back(Prompt(i));
  const std::vector<std::string> reference = Reference(prompts);
  ServeProcess s(Args());
  ASSERT_TRUE(s.ok()) << s.error();
  std::atomic<bool> done{false};
  std::atomic<int> requests{0}, failed{0}, wrong{0};
  std::thread client([&] {
    auto c = s.Client();
    while (!done.load()) {
      for (size_t i = 0; i < prompts.size(); ++i) {
        const JsonReply r = Complete(*c, prompts[i]);
        requests.fetch_add(1);
        if (r.status != 200) {
          failed.fetch_add(1);
        } else if (r.body["choices"][0]["text"] != reference[i]) {
          wrong.fetch_add(1);
        }
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string error;
  const bool ok = cluster_.Reshard(cluster_.MasterOf(0), cluster_.MasterOf(16383), 16384 / 3, &error);
  done.store(true);
  client.join();
  ASSERT_TRUE(ok) << error;
  EXPECT_GT(requests.load(), 0);
  EXPECT_EQ(failed.load(), 0) << "of " << requests.load();
  EXPECT_EQ(wrong.load(), 0) << "of " << requests.load();
}

}  // namespace
}  // namespace kvstack::testing
