// The self-contained HTML report: inline CSS, inline SVG, one inline script.
// Charts are drawn here as plain SVG (no JavaScript needed to see them); the
// script only checks each chart and marks it data-rendered="1" when it holds
// data, which the headless-browser test reads back.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include <fmt/format.h>

#include "kvstack/sim_report.h"

namespace kvstack::sim {
namespace {

namespace sz = ::kvstack::sizing;

constexpr double kW = 640, kH = 320, kL = 64, kR = 16, kT = 24, kB = 44;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::string label;
  std::function<std::string(double)> format;
  double Map(double v, double a, double b) const {
    double f;
    if (log) f = (std::log10(std::max(v, lo)) - std::log10(lo)) / std::max(1e-12, std::log10(hi) - std::log10(lo));
    else f = (v - lo) / std::max(1e-12, hi - lo);
    return a + f * (b - a);
  }
};

std::string Frame(const std::string& id, const std::string& title, int points) {
  return fmt::format("<figure><figcaption>{}</figcaption>\n<svg class=\"chart\" id=\"{}\" data-points=\"{}\" "
                     "xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\">\n",
                     Escape(title), id, points, kW, kH, kW, kH);
}

std::string Axes(const Axis& x, const Axis& y) {
  std::string s = fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"axis\"/>", kL, kH - kB, kW - kR, kH - kB);
  s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"axis\"/>\n", kL, kT, kL, kH - kB);
  std::vector<double> xt;
  if (x.log) {
    for (double v = std::pow(10, std::floor(std::log10(x.lo))); v <= x.hi * 1.0001; v *= 10) {
      if (v >= x.lo * 0.9999) xt.push_back(v);
    }
    if (xt.size() < 2) xt = {x.lo, x.hi};
  } else {
    for (int i = 0; i <= 4; ++i) xt.push_back(x.lo + (x.hi - x.lo) * i / 4);
  }
  for (double v : xt) {
    const double px = x.Map(v, kL, kW - kR);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>", px, kH - kB + 14,
                     Escape(x.format(v)));
  }
  for (int i = 0; i <= 4; ++i) {
    const double v = y.lo + (y.hi - y.lo) * i / 4;
    const double py = y.Map(v, kH - kB, kT);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" class=\"tick\" text-anchor=\"end\">{}</text>", kL - 4, py + 4,
                     Escape(y.format(v)));
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" class=\"grid\"/>", kL, py, kW - kR, py);
  }
  s += fmt::format("\n<text x=\"{}\" y=\"{}\" class=\"label\" text-anchor=\"middle\">{}</text>", (kL + kW - kR) / 2,
                   kH - 8, Escape(x.label));
  s += fmt::format("<text x=\"14\" y=\"{}\" class=\"label\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>\n",
                   (kT + kH - kB) / 2, (kT + kH - kB) / 2, Escape(y.label));
  return s;
}

std::string LineChart(const std::string& id, const std::string& title, const Axis& x, const Axis& y,
                      const std::vector<Series>& series) {
  int points = 0;
  for (const Series& s : series) points += static_cast<int>(s.points.size());
  std::string out = Frame(id, title, points) + Axes(x, y);
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kColors[i % std::size(kColors)];
    std::string d;
    for (const auto& [vx, vy] : series[i].points) {
      d += fmt::format("{}{:.1f},{:.1f}", d.empty() ? "M" : " L", x.Map(vx, kL, kW - kR), y.Map(vy, kH - kB, kT));
    }
    out += fmt::format("<path data-series=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                       Escape(series[i].name), d, color);
    for (const auto& [vx, vy] : series[i].points) {
      if (series[i].points.size() > 40) break;
      out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>", x.Map(vx, kL, kW - kR),
                         y.Map(vy, kH - kB, kT), color);
    }
    out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" "
                       "class=\"tick\">{}</text>\n",
                       kL + 10, kT + 4 + 16 * i, color, kL + 24, kT + 13 + 16 * i, Escape(series[i].name));
  }
  if (points == 0) out += fmt::format("<text x=\"{}\" y=\"{}\" class=\"label\" text-anchor=\"middle\">no data</text>", kW / 2, kH / 2);
  return out + "</svg></figure>\n";
}

std::string Tokens(double v) {
  if (v >= 1e9) return fmt::format("{:g}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:g}k", v / 1e3);
  return fmt::format("{:g}", v);
}

