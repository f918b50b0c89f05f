// GET /metrics on the real `kvstack serve`: the Prometheus text content type,
// every kvstack_ metric family, prefix-cache counters equal to
// /v1/cache/stats, cumulative histogram buckets ending in +Inf == _count, and
// (when /usr/bin/promtool exists) `promtool check metrics` accepting the body.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "server/serve_process.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;
using ::testing::StartsWith;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";

const std::string kPrompt =
    "Once upon a time there was a little cat named Tom. He liked to play in the big green garden behind the house.";

// Every sample line: "name{labels}" -> value.
std::map<std::string, double> ParseSamples(const std::string& body) {
  std::map<std::string, double> samples;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string value = line.substr(space + 1);
    samples[line.substr(0, space)] = value == "+Inf" ? HUGE_VAL : std::stod(value);
  }
  return samples;
}

// The `_bucket` values of histogram `name` in order, with their le labels.
std::vector<std::pair<std::string, double>> Buckets(const std::string& body, const std::string& name) {
  std::vector<std::pair<std::string, double>> out;
  std::istringstream in(body);
  std::string line;
  const std::string prefix = name + "_bucket{le=\"";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const size_t end = line.find('"', prefix.size());
    out.emplace_back(line.substr(prefix.size(), end - prefix.size()), std::stod(line.substr(line.rfind(' ') + 1)));
  }
  return out;
}

class ServeMetricsTest : public ::testing::Test {
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
  static ServeProcess* server_;
  std::unique_ptr<httplib::Client> client_;
};
ServeProcess* ServeMetricsTest::server_ = nullptr;

