// `kvstack sim`: replays a trace (a file, or a synthetic one) through the
// production cache core in metadata-only mode, timed by a roofline cost model
// of a GPU preset or by a measured `kvstack bench engine --profile`. Prints
// hit rates, TTFT / TPOT percentiles, throughput and occupancy; --sweep
// capacity, --review and --html add the multi-replay answers and a report.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "kvstack/sim.h"
#include "kvstack/sizing.h"
#include "kvstack/trace.h"

namespace kvstack::cli {
namespace {

namespace sz = ::kvstack::sizing;
namespace ks = ::kvstack::sim;

struct SimArgs {
  std::string trace;
  std::string format;  // empty: detect
  std::string synthetic;
  int64_t requests = 10000;
  double rate = 5;
  int tenants = 4;
  uint64_t seed = 1;
  // The replay's defaults are `kvstack serve`'s (SimOptions).
  std::string policy = ks::SimOptions{}.policy;
  int block_size = 0;  // 0: auto (see the --block-size help)
  std::string device_tokens, host_tokens, disk_tokens;
  int instances = 1;
  std::string router = "round-robin";
  int max_batch = ks::SimOptions{}.max_batch;
  int clients = 0;
  int max_batch_tokens = ks::SimOptions{}.max_batch_tokens;
  int offload_min_priority = ks::SimOptions{}.offload_min_priority;
  int offload_min_hits = static_cast<int>(ks::SimOptions{}.offload_min_hits);
  bool onboard_always = false;
  bool no_prefetch = false;
  bool every_step = false;
  std::string model = "Llama-3.1-8B";
  std::string gpu = "H100-80GB";
  int tp = 1;
  std::string weights = "bf16", kv = "bf16";
  std::string workspace = "0.1";
  std::string profile, profile_model;
  bool review = false;
  std::string sweep;
  int sweep_points = 8;
  std::string policies = "lru,priority-lru,lfu";
  std::string html;
  std::string preset_dir = KVSTACK_PRESET_DIR;
};

int Fail(const Status& status) { return ReportFailure("sim", status); }

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// A progress bar on stderr, only when it is a terminal.
std::function<void(double)> ProgressBar(const std::string& label) {
  if (!isatty(STDERR_FILENO)) return nullptr;
  return [label](double f) {
    const int width = 40, filled = static_cast<int>(f * width);
    std::fprintf(stderr, "\r%s [%s%s] %3.0f%%", label.c_str(), std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), f * 100);
    if (f >= 1) std::fprintf(stderr, "\r%*s\r", width + static_cast<int>(label.size()) + 10, "");
    std::fflush(stderr);
  };
}

Result<ks::Trace> LoadTrace(const SimArgs& a) {
  if (!a.synthetic.empty()) {
    if (!a.trace.empty()) return InvalidArgument("give --trace or --synthetic, not both");
    auto kind = ks::ParseSyntheticKind(a.synthetic);
    if (!kind.ok()) return InvalidArgument("--synthetic: " + kind.status().message());
    ks::SyntheticOptions o;
    o.kind = *kind;
    o.requests = a.requests;
    o.requests_per_second = a.rate;
    o.tenants = a.tenants;
    o.seed = a.seed;
    return ks::GenerateTrace(o);
  }
  if (a.trace.empty()) return InvalidArgument("--trace FILE or --synthetic chat|agent|rag is required");
  return ReadTraceOption(a.trace, a.format);
}

Result<int64_t> TokensOption(const std::string& flag, const std::string& text) {
  if (text.empty() || text == "0") return int64_t{0};
  auto t = sz::ParseTokenCount(text);
  if (!t.ok()) return InvalidArgument(flag + ": " + t.status().message());
  return *t;
}

int RunSim(const SimArgs& a) {
  auto trace = LoadTrace(a);
  if (!trace.ok()) return Fail(trace.status());

  // Model and GPU: the roofline cost model, and the default device capacity.
  auto catalog = sz::PresetCatalog::Load(a.preset_dir);
  if (!catalog.ok()) return Fail(catalog.status());
  auto model = sz::ResolveModel(*catalog, a.model);
  if (!model.ok()) return Fail(model.status());
  auto gpu = sz::ResolveGpu(*catalog, a.gpu);
  if (!gpu.ok()) return Fail(gpu.status());
  auto weights = sz::ParsePrecision(a.weights);
  if (!weights.ok()) return Fail(InvalidArgument("--weights: " + weights.status().message()));
  auto kv = sz::ParsePrecision(a.kv);
  if (!kv.ok()) return Fail(InvalidArgument("--kv: " + kv.status().message()));
  auto workspace = sz::ParseWorkspace(a.workspace);
  if (!workspace.ok()) return Fail(workspace.status());
  sz::SizingOptions so;
  so.gpus = a.tp;
  so.weights = *weights;
  so.kv = *kv;
  so.context_tokens = 1;
  so.workspace = *workspace;

  std::unique_ptr<ks::CostModel> cost;
  if (!a.profile.empty()) {
    std::ifstream in(a.profile, std::ios::binary);
    if (!in) return Fail(InvalidArgument(fmt::format("--profile {}: cannot open the file", a.profile)));
    std::stringstream text;
    text << in.rdbuf();
    auto c = ks::MakeProfileCostModel(text.str(), a.profile, a.profile_model);
    if (!c.ok()) return Fail(c.status());
    cost = std::move(c).value();
  } else {
    ks::RooflineOptions ro;
    ro.model = *model;
    ro.gpu = *gpu;
    ro.tensor_parallel = a.tp;
    ro.weights = *weights;
    ro.kv = *kv;
    auto c = ks::MakeRooflineCostModel(ro);
    if (!c.ok()) return Fail(c.status());
    cost = std::move(c).value();
  }

  ks::SimOptions o;
  o.policy = a.policy;
  o.block_size = a.block_size;
  if (o.block_size == 0) {
    // A trace of block ids says only whether whole blocks of block_tokens are
    // equal, so the cache block matches that grain (capped at 512, a power of
    // two); token-level traces get the engine's 16.
    bool ids = false;
    for (const ks::TraceRequest& r : trace->requests) ids = ids || !r.block_ids.empty();
    o.block_size = 16;
    if (ids) {
      o.block_size = 1;
      while (o.block_size * 2 <= std::min(512, trace->block_tokens)) o.block_size *= 2;
    }
  }
  auto device = TokensOption("--device-tokens", a.device_tokens);
  if (!device.ok()) return Fail(device.status());
  auto host = TokensOption("--host-tokens", a.host_tokens);
  if (!host.ok()) return Fail(host.status());
  auto disk = TokensOption("--disk-tokens", a.disk_tokens);
  if (!disk.ok()) return Fail(disk.status());
  o.device_tokens = *device;
  std::string capacity_note = "--device-tokens";
  if (o.device_tokens == 0) {
    auto sizing = sz::ComputeSizing(*model, *gpu, so);
    if (!sizing.ok()) return Fail(sizing.status());
    if (!sizing->weights_fit) {
      return Fail(InvalidArgument(fmt::format("{} does not fit on {} x {}: give --device-tokens, or more --tp",
                                              model->name, a.tp, gpu->name)));
    }
    o.device_tokens = sizing->tokens_that_fit;
    capacity_note = fmt::format("the KV that fits beside {} on {} x {}", model->name, a.tp, gpu->name);
  }
  o.host_tokens = *host;
  o.disk_tokens = *disk;
  o.instances = a.instances;
  auto router = ks::ParseRouter(a.router);
  if (!router.ok()) return Fail(router.status());
  o.router = *router;
  o.max_batch = a.max_batch;
  if (a.max_batch_tokens < 0) {
    return Fail(InvalidArgument(fmt::format("--max-batch-tokens {}: must be 0 (no budget) or positive",
                                            a.max_batch_tokens)));
  }
  o.max_batch_tokens = a.max_batch_tokens;
  if (a.clients < 0) return Fail(InvalidArgument(fmt::format("--clients {}: must be 0 (open loop) or more", a.clients)));
  o.clients = a.clients;
  if (a.offload_min_priority < 0 || a.offload_min_priority > 100) {
    return Fail(InvalidArgument(fmt::format("--offload-min-priority {}: must be from 0 to 100", a.offload_min_priority)));
  }
  if (a.offload_min_hits < 0) {
    return Fail(InvalidArgument(fmt::format("--offload-min-hits {}: must be 0 or more", a.offload_min_hits)));
  }
  o.offload_min_priority = static_cast<Priority>(a.offload_min_priority);
  o.offload_min_hits = static_cast<uint32_t>(a.offload_min_hits);
  o.onboard_only_when_faster = !a.onboard_always;
  o.prefetch = !a.no_prefetch;
  o.stretches = !a.every_step;

  std::printf("trace: %s (%s requests)\n", trace->source.c_str(), sz::FormatCount(trace->requests.size()).c_str());
  std::printf("device cache: %s tokens per instance (%s), %d instance%s, router %s\n\n",
              sz::FormatCount(o.device_tokens).c_str(), capacity_note.c_str(), o.instances, o.instances == 1 ? "" : "s",
              std::string(ks::RouterName(o.router)).c_str());
  const std::vector<std::string> differences = ks::ServeDifferences(o);
  if (!differences.empty()) {
    std::printf("where this replay departs from `kvstack serve` defaults:\n");
    for (const std::string& d : differences) std::printf("  %s\n", d.c_str());
    std::printf("\n");
  }

  ks::SimOptions main_options = o;
  main_options.progress = ProgressBar("replaying");
  auto result = ks::Simulate(*trace, *cost, main_options);
  if (!result.ok()) return Fail(result.status());
  std::printf("%s", ks::FormatSimResult(*result).c_str());

  const std::vector<std::string> policies = SplitList(a.policies);
  std::vector<ks::SweepPoint> sweep;
  if (!a.sweep.empty()) {
    if (a.sweep != "capacity") return Fail(InvalidArgument("--sweep \"" + a.sweep + "\": only \"capacity\" is known"));
    const int64_t distinct = std::max<int64_t>(ks::DistinctPromptTokens(*trace, o.block_size), o.block_size);
    const int64_t max_tokens = std::max(distinct, o.device_tokens);
    auto s = ks::SweepCapacity(*trace, *cost, o, policies, std::max<int64_t>(o.block_size, max_tokens / 256),
                               max_tokens, a.sweep_points);
    if (!s.ok()) return Fail(s.status());
    sweep = std::move(s).value();
    std::printf("\nHit rate vs capacity (log axis; the last point holds every distinct block: %s tokens)\n%s",
                sz::FormatCount(distinct).c_str(), ks::FormatSweep(sweep).c_str());
  }
  std::optional<ks::Review> review;
  if (a.review) {
    ks::ReviewOptions ro;
    ro.policies = policies;
    ro.sweep_points = sweep.empty() ? a.sweep_points : 0;
    if (a.profile.empty()) {
      ro.model = *model;
      ro.gpu = *gpu;
      ro.sizing = so;
    }
    auto r = ks::RunReview(*trace, *cost, o, ro);
    if (!r.ok()) return Fail(r.status());
    review = std::move(r).value();
    if (!sweep.empty()) review->sweep = sweep;
    std::printf("\nReview\n%s", ks::FormatReview(*review).c_str());
  }
  if (!a.html.empty()) {
    ks::HtmlReportInput in;
    in.title = "kvstack sim report";
    in.trace_source = trace->source;
    in.result = &*result;
    in.sweep = &sweep;
    in.review = review ? &*review : nullptr;
    if (Status s = WriteOutputFile("--html", a.html, ks::RenderHtmlReport(in)); !s.ok()) return Fail(s);
  }
  return 0;
}

constexpr char kFooter[] = R"(
Replay: each instance runs the engine's own scheduler (admission in arrival
order, chunked prefill within --max-batch-tokens, preemption of the lowest
priority then newest request when blocks run out, recompute) over a
metadata-only KvCache (the same prefix matching, retention and eviction),
and its tiers are the server's tier chain on metadata-only tiers (the same
offload gate, tier eviction, onboard-or-recompute rule and prefetch). Only
time is modelled: every step costs what the cost model printed with the
results says; nothing depends on this machine's speed. Defaults are `kvstack
serve`'s; the replay lists any option that departs from them. An overloaded
replay (more work arriving than the instances can do) says by how much and
how many instances would keep up. Mooncake hash ids become deterministic
token blocks, so any --block-size works (a smaller block hits at a finer
grain). For a GPU, raise --max-batch-tokens (vLLM's default is 8192).

Examples:
  kvstack sim --trace ../shared/traces/mooncake_conversation_trace.jsonl --device-tokens 2M
  kvstack sim --trace mooncake.jsonl --device-tokens 1M --host-tokens 8M --policy lfu
  kvstack sim --trace mooncake.jsonl --device-tokens 1M --sweep capacity --html report.html
  kvstack sim --synthetic agent --requests 20000 --device-tokens 256k --review --html review.html
  kvstack sim --trace azure_llm_2023_conv.csv --gpu H200-141GB --model Llama-3.1-70B --tp 2 \
      --max-batch 256 --max-batch-tokens 8192
  kvstack sim --trace t.jsonl --profile engine-profile.json --device-tokens 64k
  kvstack sim --trace recorded.jsonl --profile prof.json --block-size 16 --device-tokens 419424 \
      (a `kvstack serve --record-trace`
      trace against the server's pool and scheduler; prints the TTFT it measured beside the prediction)
Exit codes: 0 success, 1 a file could not be written, 2 bad input.)";

}  // namespace

CommandRunner AddSimCommand(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "sim", "Replay a trace through the production KV cache core (metadata-only) with a roofline cost model: hit "
             "rates per tier, TTFT/TPOT percentiles, throughput, occupancy; --sweep capacity, --review, --html.");
  auto a = std::make_shared<SimArgs>();
  cmd->add_option("--trace", a->trace, "Trace file: Mooncake JSONL, Azure CSV or kvstack JSONL.")->type_name("FILE");
  cmd->add_option("--format", a->format, "mooncake, azure or kvstack. Default: from the file.")->type_name("FMT");
  cmd->add_option("--synthetic", a->synthetic,
                  "Generate the trace instead: chat (multi-turn), agent (system prompt, memory, tool loops) or rag "
                  "(shared documents).")
      ->type_name("KIND");
  cmd->add_option("--requests", a->requests, "Synthetic: requests. Default: 10000.");
  cmd->add_option("--rate", a->rate, "Synthetic: arrivals per second (Poisson). Default: 5.");
  cmd->add_option("--tenants", a->tenants, "Synthetic: tenants. Default: 4.");
  cmd->add_option("--seed", a->seed, "Synthetic: random seed. Default: 1.");
  cmd->add_option("--policy", a->policy, "Eviction policy: lru, priority-lru or lfu. Default: priority-lru (serve's).");
  cmd->add_option("--block-size", a->block_size,
                  "Tokens per cache block (power of two, 1-512). Default: the trace's block grain for traces of "
                  "block ids (512 for Mooncake), else 16.");
  cmd->add_option("--device-tokens", a->device_tokens,
                  "Device KV capacity per instance in tokens (2M, 512k). Default: what fits beside the model.")
      ->type_name("TOKENS");
  cmd->add_option("--host-tokens", a->host_tokens, "Host-memory tier capacity in tokens. Default: none.")
      ->type_name("TOKENS");
  cmd->add_option("--disk-tokens", a->disk_tokens, "Disk tier capacity in tokens. Default: none.")->type_name("TOKENS");
  cmd->add_option("--instances", a->instances, "Engine instances, each with its own cache. Default: 1.");
  cmd->add_option("--router", a->router, "round-robin, least-loaded or kv-aware. Default: round-robin.");
  cmd->add_option("--max-batch", a->max_batch,
                  "Running requests per instance at most (serve's --max-running). Default: 64.");
  cmd->add_option("--max-batch-tokens", a->max_batch_tokens,
                  "Token budget of one step (running requests first, then admissions), as `kvstack serve "
                  "--max-batch-tokens`; 0: no budget. Default: 256.");
  cmd->add_option("--clients", a->clients,
                  "0: requests arrive at the trace's times. N: closed loop, as a load generator with N clients: "
                  "each sends the trace's next request once its previous one completed. Default: 0.");
  cmd->add_option("--offload-min-priority", a->offload_min_priority,
                  "Tiers: an evicted block goes down if its priority is at least this... Default: 50.");
  cmd->add_option("--offload-min-hits", a->offload_min_hits, "...or if it was hit at least this often. Default: 2.");
  cmd->add_flag("--onboard-always", a->onboard_always,
                "Tiers: onboard a tier's blocks even when the cost model says recomputing them is faster.");
  cmd->add_flag("--no-prefetch", a->no_prefetch, "Tiers: do not bring a queued request's disk blocks up to the host tier.");
  cmd->add_flag("--every-step", a->every_step,
                "Run every scheduler step on its own instead of jumping over runs of alike decode steps: slower, "
                "with the same results (for checking that shortcut).");
  cmd->add_option("-m,--model", a->model, "Model preset or file (as kvstack size). Default: Llama-3.1-8B.");
  cmd->add_option("-g,--gpu", a->gpu, "GPU preset (as kvstack size). Default: H100-80GB.");
  cmd->add_option("--tp", a->tp, "Tensor-parallel GPUs per instance. Default: 1.");
  cmd->add_option("--weights", a->weights, "Weight precision. Default: bf16.");
  cmd->add_option("--kv", a->kv, "KV precision. Default: bf16.");
  cmd->add_option("--workspace", a->workspace, "GPU memory held back from KV (as kvstack size). Default: 0.1.");
  cmd->add_option("--profile", a->profile,
                  "Use the costs measured by `kvstack bench engine --profile FILE` instead of a GPU roofline.")
      ->type_name("FILE");
  cmd->add_option("--profile-model", a->profile_model, "With --profile: the cost model whose model_path contains this.");
  cmd->add_flag("--review", a->review,
                "Answer the six questions: context percentiles, HBM split at peak, pin candidates, policies "
                "compared, durable vs one-off hits, TTFT when the hit rate halves.");
  cmd->add_option("--sweep", a->sweep, "capacity: hit rate vs capacity on a log axis, one line per policy.");
  cmd->add_option("--sweep-points", a->sweep_points, "Capacities in the sweep. Default: 8.");
  cmd->add_option("--policies", a->policies, "Policies for --sweep and --review. Default: lru,priority-lru,lfu.");
  cmd->add_option("--html", a->html, "Also write a self-contained HTML report with SVG charts.")->type_name("FILE");
  cmd->add_option("--preset-dir", a->preset_dir, "Folder of model and GPU presets.")->type_name("DIR");
  cmd->footer(kFooter);
  return [a]() { return RunSim(*a); };
}

}  // namespace kvstack::cli
