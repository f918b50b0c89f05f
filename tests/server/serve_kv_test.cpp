// The KV controls over HTTP: prefix hits within a tenant only
// (usage.prompt_tokens_details.cached_tokens), retention priorities, pins
// (create, use, delete, TTL) and a pin that survives a flood which evicts the
// same prefix unpinned.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "server/serve_process.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";
constexpr int kBlock = 16;

const std::string kSystem =
    "You are a storyteller. You tell short and happy stories about a little cat named Tom, his friend the dog, "
    "and the birds that sing in the big green garden behind the old red house near the sea.";

int CachedTokens(const JsonReply& r) { return r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(); }

class ServeKvTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!Stories260KPath().empty()) {
      server_ = new ServeProcess(
          {"--model", Stories260KPath(), "--threads", "1", "--tenant-label-key", kTestTenantLabelKey});
    }
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
  JsonReply Complete(const json& prompt, const std::string& salt, json extra = json::object()) {
    json body = {{"prompt", prompt}, {"max_tokens", 2}, {"cache_salt", salt}};
    body.update(extra);
    JsonReply r = PostJson(*client_, "/v1/completions", body);
    EXPECT_EQ(r.status, 200) << r.raw;
    return r;
  }
  json Stats() {
    JsonReply r = GetJson(*client_, "/v1/cache/stats");
    EXPECT_EQ(r.status, 200) << r.raw;
    return r.body;
  }
  static ServeProcess* server_;
  std::unique_ptr<httplib::Client> client_;
};
ServeProcess* ServeKvTest::server_ = nullptr;

TEST_F(ServeKvTest, PrefixHitsStayWithinATenant) {
  const std::vector<int32_t> ids = EncodeStories(kSystem);
  const int n = static_cast<int>(ids.size());
  ASSERT_GT(n, 3 * kBlock);
  EXPECT_EQ(CachedTokens(Complete(kSystem, "tenant-a")), 0);
  // The same prompt again: every full block but the one holding the last
  // token (whose logits are needed) comes from the cache.
  const JsonReply again = Complete(kSystem, "tenant-a");
  EXPECT_EQ(again.body["usage"]["prompt_tokens"], n);
  EXPECT_EQ(CachedTokens(again), (n - 1) / kBlock * kBlock);
  // Another tenant shares nothing, and neither does no tenant at all.
  EXPECT_EQ(CachedTokens(Complete(kSystem, "tenant-b")), 0);
  EXPECT_EQ(CachedTokens(Complete(kSystem, "")), 0);

  const json stats = Stats();
  // Tenants appear under their labels, never their salts.
  EXPECT_EQ(stats["by_tenant"][TestTenantLabel("tenant-a")]["hit_tokens"], (n - 1) / kBlock * kBlock);
  EXPECT_EQ(stats["by_tenant"][TestTenantLabel("tenant-b")]["hit_tokens"], 0);
  EXPECT_FALSE(stats["by_tenant"].contains("tenant-a"));
}

TEST_F(ServeKvTest, RetentionRangesReachTheCache) {
  const JsonReply r = Complete(kSystem + " Once", "retention",
                               {{"retention", {{"ranges", {{{"start", 0}, {"end", 48}, {"priority", 90}, {"duration_s", 600}}}},
                                               {"decode_priority", 10},
                                               {"decode_duration_s", 5}}},
                                {"priority", 70}});
  ASSERT_EQ(r.status, 200);
  const json stats = Stats();
  // The three blocks of tokens 0-47 were asked for at priority 90: durable.
  EXPECT_GE(stats["by_priority_class"]["durable"]["query_blocks"].get<int>(), 3);
}

TEST_F(ServeKvTest, PinUseAndDelete) {
  const std::vector<int32_t> ids = EncodeStories(kSystem);
  const int n = static_cast<int>(ids.size());
  const JsonReply pin = PostJson(*client_, "/v1/cache/pin", {{"prompt", kSystem}, {"cache_salt", "pin-use"}});
  ASSERT_EQ(pin.status, 200) << pin.raw;
  const std::string id = pin.body["id"];
  EXPECT_THAT(id, ::testing::StartsWith("pin-"));
  EXPECT_EQ(pin.body["object"], "cache.pin");
  EXPECT_EQ(pin.body["tokens"], n);
  EXPECT_EQ(pin.body["blocks"], n / kBlock);
  EXPECT_TRUE(pin.body["expires_at"].is_null());
  EXPECT_EQ(pin.body["tenant"], TestTenantLabel("pin-use"));

  json stats = Stats();
  EXPECT_GE(stats["pinned_blocks"].get<int>(), n / kBlock);
  ASSERT_FALSE(stats["pins"].empty());
  EXPECT_THAT(stats["pins"].dump(), ::testing::HasSubstr("\"id\":\"" + id + "\""));

  std::vector<int32_t> longer = ids;
  longer.insert(longer.end(), {300, 301, 302});
  EXPECT_EQ(CachedTokens(Complete(longer, "pin-use")), n / kBlock * kBlock);

  // Only the salt that made the pin releases it.
  EXPECT_EQ(DeleteJson(*client_, "/v1/cache/pin/" + id).status, 404);
  auto del_res = client_->Delete(("/v1/cache/pin/" + id).c_str(), json({{"cache_salt", "pin-use"}}).dump(),
                                 "application/json");
  ASSERT_TRUE(del_res);
  const JsonReply del{.status = del_res->status, .body = json::parse(del_res->body), .raw = del_res->body};
  ASSERT_EQ(del.status, 200) << del.raw;
  EXPECT_EQ(del.body, json({{"id", id}, {"object", "cache.pin"}, {"deleted", true}}));
  const JsonReply again = DeleteJson(*client_, "/v1/cache/pin/" + id);
  EXPECT_EQ(again.status, 404);
  EXPECT_EQ(again.body["error"]["message"], "pin '" + id +
                                                "' does not exist for this cache_salt (never created, deleted, expired, "
                                                "or made under another salt)");
  EXPECT_THAT(Stats()["pins"].dump(), ::testing::Not(::testing::HasSubstr(id)));
}

