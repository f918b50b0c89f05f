// `kvstack plan`: the deployment view of `kvstack size`. Splits each GPU's
// HBM, counts the sequences that run at once at the p50/p95/p99 context
// (given, or measured from a trace), and lists what would reach a target
// concurrency. Presets are shared with `kvstack size`.
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "kvstack/plan.h"
#include "kvstack/sim.h"
#include "kvstack/sizing.h"
#include "kvstack/trace.h"

namespace kvstack::cli {
namespace {

namespace sz = ::kvstack::sizing;

struct PlanArgs {
  std::string model;
  std::string gpu = "H100-80GB";
  int64_t gpus = 0;  // 0: --tp
  int64_t tp = 1;
  std::string weights = "bf16", kv = "bf16";
  std::string p50, p95, p99;
  std::string trace, format;
  int64_t concurrency = 0;
  double activations = 0.08;
  std::string reserve = "2GiB";
  std::string html;
  std::string preset_dir = KVSTACK_PRESET_DIR;
};

int Fail(const Status& status) { return ReportFailure("plan", status); }

int RunPlan(const PlanArgs& a) {
  if (a.model.empty()) return Fail(InvalidArgument("--model is required: a preset name (see kvstack size --list)"));
  auto catalog = sz::PresetCatalog::Load(a.preset_dir);
  if (!catalog.ok()) return Fail(catalog.status());
  auto model = sz::ResolveModel(*catalog, a.model);
  if (!model.ok()) return Fail(model.status());
  auto gpu = sz::ResolveGpu(*catalog, a.gpu);
  if (!gpu.ok()) return Fail(gpu.status());
  plan::PlanOptions o;
  o.tensor_parallel = a.tp;
  o.gpus = a.gpus > 0 ? a.gpus : a.tp;
  auto weights = sz::ParsePrecision(a.weights);
  if (!weights.ok()) return Fail(InvalidArgument("--weights: " + weights.status().message()));
  o.weights = *weights;
  auto kv = sz::ParsePrecision(a.kv);
  if (!kv.ok()) return Fail(InvalidArgument("--kv: " + kv.status().message()));
  o.kv = *kv;
  o.activation_fraction = a.activations;
  auto reserve = sz::ParseByteSize(a.reserve);
  if (!reserve.ok()) return Fail(InvalidArgument("--reserve: " + reserve.status().message()));
  o.runtime_reserve_bytes = *reserve;
  if (a.concurrency > 0) o.target_concurrency = a.concurrency;

  std::string context_source = "defaults";
  if (!a.trace.empty()) {
    if (!a.p50.empty() || !a.p95.empty() || !a.p99.empty()) {
      return Fail(InvalidArgument("give --trace or --context-p50/p95/p99, not both"));
    }
    auto trace = ReadTraceOption(a.trace, a.format);
    if (!trace.ok()) return Fail(trace.status());
    if (trace->requests.empty()) return Fail(InvalidArgument("--trace " + a.trace + ": no requests"));
    const sim::ContextStats all = sim::ContextPercentiles(*trace)[0];
    o.context_p50 = std::max<int64_t>(1, static_cast<int64_t>(all.total_tokens.p50));
    o.context_p95 = std::max<int64_t>(o.context_p50, static_cast<int64_t>(all.total_tokens.p95));
    o.context_p99 = std::max<int64_t>(o.context_p95, static_cast<int64_t>(all.total_tokens.p99));
    context_source = fmt::format("prompt + output of {} requests in {}", trace->requests.size(), a.trace);
  } else {
    const auto parse = [](const std::string& flag, const std::string& text, int64_t* out) -> Status {
      if (text.empty()) return Status::Ok();
      auto t = sz::ParseTokenCount(text);
      if (!t.ok()) return InvalidArgument(flag + ": " + t.status().message());
      *out = *t;
      return Status::Ok();
    };
    Status s = parse("--context-p50", a.p50, &o.context_p50);
    if (s.ok()) s = parse("--context-p95", a.p95, &o.context_p95);
    if (s.ok()) s = parse("--context-p99", a.p99, &o.context_p99);
    if (!s.ok()) return Fail(s);
    if (!a.p50.empty() || !a.p95.empty() || !a.p99.empty()) context_source = "--context-p50/p95/p99";
  }
  auto report = plan::ComputePlan(*model, *gpu, o);
  if (!report.ok()) return Fail(report.status());
  std::printf("%s", plan::FormatPlan(*report).c_str());
  std::printf("\ncontext lengths from %s\n", context_source.c_str());
  if (!a.html.empty()) {
    if (Status s = WriteOutputFile("--html", a.html, plan::RenderPlanHtml(*report)); !s.ok()) return Fail(s);
  }
  return 0;
}

constexpr char kFooter[] = R"(
How the numbers are computed (bytes exact, as kvstack size):
  activations + workspace  --activations x GPU memory (rounded down)
  runtime reserve          --reserve per GPU
  KV cache                 GPU memory - weights / tp - activations - reserve
  tokens that fit          KV cache / KV bytes per token per GPU (one replica)
  sequences at pX          floor(tokens that fit / context pX) x replicas
  replicas                 --gpus / --tp
Alternatives (with --concurrency) are the same computation with one thing
changed, evaluated at the p95 context.

Examples:
  kvstack plan --model Llama-3.1-8B --gpu H100-80GB --context-p50 2k --context-p95 16k --context-p99 32k
  kvstack plan --model Llama-3.1-70B --gpu H100-80GB --gpus 8 --tp 4 --concurrency 200 --html plan.html
  kvstack plan --model Llama-3.1-8B --trace ../shared/traces/mooncake_conversation_trace.jsonl --concurrency 64
Exit codes: 0 success, 1 a file could not be written, 2 bad input.)";

}  // namespace

