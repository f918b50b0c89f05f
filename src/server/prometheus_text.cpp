#include "server/prometheus_text.h"

#include <cmath>

#include <fmt/format.h>

namespace kvstack::server {

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatPromValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

void PrometheusText::Family(std::string_view name, std::string_view type, std::string_view help) {
  std::string escaped;
  for (char c : help) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escaped, name, type);
}

void PrometheusText::Line(std::string_view name, const PromLabels& labels, std::string_view extra_label_name,
                          std::string_view extra_label_value, double value) {
  out_ += name;
  if (!labels.empty() || !extra_label_name.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += fmt::format("{}=\"{}\"", k, EscapeLabelValue(v));
    }
    if (!extra_label_name.empty()) {
      if (!first) out_ += ',';
      out_ += fmt::format("{}=\"{}\"", extra_label_name, EscapeLabelValue(extra_label_value));
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += FormatPromValue(value);
  out_ += '\n';
}

void PrometheusText::Sample(std::string_view name, const PromLabels& labels, double value) {
  Line(name, labels, "", "", value);
}

void PrometheusText::HistogramSamples(std::string_view name, const PromLabels& labels, const Histogram& h,
                                      double divisor) {
  const std::string bucket = fmt::format("{}_bucket", name);
  const std::vector<double>& bounds = h.upper_bounds();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += h.counts()[i];
    Line(bucket, labels, "le", FormatPromValue(bounds[i] / divisor), double(cumulative));
  }
  Line(bucket, labels, "le", "+Inf", double(h.count()));
  Line(fmt::format("{}_sum", name), labels, "", "", h.sum() / divisor);
  Line(fmt::format("{}_count", name), labels, "", "", double(h.count()));
}

}  // namespace kvstack::server