TEST_F(ServeKvTest, PinsExpireAfterTheirTtl) {
  const JsonReply pin =
      PostJson(*client_, "/v1/cache/pin", {{"token_ids", EncodeStories(kSystem)}, {"cache_salt", "ttl"}, {"ttl_s", 0.2}});
  ASSERT_EQ(pin.status, 200) << pin.raw;
  const std::string id = pin.body["id"];
  EXPECT_DOUBLE_EQ(pin.body["ttl_s"].get<double>(), 0.2);
  EXPECT_TRUE(pin.body["expires_at"].is_number());
  // Wait for the engine thread to release it (bounded only against a hang).
  bool gone = false;
  for (int i = 0; i < 600 && !gone; ++i) {
    gone = Stats()["pins"].dump().find(id) == std::string::npos;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone);
  EXPECT_EQ(DeleteJson(*client_, "/v1/cache/pin/" + id).status, 404);
  EXPECT_THAT(server_->Output(), ::testing::HasSubstr("pin " + id + " expired"));
}

// A pool of 64 blocks, flooded with prompts five times its size: the pinned
// system prompt still hits, the same prompt unpinned (another tenant) is gone.
TEST(ServeKvFlood, PinSurvivesAFloodThatEvictsTheUnpinnedCopy) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  // stories260K's KV in f16: 5 layers x 2 x 4 heads x 8 x 2 bytes = 640 bytes per token, 10 KiB per block.
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "640KiB"});
  ASSERT_TRUE(server.ok()) << server.error();
  auto client = server.Client();
  const json stats0 = GetJson(*client, "/v1/cache/stats").body;
  ASSERT_EQ(stats0["total_blocks"], 64);

  const std::vector<int32_t> system = EncodeStories(kSystem);
  const int pinned_tokens = static_cast<int>(system.size()) / kBlock * kBlock;
  std::vector<int32_t> question = system;
  question.insert(question.end(), {300, 301, 302, 303});
  auto ask = [&](const std::string& salt) {
    const JsonReply r = PostJson(*client, "/v1/completions", {{"prompt", question}, {"max_tokens", 1}, {"cache_salt", salt}});
    EXPECT_EQ(r.status, 200) << r.raw;
    return CachedTokens(r);
  };

  const JsonReply pin = PostJson(*client, "/v1/cache/pin", {{"token_ids", system}, {"cache_salt", "pinned"}});
  ASSERT_EQ(pin.status, 200) << pin.raw;
  EXPECT_EQ(pin.body["blocks"], pinned_tokens / kBlock);
  EXPECT_EQ(ask("unpinned"), 0);
  const int question_hit = (static_cast<int>(question.size()) - 1) / kBlock * kBlock;
  EXPECT_EQ(ask("unpinned"), question_hit);  // cached, for now

  for (int i = 0; i < 48; ++i) {
    std::vector<int32_t> flood = {1};
    for (int j = 0; j < 110; ++j) flood.push_back(3 + (i * 31 + j * 17) % 500);
    const JsonReply r = PostJson(*client, "/v1/completions", {{"prompt", flood}, {"max_tokens", 1}, {"cache_salt", "flood"}});
    ASSERT_EQ(r.status, 200) << r.raw;
  }
  const json stats = GetJson(*client, "/v1/cache/stats").body;
  EXPECT_GE(stats["evictions"].get<int>(), 3 * 64);
  EXPECT_EQ(stats["pinned_blocks"], pinned_tokens / kBlock);

  EXPECT_EQ(ask("pinned"), pinned_tokens);
  EXPECT_EQ(ask("unpinned"), 0);
}

}  // namespace
}  // namespace kvstack::testing