CommandRunner AddPlanCommand(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "plan", "Deployment plan: HBM split per GPU, KV per token, tokens that fit, concurrent sequences at p50/p95/p99 "
              "context, and what would reach a target concurrency.");
  auto a = std::make_shared<PlanArgs>();
  cmd->add_option("-m,--model", a->model, "Model preset or file (as kvstack size). Required.");
  cmd->add_option("-g,--gpu", a->gpu, "GPU preset (as kvstack size). Default: H100-80GB.");
  cmd->add_option("--gpus", a->gpus, "GPUs in total (a multiple of --tp). Default: --tp.");
  cmd->add_option("--tp", a->tp, "Tensor-parallel GPUs per replica. Default: 1.");
  cmd->add_option("--weights", a->weights, "Weight precision: bf16, fp8, int4, ... Default: bf16.");
  cmd->add_option("--kv", a->kv, "KV precision: bf16, fp8, int8, int4, ... Default: bf16.");
  cmd->add_option("--context-p50", a->p50, "Tokens per sequence at p50 (4k, 8192). Default: 4k.");
  cmd->add_option("--context-p95", a->p95, "Tokens per sequence at p95. Default: 16k.");
  cmd->add_option("--context-p99", a->p99, "Tokens per sequence at p99. Default: 32k.");
  cmd->add_option("--trace", a->trace, "Take the context percentiles (prompt + output) from a trace file.");
  cmd->add_option("--format", a->format, "Trace format: mooncake, azure or kvstack. Default: from the file.");
  cmd->add_option("--concurrency", a->concurrency, "Target concurrent sequences: list what would reach it.");
  cmd->add_option("--activations", a->activations, "Fraction of GPU memory for activations and workspace. Default: 0.08.");
  cmd->add_option("--reserve", a->reserve, "Runtime reserve per GPU (2GiB, 512MiB). Default: 2GiB.");
  cmd->add_option("--html", a->html, "Also write a self-contained HTML page.")->type_name("FILE");
  cmd->add_option("--preset-dir", a->preset_dir, "Folder of model and GPU presets.")->type_name("DIR");
  cmd->footer(kFooter);
  return [a]() { return RunPlan(*a); };
}

}  // namespace kvstack::cli