std::string HitRateChart(const std::vector<SweepPoint>* sweep) {
  std::vector<Series> series;
  Axis x{1, 10, true, "device cache capacity (tokens, log scale)", Tokens};
  Axis y{0, 1, false, "token hit rate", [](double v) { return fmt::format("{:.0f}%", v * 100); }};
  if (sweep != nullptr && !sweep->empty()) {
    std::map<std::string, size_t> index;
    x.lo = 1e300, x.hi = 0;
    for (const SweepPoint& p : *sweep) {
      auto [it, fresh] = index.try_emplace(p.policy, series.size());
      if (fresh) series.push_back({p.policy, {}});
      series[it->second].points.emplace_back(static_cast<double>(p.device_tokens), p.token_hit_rate);
      x.lo = std::min(x.lo, static_cast<double>(p.device_tokens));
      x.hi = std::max(x.hi, static_cast<double>(p.device_tokens));
    }
    if (x.hi <= x.lo) x.hi = x.lo * 10;
  }
  return LineChart("chart-hit-rate", "Hit rate vs capacity, per policy", x, y, series);
}

// The CDF of sorted `v` (seconds) as at most ~200 points in milliseconds.
Series Cdf(std::string name, const std::vector<double>& v) {
  Series s{std::move(name), {}};
  const size_t n = v.size();
  const size_t step = std::max<size_t>(1, n / 200);
  for (size_t i = 0; i < n; i += step) s.points.emplace_back(v[i] * 1e3, static_cast<double>(i + 1) / n);
  if (n > 0) s.points.emplace_back(v.back() * 1e3, 1.0);
  return s;
}

std::string TtftChart(const SimResult& r) {
  std::vector<Series> series{Cdf("TTFT CDF (replay)", r.ttft_samples_s)};
  double xmax = r.ttft_samples_s.empty() ? 0 : r.ttft_samples_s.back() * 1e3;
  if (!r.measured_ttft_samples_s.empty()) {
    // The server's own measurements, from the trace: the calibration check.
    series.push_back(Cdf("measured by the server", r.measured_ttft_samples_s));
    xmax = std::max(xmax, r.measured_ttft_samples_s.back() * 1e3);
  }
  Axis x{0, xmax > 0 ? std::max(xmax, 1e-3) : 1, false, "time to first token (ms)",
         [](double v) { return fmt::format("{:.3g}", v); }};
  Axis y{0, 1, false, "fraction of requests", [](double v) { return fmt::format("{:.0f}%", v * 100); }};
  return LineChart("chart-ttft", "TTFT distribution (cumulative)", x, y, series);
}

std::string OccupancyChart(const SimResult& r) {
  Series used{"held by running requests", {}}, cached{"prefix cache (evictable)", {}};
  double tmax = 0, ymax = 1;
  const double t0 = r.occupancy.empty() ? 0 : r.occupancy.front().t_seconds;
  for (const OccupancySample& s : r.occupancy) {
    used.points.emplace_back(s.t_seconds - t0, s.in_use_blocks);
    cached.points.emplace_back(s.t_seconds - t0, s.cached_blocks);
    tmax = std::max(tmax, s.t_seconds - t0);
    ymax = std::max<double>(ymax, s.in_use_blocks + s.cached_blocks);
  }
  Axis x{0, std::max(tmax, 1e-3), false, "simulated time (s)", [](double v) { return fmt::format("{:.3g}", v); }};
  Axis y{0, ymax, false, fmt::format("blocks of {} tokens (summed over instances)", r.block_size),
         [](double v) { return Tokens(std::round(v)); }};
  return LineChart("chart-occupancy", "HBM (device cache) occupancy over time", x, y, {used, cached});
}

