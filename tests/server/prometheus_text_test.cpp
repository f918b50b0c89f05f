// PrometheusText: the exact text of a counter, a labelled gauge whose label
// needs escaping, and a histogram (cumulative buckets, +Inf, sum, count).
#include "server/prometheus_text.h"

#include <gtest/gtest.h>

#include <limits>

namespace kvstack::server {
namespace {

TEST(PrometheusTextTest, Counter) {
  PrometheusText out;
  out.Family("kvstack_things_total", "counter", "Things seen.");
  out.Sample("kvstack_things_total", {}, 42);
  EXPECT_EQ(out.text(),
            "# HELP kvstack_things_total Things seen.\n"
            "# TYPE kvstack_things_total counter\n"
            "kvstack_things_total 42\n");
}

TEST(PrometheusTextTest, LabelledGaugeEscapesValues) {
  PrometheusText out;
  out.Family("kvstack_level", "gauge", "A level, with a back\\slash\nand a newline.");
  out.Sample("kvstack_level", {{"tenant", "a\"b\\c\nd"}, {"kind", "x"}}, 0.25);
  EXPECT_EQ(out.text(),
            "# HELP kvstack_level A level, with a back\\\\slash\\nand a newline.\n"
            "# TYPE kvstack_level gauge\n"
            "kvstack_level{tenant=\"a\\\"b\\\\c\\nd\",kind=\"x\"} 0.25\n");
}

TEST(PrometheusTextTest, EscapeLabelValue) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("\\\"\n"), "\\\\\\\"\\n");
}

TEST(PrometheusTextTest, SpecialValues) {
  EXPECT_EQ(FormatPromValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatPromValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatPromValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(FormatPromValue(0.001), "0.001");
  EXPECT_EQ(FormatPromValue(7), "7");
}

TEST(PrometheusTextTest, HistogramIsCumulativeEndingWithInf) {
  Histogram h({1000, 5000, 20000});  // microseconds
  h.Observe(500);    // <= 1000
  h.Observe(1000);   // <= 1000
  h.Observe(15000);  // <= 20000
  h.Observe(90000);  // above every bound
  PrometheusText out;
  out.Family("kvstack_wait_seconds", "histogram", "Waits.");
  out.HistogramSamples("kvstack_wait_seconds", {{"tenant", "t"}}, h, 1e6);
  EXPECT_EQ(out.text(),
            "# HELP kvstack_wait_seconds Waits.\n"
            "# TYPE kvstack_wait_seconds histogram\n"
            "kvstack_wait_seconds_bucket{tenant=\"t\",le=\"0.001\"} 2\n"
            "kvstack_wait_seconds_bucket{tenant=\"t\",le=\"0.005\"} 2\n"
            "kvstack_wait_seconds_bucket{tenant=\"t\",le=\"0.02\"} 3\n"
            "kvstack_wait_seconds_bucket{tenant=\"t\",le=\"+Inf\"} 4\n"
            "kvstack_wait_seconds_sum{tenant=\"t\"} 0.1065\n"
            "kvstack_wait_seconds_count{tenant=\"t\"} 4\n");
}

}  // namespace
}  // namespace kvstack::server
