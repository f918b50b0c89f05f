// PrometheusText: a small writer of the Prometheus text exposition format,
// version 0.0.4 (what GET /metrics returns).
//
// Each metric family is written as `# HELP` and `# TYPE` lines followed by its
// samples; label values are escaped (backslash, double quote, newline) as the
// format requires; a Histogram becomes cumulative `_bucket{le="..."}` lines
// ending with le="+Inf" (equal to `_count`), then `_sum` and `_count`.
// The writer checks nothing about names: callers pass valid metric and label
// names ([a-zA-Z_:][a-zA-Z0-9_:]*).
// Thread safety: none; one writer per response.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvstack/histogram.h"

namespace kvstack::server {

using PromLabels = std::vector<std::pair<std::string, std::string>>;

// `value` with \ " and newline escaped as \\ \" \n.
std::string EscapeLabelValue(std::string_view value);
// A sample value: shortest round-trip form, "+Inf", "-Inf" or "NaN".
std::string FormatPromValue(double value);

class PrometheusText {
 public:
  // `type` is "counter", "gauge" or "histogram". Call once per family, before
  // its samples. `help` is escaped (backslash and newline).
  void Family(std::string_view name, std::string_view type, std::string_view help);
  // One sample line: name{labels} value.
  void Sample(std::string_view name, const PromLabels& labels, double value);
  // The samples of histogram `name` (its Family comes first), every bound and
  // the sum divided by `divisor` (1e6 turns microseconds into seconds).
  // REQUIRES: h.counts().size() == h.upper_bounds().size() + 1.
  void HistogramSamples(std::string_view name, const PromLabels& labels, const Histogram& h, double divisor = 1);

  const std::string& text() const { return out_; }

 private:
  void Line(std::string_view name, const PromLabels& labels, std::string_view extra_label_name,
            std::string_view extra_label_value, double value);
  std::string out_;
};

}  // namespace kvstack::server
