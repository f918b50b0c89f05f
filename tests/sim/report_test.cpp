// The HTML report: self-contained, and every chart rendered with data in a
// real headless Chromium (a missing requirement when /usr/bin/chromium is
// absent: skipped locally, a failure under CI=true). Also the
// `kvstack sim` CLI end to end.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "common/run_kvstack.h"
#include "kvstack/sim.h"
#include "sim/fixed_cost.h"
#include "common/requirement.h"

namespace kvstack::sim {
namespace {

namespace fs = std::filesystem;

Trace CyclicTrace() {
  Trace t;
  t.block_tokens = 4;
  for (int i = 0; i < 30; ++i) {
    TraceRequest r;
    r.arrival_us = i * 5'000;
    r.block_ids = {static_cast<uint64_t>(1 + i % 3), static_cast<uint64_t>(100 + i)};
    r.input_tokens = 8;
    r.output_tokens = 1 + i % 5;
    t.requests.push_back(r);
  }
  return t;
}

std::string Capture(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

TEST(HtmlReportTest, SelfContainedWithFourCharts) {
  testing::FixedCost cost;
  SimOptions o;
  o.block_size = 4;
  o.device_tokens = 32;
  auto r = Simulate(CyclicTrace(), cost, o);
  ASSERT_TRUE(r.ok());
  auto sweep = SweepCapacity(CyclicTrace(), cost, o, {"lru", "lfu"}, 16, 128, 4);
  ASSERT_TRUE(sweep.ok());
  HtmlReportInput in{"test report", "cyclic", &*r, &*sweep, nullptr};
  const std::string html = RenderHtmlReport(in);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // only the SVG namespace
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  const std::regex chart("<svg class=\"chart\"");
  EXPECT_EQ(std::distance(std::sregex_iterator(html.begin(), html.end(), chart), std::sregex_iterator()), 4);
}

TEST(HtmlReportTest, ChromiumRendersEveryChartWithData) {
  const char* chromium = "/usr/bin/chromium";
  if (::access(chromium, X_OK) != 0) KVSTACK_SKIP_MISSING() << "no " << chromium << ": the headless rendering check cannot run";
  testing::FixedCost cost;
  SimOptions o;
  o.block_size = 4;
  o.device_tokens = 32;
  ReviewOptions ro;
  ro.sweep_points = 4;
  auto review = RunReview(CyclicTrace(), cost, o, ro);
  ASSERT_TRUE(review.ok()) << review.status().ToString();
  HtmlReportInput in{"review", "cyclic", &review->baseline, nullptr, &*review};
  const fs::path file = fs::temp_directory_path() / ("kvstack_report_" + std::to_string(::getpid()) + ".html");
  std::ofstream(file) << RenderHtmlReport(in);
  const fs::path profile = fs::temp_directory_path() / ("kvstack_chromium_" + std::to_string(::getpid()));
  const std::string dom = Capture(std::string("timeout 120 ") + chromium +
                                  " --headless --no-sandbox --disable-gpu --disable-background-networking "
                                  "--disable-dev-shm-usage --user-data-dir=" + profile.string() +
                                  " --dump-dom file://" + file.string() + " 2>/dev/null");
  fs::remove(file);
  fs::remove_all(profile);
  ASSERT_FALSE(dom.empty()) << "chromium printed no DOM";
  // The page's script marks each chart that holds drawn data.
  for (const char* id : {"chart-hit-rate", "chart-ttft", "chart-memory", "chart-occupancy"}) {
    const std::regex marked(std::string("<svg[^>]*id=\"") + id + "\"[^>]*data-rendered=\"1\"");
    EXPECT_TRUE(std::regex_search(dom, marked)) << id << " not rendered with data";
  }
  EXPECT_NE(dom.find("data-rendered=\"4\""), std::string::npos) << "render status: not 4 of 4 charts";
}

TEST(SimCliTest, ReplaysAKvstackTraceAndWritesAReport) {
  const fs::path dir = fs::temp_directory_path() / ("kvstack_sim_cli_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream t(dir / "t.jsonl");
    for (int i = 0; i < 20; ++i) {
      t << "{\"t_ms\": " << i * 100 << ", \"input_length\": 40, \"output_length\": 4, \"block_tokens\": 16, "
        << "\"block_ids\": [1, 2, " << 100 + i << "]}\n";
    }
  }
  const auto run = test_support::RunKvstack("sim --trace " + (dir / "t.jsonl").string() +
                                            " --device-tokens 4k --sweep capacity --sweep-points 3 --html " +
                                            (dir / "r.html").string());
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("Hit rate"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("cost model: roofline"), std::string::npos) << run.output;
  // 19 of 20 requests hit their 32-token prefix: 608 of 800 prompt tokens.
  EXPECT_NE(run.output.find("608 of 800 prompt tokens"), std::string::npos) << run.output;
  EXPECT_TRUE(fs::exists(dir / "r.html"));
  {
    std::ofstream bad(dir / "bad.jsonl");
    bad << "{\"t_ms\": 0, \"input_length\": 4, \"output_length\": 1}\n{\"t_ms\": oops}\n";
  }
  const auto bad = test_support::RunKvstack("sim --format kvstack --trace " + (dir / "bad.jsonl").string());
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("bad.jsonl:2:"), std::string::npos) << bad.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvstack::sim
