// GET /v1/memory and the dashboard at GET / on the real `kvstack serve`: the
// report reflects a known workload (hits within a tenant, none across, a
// flood that evicts), names prefixes without their text, and headless
// Chromium renders every dashboard chart with data.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "server/serve_process.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";
constexpr char kClientKey[] = "memory-test-client-key";
constexpr char kAdminKey[] = "memory-test-admin-key";

const std::string kShared =
    "Once upon a time there was a little cat named Tom. He liked to play in the big green garden behind the house "
    "with his best friend, a small brown dog called Max, every sunny morning.";

class ServeMemoryTest : public ::testing::Test {
 protected:
  // 640 bytes of f16 KV per token: 160 KiB is 16 blocks of 16 tokens, so ten
  // unique prompts of three blocks each must evict.
  static void SetUpTestSuite() {
    if (Stories260KPath().empty()) return;
    server_ = new ServeProcess({"--model", Stories260KPath(), "--threads", "1", "--kv-memory", "160KiB",
                                "--tenant-label-key", kTestTenantLabelKey, "--api-key", kClientKey, "--admin-key",
                                kAdminKey});
    if (!server_->ok()) return;
    auto client = server_->Client(kClientKey);
    auto complete = [&](const std::string& prompt, const std::string& salt) {
      json body = {{"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}};
      if (!salt.empty()) body["cache_salt"] = salt;
      return PostJson(*client, "/v1/completions", body);
    };
    replies_.push_back(complete(kShared, "tenant-a"));
    replies_.push_back(complete(kShared, "tenant-a"));
    replies_.push_back(complete(kShared, "tenant-b"));
    for (int i = 0; i < 10; ++i) {
      replies_.push_back(complete("Story number " + std::to_string(i) + ": a girl named Lily found " +
                                      std::to_string(i * 7 + 3) + " shiny stones near the river and showed her mom.",
                                  ""));
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    replies_.clear();
  }
  void SetUp() override {
    if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
    ASSERT_TRUE(server_->ok()) << server_->error();
    for (const JsonReply& r : replies_) ASSERT_EQ(r.status, 200) << r.raw;
    client_ = server_->Client(kAdminKey);  // /v1/memory is an operator view
  }
  static ServeProcess* server_;
  static std::vector<JsonReply> replies_;
  std::unique_ptr<httplib::Client> client_;
};
ServeProcess* ServeMemoryTest::server_ = nullptr;
std::vector<JsonReply> ServeMemoryTest::replies_;

int Cached(const JsonReply& r) { return r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(); }

TEST_F(ServeMemoryTest, ReportsTheWorkload) {
  ASSERT_GT(Cached(replies_[1]), 0);
  ASSERT_EQ(Cached(replies_[2]), 0);
  const JsonReply r = GetJson(*client_, "/v1/memory");
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& m = r.body;
  EXPECT_EQ(m["object"], "kvstack.memory");
  EXPECT_FALSE(m["model"]["random_weights"]);

  const json& bytes = m["memory"]["bytes"];
  EXPECT_GT(bytes["weights"].get<double>(), 0);
  EXPECT_GT(bytes["workspace"].get<double>(), 0);
  EXPECT_EQ(bytes["kv_in_use"].get<double>(), 0) << "a finished workload holds no KV";
  const json& blocks = m["memory"]["kv_blocks"];
  EXPECT_EQ(blocks["total"].get<int>(), 16);
  EXPECT_EQ(blocks["in_use"].get<int>() + blocks["cached"].get<int>() + blocks["pinned"].get<int>() +
                blocks["free"].get<int>(),
            16);
  const double block_bytes = blocks["bytes_per_block"].get<double>();
  EXPECT_EQ(bytes["kv_cached"].get<double>(), blocks["cached"].get<int>() * block_bytes);

  EXPECT_EQ(m["prompt_tokens"]["count"].get<int>(), 13);
  EXPECT_GE(m["prompt_tokens"]["p99"].get<double>(), m["prompt_tokens"]["p50"].get<double>());
  EXPECT_EQ(m["prompt_tokens"]["max"].get<int>(), replies_[0].body["usage"]["prompt_tokens"].get<int>());

  EXPECT_GT(m["prefix_cache"]["hit_rate"].get<double>(), 0);
  // Tenants appear under their labels, never their salts.
  const std::string label_a = TestTenantLabel("tenant-a"), label_b = TestTenantLabel("tenant-b");
  EXPECT_EQ(r.raw.find("tenant-a"), std::string::npos);
  std::map<std::string, json> tenants;
  for (const json& t : m["prefix_cache"]["by_tenant"]) tenants[t["tenant"]] = t;
  ASSERT_TRUE(tenants.count(label_a));
  ASSERT_TRUE(tenants.count(label_b));
  EXPECT_EQ(tenants[label_a]["hit_tokens"].get<int>(), Cached(replies_[1]));
  EXPECT_EQ(tenants[label_b]["hit_tokens"].get<int>(), 0);

  ASSERT_GE(m["hot_prefixes"].size(), 1u);
  const json& hot = m["hot_prefixes"][0];
  EXPECT_EQ(hot["tenant"], label_a);
  EXPECT_EQ(hot["hits"].get<int>(), 1);
  EXPECT_EQ(hot["tokens"].get<int>(), Cached(replies_[1]));
  EXPECT_TRUE(std::regex_match(hot["hash"].get<std::string>(), std::regex("[0-9a-f]{32}")));
  EXPECT_EQ(r.raw.find("cat named Tom"), std::string::npos) << "prefixes are never shown as text";

  uint64_t by_class = 0;
  for (const auto& [name, n] : m["evictions"]["by_priority_class"].items()) by_class += n.get<uint64_t>();
  EXPECT_GT(m["evictions"]["total"].get<uint64_t>(), 0u) << "ten unique prompts overflow 16 blocks";
  EXPECT_EQ(by_class, m["evictions"]["total"].get<uint64_t>());

  const json& ttft = m["ttft_s"]["by_hit_share"];
  EXPECT_EQ(ttft["none"]["count"].get<int>() + ttft["under_half"]["count"].get<int>() +
                ttft["half_or_more"]["count"].get<int>(),
            13);
  EXPECT_GE(ttft["half_or_more"]["count"].get<int>(), 1);
  for (const auto& [share, p] : ttft.items()) {
    if (p["count"].get<int>() == 0) continue;
    EXPECT_GT(p["p50"].get<double>(), 0) << share;
    EXPECT_LE(p["p50"].get<double>(), p["p95"].get<double>()) << share;
    EXPECT_LE(p["p95"].get<double>(), p["p99"].get<double>()) << share;
  }

  uint64_t requests = 0, cached = 0;
  for (const json& b : m["timeline"]["buckets"]) {
    requests += b["requests"].get<uint64_t>();
    cached += b["cached_tokens"].get<uint64_t>();
  }
  EXPECT_EQ(requests, 13u);
  EXPECT_EQ(cached, uint64_t(Cached(replies_[1])));
  EXPECT_EQ(m["requests"]["running"].get<int>(), 0);
  EXPECT_EQ(m["requests"]["recorded"].get<int>(), 13);
}

TEST_F(ServeMemoryTest, DashboardIsOneSelfContainedPage) {
  auto res = client_->Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/html; charset=utf-8");
  const std::string& html = res->body;
  EXPECT_NE(html.find("kvstack memory"), std::string::npos);
  EXPECT_NE(html.find("/v1/memory"), std::string::npos);
  for (const char* external : {"<script src", "<link", "@import", "url(http", "src=\"http", "href=\"http"}) {
    EXPECT_EQ(html.find(external), std::string::npos) << "external asset: " << external;
  }
}

// The charts the dashboard must draw, by their data-chart attribute.
const std::vector<std::string> kCharts = {"memory", "hit-rate", "ttft", "hot-prefixes", "evictions"};

TEST_F(ServeMemoryTest, HeadlessChromiumRendersEveryChartWithData) {
  const char* chromium = "/usr/bin/chromium";
  if (!std::filesystem::exists(chromium)) KVSTACK_SKIP_MISSING() << "needs Debian's chromium (/usr/bin/chromium)";
  const auto dir = std::filesystem::temp_directory_path() /
                   ("kvstack-chromium-" + std::to_string(::getpid()) + "-" + std::to_string(server_->port()));
  std::filesystem::create_directories(dir);
  const std::string dom_path = (dir / "dom.html").string();
  // Virtual time lets the page's fetch and first drawing finish before the DOM
  // is dumped; the profile lives in the temporary folder. The admin key goes
  // in the URL fragment, as an operator opens the page.
  const std::string command =
      "HOME=" + dir.string() + " timeout 120 " + chromium +
      " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-background-networking"
      " --disable-extensions --no-first-run --no-default-browser-check --user-data-dir=" +
      (dir / "profile").string() + " --virtual-time-budget=10000 --dump-dom http://127.0.0.1:" +
      std::to_string(server_->port()) + "/#key=" + kAdminKey + " > " + dom_path + " 2> " + (dir / "chromium.log").string();
  const int rc = std::system(command.c_str());
  std::ifstream in(dom_path);
  std::stringstream dom;
  dom << in.rdbuf();
  std::ifstream log_in(dir / "chromium.log");
  std::stringstream log;
  log << log_in.rdbuf();
  std::filesystem::remove_all(dir);
  ASSERT_EQ(rc, 0) << "chromium failed: " << log.str();
  const std::string html = dom.str();
  ASSERT_NE(html.find("data-loaded=\"true\""), std::string::npos) << "the page never loaded /v1/memory:\n" << html;
  for (const std::string& chart : kCharts) {
    const std::regex tag("<svg[^>]*data-chart=\"" + chart + "\"[^>]*>");
    std::smatch match;
    ASSERT_TRUE(std::regex_search(html, match, tag)) << "no chart " << chart;
    const std::string open = match.str();
    EXPECT_NE(open.find("data-rendered=\"true\""), std::string::npos) << chart << " not rendered: " << open;
    std::smatch points;
    ASSERT_TRUE(std::regex_search(open, points, std::regex("data-points=\"([0-9]+)\""))) << chart;
    EXPECT_GT(std::stoi(points[1]), 0) << chart << " rendered without data";
  }
  // Tenants by label, never by salt.
  EXPECT_NE(html.find(TestTenantLabel("tenant-a")), std::string::npos);
  EXPECT_EQ(html.find("tenant-a"), std::string::npos);
}

TEST(ServeMemoryAuthTest, MemoryNeedsTheAdminKeyButTheDashboardPageDoesNot) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1", "--api-key", "sekret", "--admin-key",
                       "admin-sekret"});
  ASSERT_TRUE(server.ok()) << server.error();
  auto anonymous = server.Client();
  EXPECT_EQ(GetJson(*anonymous, "/v1/memory").status, 401);
  auto page = anonymous->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(GetJson(*server.Client("sekret"), "/v1/memory").status, 401) << "a client key sees no other tenant";
  EXPECT_EQ(GetJson(*server.Client("admin-sekret"), "/v1/memory").status, 200);
}

}  // namespace
}  // namespace kvstack::testing