std::string MemoryChart(const SimResult& r, const Review* review) {
  std::vector<std::pair<std::string, double>> parts;
  std::string unit;
  if (review != nullptr && review->sizing) {
    const sz::SizingReport& z = *review->sizing;
    parts = {{"weights", static_cast<double>(z.weight_bytes_per_gpu)},
             {"workspace", static_cast<double>(z.workspace_bytes_per_gpu)},
             {"KV in use at peak", static_cast<double>(review->peak_kv_bytes_per_gpu)},
             {"KV left (cache, free)",
              static_cast<double>(std::max<int64_t>(0, z.kv_budget_bytes_per_gpu - review->peak_kv_bytes_per_gpu))}};
    unit = "bytes per GPU";
  } else {
    int32_t cached = 0;
    for (const OccupancySample& s : r.occupancy) {
      if (s.in_use_blocks == r.peak_in_use_blocks) cached = s.cached_blocks;
    }
    const double total = static_cast<double>(r.device_tokens / std::max(1, r.block_size));
    parts = {{"in use at peak", static_cast<double>(r.peak_in_use_blocks)},
             {"prefix cache", static_cast<double>(cached)},
             {"free", std::max(0.0, total - r.peak_in_use_blocks - cached)}};
    unit = "device blocks of one instance";
  }
  double sum = 0;
  for (const auto& p : parts) sum += p.second;
  const int points = sum > 0 ? static_cast<int>(parts.size()) : 0;
  std::string out = Frame("chart-memory", "Memory split at peak (" + unit + ")", points);
  double x = kL;
  const double width = kW - kL - kR;
  for (size_t i = 0; i < parts.size() && sum > 0; ++i) {
    const double w = parts[i].second / sum * width;
    const char* color = kColors[i % std::size(kColors)];
    out += fmt::format("<rect data-series=\"{}\" x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"60\" fill=\"{}\"/>",
                       Escape(parts[i].first), x, kT + 20, w, color);
    const std::string value = unit[0] == 'b' ? sz::FormatBytes(static_cast<int64_t>(parts[i].second))
                                             : sz::FormatCount(static_cast<int64_t>(parts[i].second));
    out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" "
                       "class=\"tick\">{}: {} ({:.1f}%)</text>\n",
                       kL, kT + 110 + 20 * i, color, kL + 16, kT + 119 + 20 * i, Escape(parts[i].first), value,
                       100 * parts[i].second / sum);
    x += w;
  }
  return out + "</svg></figure>\n";
}

std::string Pre(const std::string& text) { return "<pre>" + Escape(text) + "</pre>\n"; }

}  // namespace

std::string RenderHtmlReport(const HtmlReportInput& in) {
  const SimResult& r = *in.result;
  const std::vector<SweepPoint>* sweep = in.sweep;
  if ((sweep == nullptr || sweep->empty()) && in.review != nullptr) sweep = &in.review->sweep;
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" + Escape(in.title) +
                  "</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}\n"
                  "figure{display:inline-block;margin:1em 1em 1em 0;vertical-align:top}\n"
                  "figcaption{font-weight:600;margin-bottom:.3em}\n"
                  "svg.chart{background:#fafafa;border:1px solid #ddd}\n.axis{stroke:#444}\n.grid{stroke:#e4e4e4}\n"
                  ".tick{font-size:11px;fill:#333}\n.label{font-size:12px;fill:#222}\n"
                  "pre{background:#f5f5f5;padding:1em;overflow-x:auto;font-size:12px}\n</style></head><body>\n";
  h += "<h1>" + Escape(in.title) + "</h1>\n<p>Trace: " + Escape(in.trace_source) + "</p>\n";
  h += "<div id=\"render-status\" data-charts=\"4\" data-rendered=\"0\"></div>\n";
  h += HitRateChart(sweep);
  h += TtftChart(r);
  h += MemoryChart(r, in.review);
  h += OccupancyChart(r);
  h += "<h2>Replay</h2>\n" + Pre(FormatSimResult(r));
  if (in.review != nullptr) h += "<h2>Review</h2>\n" + Pre(FormatReview(*in.review));
  else if (sweep != nullptr && !sweep->empty()) h += "<h2>Capacity sweep</h2>\n" + Pre(FormatSweep(*sweep));
  h += R"(<script>
(function () {
  var charts = document.querySelectorAll('svg.chart');
  var done = 0;
  charts.forEach(function (svg) {
    var drawn = svg.querySelectorAll('[data-series]').length;
    var ok = Number(svg.getAttribute('data-points')) > 0 && drawn > 0;
    svg.setAttribute('data-rendered', ok ? '1' : '0');
    if (ok) done++;
  });
  var status = document.getElementById('render-status');
  status.setAttribute('data-rendered', String(done));
  status.textContent = done + ' of ' + charts.length + ' charts rendered with data';
})();
</script>
</body></html>
)";
  return h;
}

}  // namespace kvstack::sim
