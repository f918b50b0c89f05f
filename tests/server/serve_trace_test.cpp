// `kvstack serve --record-trace FILE`: every finished request, whole or
// streamed, becomes one line of kvstack's trace format with what the server
// saw (prompt tokens, tenant, session, output length, measured TTFT and
// cached tokens), and the file reads back as a trace.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kvstack/trace.h"
#include "server/serve_process.h"
#include "common/requirement.h"

namespace kvstack::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

TEST(ServeTraceTest, RecordsEveryFinishedRequest) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << "needs ../shared/models/stories260K.gguf";
  const fs::path file = fs::temp_directory_path() / ("kvstack-trace-" + std::to_string(::getpid()) + ".jsonl");
  const std::string prompt = "Once upon a time there was a little cat named Tom. He liked to play in the garden.";
  std::vector<JsonReply> replies;
  {
    ServeProcess server({"--model", Stories260KPath(), "--threads", "1", "--record-trace", file.string(),
                         "--tenant-label-key", kTestTenantLabelKey});
    ASSERT_TRUE(server.ok()) << server.error();
    auto c = server.Client();
    for (int i = 0; i < 2; ++i) {
      replies.push_back(PostJson(*c, "/v1/completions",
                                 {{"prompt", prompt}, {"max_tokens", 5}, {"cache_salt", "acme"}, {"session_id", "s1"}}));
      ASSERT_EQ(replies.back().status, 200) << replies.back().raw;
    }
    const StreamReply streamed =
        PostStream(*c, "/v1/completions", {{"prompt", "The dog"}, {"max_tokens", 3}, {"stream", true}});
    ASSERT_EQ(streamed.status, 200);
    server.Signal(SIGTERM);
    ASSERT_EQ(server.WaitExit(std::chrono::seconds(20)), 0);
  }
  std::ifstream in(file);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 4u) << "a header and three requests";
  EXPECT_EQ(lines[0]["kvstack_trace"], 1);
  // The server's steady clock at start, which t_ms counts from: traces of
  // several servers merge on it.
  EXPECT_GT(lines[0]["origin_us"].get<int64_t>(), 0);
  EXPECT_GT(lines[1]["t_ms"].get<double>(), 0) << "the first request arrives after the server started";
  for (int i = 0; i < 2; ++i) {
    const json& l = lines[1 + i];
    EXPECT_EQ(l["tenant"], TestTenantLabel("acme")) << "a trace keeps the tenant's label, never its salt";
    EXPECT_EQ(l["session"], "s1");
    EXPECT_EQ(l["input_length"], replies[i].body["usage"]["prompt_tokens"]);
    EXPECT_EQ(l["tokens"].size(), l["input_length"].get<size_t>());
    EXPECT_EQ(l["tokens"], json(EncodeStories(prompt)));
    EXPECT_EQ(l["output_length"], 5);
    EXPECT_EQ(l["measured_cached_tokens"], replies[i].body["usage"]["prompt_tokens_details"]["cached_tokens"]);
    EXPECT_GT(l["measured_ttft_ms"].get<double>(), 0);
  }
  EXPECT_GT(lines[2]["measured_cached_tokens"].get<int>(), 0);
  EXPECT_GE(lines[2]["t_ms"].get<double>(), lines[1]["t_ms"].get<double>());
  EXPECT_EQ(lines[3]["output_length"], 3);
  EXPECT_FALSE(lines[3].contains("tenant"));

  auto trace = sim::ReadTrace(file.string(), sim::TraceFormat::kKvstack);
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  EXPECT_EQ(trace->requests.size(), 3u);
  fs::remove(file);
}

TEST(ServeTraceTest, AnUnwritableTraceFileIsAClearStartError) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << "needs ../shared/models/stories260K.gguf";
  ServeProcess server({"--model", Stories260KPath(), "--record-trace", "/nonexistent-dir/trace.jsonl"});
  EXPECT_FALSE(server.ok());
  EXPECT_NE(server.error().find("--record-trace /nonexistent-dir/trace.jsonl"), std::string::npos) << server.error();
}

}  // namespace
}  // namespace kvstack::testing