TEST_F(ServeMetricsTest, ExposesPrometheusText) {
  for (int i = 0; i < 2; ++i) {
    const JsonReply r = PostJson(*client_, "/v1/completions",
                                 {{"prompt", kPrompt}, {"max_tokens", 4}, {"cache_salt", "metrics-tenant"}});
    ASSERT_EQ(r.status, 200) << r.raw;
  }
  const StreamReply streamed =
      PostStream(*client_, "/v1/completions", {{"prompt", kPrompt}, {"max_tokens", 3}, {"stream", true}});
  ASSERT_EQ(streamed.status, 200);

  const JsonReply stats = GetJson(*client_, "/v1/cache/stats");
  ASSERT_EQ(stats.status, 200) << stats.raw;
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_THAT(res->get_header_value("Content-Type"), StartsWith("text/plain; version=0.0.4"));
  const std::string& body = res->body;

  for (const char* family :
       {"kvstack_kv_cache_usage_perc gauge", "kvstack_prefix_cache_queries_total counter",
        "kvstack_prefix_cache_hits_total counter", "kvstack_prefix_cache_queries_by_tenant_total counter",
        "kvstack_prefix_cache_hits_by_tenant_total counter",
        "kvstack_prefix_cache_queries_by_priority_class_total counter",
        "kvstack_prefix_cache_hits_by_priority_class_total counter", "kvstack_num_requests_running gauge",
        "kvstack_num_requests_waiting gauge", "kvstack_num_preemptions_total counter", "kvstack_evictions_total counter",
        "kvstack_memory_bytes gauge", "kvstack_time_to_first_token_seconds histogram",
        "kvstack_inter_token_latency_seconds histogram", "kvstack_request_prompt_tokens histogram",
        "kvstack_request_generation_tokens histogram", "kvstack_engine_step_seconds histogram"}) {
    EXPECT_NE(body.find(std::string("# TYPE ") + family + "\n"), std::string::npos) << family << "\n" << body;
  }

  const std::map<std::string, double> s = ParseSamples(body);
  auto at = [&](const std::string& key) {
    auto it = s.find(key);
    EXPECT_NE(it, s.end()) << key << " missing in\n" << body;
    return it == s.end() ? -1.0 : it->second;
  };
  const json& prefix = stats.body["prefix"];
  EXPECT_EQ(at("kvstack_prefix_cache_queries_total"), prefix["query_tokens"].get<double>());
  EXPECT_EQ(at("kvstack_prefix_cache_hits_total"), prefix["hit_tokens"].get<double>());
  EXPECT_GT(at("kvstack_prefix_cache_hits_total"), 0);
  // The tenant appears under its label, never its salt.
  const std::string label = TestTenantLabel("metrics-tenant");
  EXPECT_EQ(res->body.find("metrics-tenant"), std::string::npos);
  const json& tenant = stats.body["by_tenant"][label];
  EXPECT_EQ(at("kvstack_prefix_cache_queries_by_tenant_total{tenant=\"" + label + "\"}"),
            tenant["query_tokens"].get<double>());
  EXPECT_EQ(at("kvstack_prefix_cache_hits_by_tenant_total{tenant=\"" + label + "\"}"),
            tenant["hit_tokens"].get<double>());
  for (const char* cls : {"one-off", "default", "durable", "pinned"}) {
    const std::string label = std::string("{priority_class=\"") + cls + "\"}";
    EXPECT_EQ(at("kvstack_prefix_cache_queries_by_priority_class_total" + label),
              stats.body["by_priority_class"][cls]["query_tokens"].get<double>());
    EXPECT_EQ(at("kvstack_prefix_cache_hits_by_priority_class_total" + label),
              stats.body["by_priority_class"][cls]["hit_tokens"].get<double>());
    at("kvstack_evictions_total" + label);
  }
  const double usage = at("kvstack_kv_cache_usage_perc");
  EXPECT_GE(usage, 0);
  EXPECT_LE(usage, 1);
  EXPECT_GT(at("kvstack_memory_bytes{kind=\"weights\"}"), 0);
  EXPECT_GT(at("kvstack_memory_bytes{kind=\"kv_cached\"}"), 0);
  for (const char* kind : {"kv_in_use", "kv_pinned", "kv_free"}) at(std::string("kvstack_memory_bytes{kind=\"") + kind + "\"}");
  EXPECT_EQ(at("kvstack_num_requests_running"), 0);
  EXPECT_EQ(at("kvstack_num_requests_waiting"), 0);

  for (const char* h : {"kvstack_time_to_first_token_seconds", "kvstack_inter_token_latency_seconds",
                        "kvstack_request_prompt_tokens", "kvstack_request_generation_tokens",
                        "kvstack_engine_step_seconds"}) {
    const auto buckets = Buckets(body, h);
    ASSERT_GE(buckets.size(), 2u) << h;
    for (size_t i = 1; i < buckets.size(); ++i) EXPECT_GE(buckets[i].second, buckets[i - 1].second) << h;
    EXPECT_EQ(buckets.back().first, "+Inf") << h;
    EXPECT_EQ(buckets.back().second, at(std::string(h) + "_count")) << h;
  }
  // Two whole requests and one streamed; each one's TTFT, prompt and tokens
  // (an inter-token latency needs two tokens, which an early stop may deny).
  for (const char* h : {"kvstack_time_to_first_token_seconds", "kvstack_request_prompt_tokens",
                        "kvstack_request_generation_tokens"}) {
    EXPECT_EQ(at(std::string(h) + "_count"), 3) << h;
  }
  EXPECT_LE(at("kvstack_inter_token_latency_seconds_count"), 3);
  EXPECT_GT(at("kvstack_request_prompt_tokens_sum"), 3 * 16);
  // The three requests ran one after another: each took a step at least.
  EXPECT_GE(at("kvstack_engine_step_seconds_count"), 3);
  EXPECT_GT(at("kvstack_engine_step_seconds_sum"), 0);

  if (!std::filesystem::exists("/usr/bin/promtool")) {
    // Every assertion above has run: a failure there still fails the test.
    KVSTACK_SKIP_MISSING() << "promtool check: /usr/bin/promtool is absent (scripts/install-deps installs prometheus)";
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("kvstack_metrics_" + std::to_string(::getpid()) + ".txt")).string();
  std::ofstream(path) << body;
  const std::string cmd = "/usr/bin/promtool check metrics < " + path + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  std::filesystem::remove(path);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool check metrics:\n" << out << "\nbody:\n" << body;
}

}  // namespace
}  // namespace kvstack::testing
