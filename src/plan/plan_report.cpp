// Renderings of a plan: the terminal table and a self-contained HTML page.
#include <fmt/format.h>

#include "kvstack/plan.h"

namespace kvstack::plan {
namespace {

namespace sz = ::kvstack::sizing;

std::string Share(int64_t part, int64_t whole) {
  return whole > 0 ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole)) : "-";
}

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

}  // namespace

std::string FormatPlan(const PlanReport& r) {
  const PlanOptions& o = r.options;
  std::string s = fmt::format("{} on {} x {} ({} replica{} of tensor parallel {}), weights {}, KV {}\n",
                              r.sizing.model.name, o.gpus, r.sizing.gpu.name, r.replicas, r.replicas == 1 ? "" : "s",
                              o.tensor_parallel, sz::PrecisionName(o.weights), sz::PrecisionName(o.kv));
  s += "\nHBM per GPU\n";
  const auto row = [&](std::string_view label, int64_t bytes, std::string_view detail) {
    s += fmt::format("  {:<26}{:>12}{:>8}   {}\n", label, sz::FormatBytes(bytes), Share(bytes, r.hbm_bytes), detail);
  };
  row("GPU memory", r.hbm_bytes, "");
  row("weights", r.weight_bytes, fmt::format("{} parameters / {} GPUs", sz::FormatCount(r.sizing.model.parameters),
                                             o.tensor_parallel));
  row("activations + workspace", r.activation_bytes, fmt::format("{:g}% of GPU memory", o.activation_fraction * 100));
  row("runtime reserve", r.reserve_bytes, "CUDA context, communication buffers, allocator slack");
  if (r.short_bytes > 0) {
    s += fmt::format("  {:<26}{:>12}            the weights and reserves do not fit: short by {}\n", "KV cache", "none",
                     sz::FormatBytes(r.short_bytes));
  } else {
    row("KV cache", r.kv_bytes, "the rest");
  }
  s += fmt::format("\nKV per token  {} B (model), {} B per GPU\n", sz::FormatCount(r.kv_bytes_per_token),
                   sz::FormatCount(r.kv_bytes_per_token_per_gpu));
  s += fmt::format("Tokens that fit  {} per replica, {} in all\n", sz::FormatCount(r.tokens_per_replica),
                   sz::FormatCount(r.tokens_per_replica * r.replicas));
  s += "\nConcurrent sequences   context    per replica      total\n";
  for (const auto& [name, c] : {std::pair<const char*, const Concurrency&>{"p50", r.p50}, {"p95", r.p95}, {"p99", r.p99}}) {
    s += fmt::format("  at {:<19}{:>8}{:>15}{:>11}\n", name, sz::FormatCount(c.context_tokens),
                     sz::FormatCount(c.per_replica), sz::FormatCount(c.total));
  }
  if (o.target_concurrency) {
    s += fmt::format("\nTarget: {} sequences at p95 context ({} tokens): {}\n", *o.target_concurrency,
                     sz::FormatCount(o.context_p95), r.p95.total >= *o.target_concurrency ? "reached" : "not reached");
    if (r.p95.total < *o.target_concurrency) {
      s += fmt::format("  {:<34}{:>6}{:>12}  {}\n", "change", "GPUs", "at p95", "");
      for (const Alternative& a : r.alternatives) {
        s += fmt::format("  {:<34}{:>6}{:>12}  {}{}\n", a.change, a.gpus, sz::FormatCount(a.concurrency_p95),
                         a.reaches_target ? "reaches it" : "short", a.note.empty() ? "" : "; " + a.note);
      }
    }
  }
  for (const std::string& n : r.sizing.notes) s += "\nnote: " + n;
  if (!r.sizing.notes.empty()) s += "\n";
  return s;
}

std::string RenderPlanHtml(const PlanReport& r) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kvstack plan</title>\n"
                  "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
                  "pre{background:#f5f5f5;padding:1em}.tick{font-size:12px}</style></head><body>\n";
  h += "<h1>kvstack plan: " + Escape(r.sizing.model.name) + " on " + Escape(r.sizing.gpu.name) + "</h1>\n";
  const std::pair<const char*, int64_t> parts[] = {{"weights", r.weight_bytes},
                                                   {"activations + workspace", r.activation_bytes},
                                                   {"runtime reserve", r.reserve_bytes},
                                                   {"KV cache", r.kv_bytes}};
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#9467bd", "#2ca02c"};
  h += "<svg class=\"chart\" id=\"chart-memory\" data-points=\"4\" xmlns=\"http://www.w3.org/2000/svg\" "
       "viewBox=\"0 0 640 200\" width=\"640\" height=\"200\">\n";
  double x = 10;
  const double total = static_cast<double>(std::max<int64_t>(1, r.hbm_bytes));
  for (size_t i = 0; i < 4; ++i) {
    const double w = 620.0 * static_cast<double>(parts[i].second) / total;
    h += fmt::format("<rect data-series=\"{}\" x=\"{:.1f}\" y=\"10\" width=\"{:.1f}\" height=\"50\" fill=\"{}\"/>",
                     parts[i].first, x, w, colors[i]);
    h += fmt::format("<rect x=\"10\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text class=\"tick\" x=\"26\" "
                     "y=\"{}\">{}: {} ({})</text>\n",
                     75 + 22 * i, colors[i], 84 + 22 * i, parts[i].first, sz::FormatBytes(parts[i].second),
                     Share(parts[i].second, r.hbm_bytes));
    x += w;
  }
  h += "</svg>\n<pre>" + Escape(FormatPlan(r)) + "</pre>\n</body></html>\n";
  return h;
}

}  // namespace kvstack::plan
