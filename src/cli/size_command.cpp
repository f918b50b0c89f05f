// `kvstack size`: the KV-cache sizing calculator. Parses the options, hands
// them to the sizing component and prints its report as a table or as JSON.
#include <charconv>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "kvstack/sizing.h"

namespace kvstack::cli {
namespace {

namespace sz = ::kvstack::sizing;

struct SizeArgs {
  std::string model;
  std::string gpu = "H100-80GB";
  std::string gpus = "1";
  std::string weights = "bf16";
  std::string kv = "bf16";
  std::string context;  // empty: the model's maximum
  std::string sequences = "1";
  std::string workspace = "0.1";
  std::string preset_dir = KVSTACK_PRESET_DIR;
  bool json = false;
  bool list = false;
};

constexpr char kFooter[] = R"(
How the numbers are computed (all exact, in bytes):
  KV per token      GQA/MHA: layers x 2 (K and V) x KV heads x head dim x KV bytes
                    MLA (DeepSeek): layers x (kv_lora_rank + qk_rope_head_dim) x KV bytes
  KV footprint      KV per token x context tokens x sequences
  weights           parameters x bytes per weight (every expert of an MoE model)
  workspace         --workspace of each GPU's memory
  left for KV       GPU memory - weights / GPUs - workspace
  tokens that fit   left for KV / KV per token on one GPU
  sequences         tokens that fit / context tokens
With --gpus N (tensor parallelism) each GPU holds 1/N of the weights and of the
KV heads (a KV head is replicated when N exceeds the KV heads); the MLA latent
is not split. GPU memory is what nvidia-smi reports. Precision bytes: f32 4,
bf16 2, fp16 2, fp8 1, int8 1, int4 0.515625 (4 bits plus a 16-bit scale per
128 values). Exit codes: 0 success, 2 bad input.

Examples:
  kvstack size --model Llama-3.1-8B --gpu H100-80GB --context 8k --sequences 64
  kvstack size --model DeepSeek-V3 --gpu H200-141GB --gpus 8 --weights fp8 --kv fp8
  kvstack size --model path/to/config.json --gpu L40S --json
  kvstack size --list)";

// Input errors exit 2; only a machine problem (a folder that cannot be read) is 1.
int Fail(const Status& status) {
  std::fprintf(stderr, "kvstack size: %s\n", status.message().c_str());
  const bool machine = status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kInternal;
  return machine ? 1 : 2;
}

Result<int64_t> ParsePositive(const std::string& flag, const std::string& text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || value < 1) {
    return InvalidArgument(flag + " \"" + text + "\": expected a positive integer");
  }
  return value;
}

std::string PrecisionBytesText(sz::Precision p) {
  const sz::BytesPerValue b = sz::PrecisionBytes(p);
  if (b.denominator == 1) return fmt::format("{} B", b.numerator);
  return fmt::format("{}/{} B", b.numerator, b.denominator);
}

void Row(std::string_view label, std::string_view value, std::string_view detail = "") {
  std::string line = fmt::format("  {:<20}{:<14}{}", label, value, detail);
  line.erase(line.find_last_not_of(' ') + 1);
  std::printf("%s\n", line.c_str());
}

void PrintList(const sz::PresetCatalog& catalog) {
  std::printf("Model presets (%s/models):\n", catalog.dir().string().c_str());
  std::printf("%s", fmt::format("  {:<16}{:<13}{:>5}{:>7}{:>9}{:>6}{:>18}{:>10}{:>15}\n", "name", "architecture",
                                "attn", "layers", "KV heads", "dim", "parameters", "context", "KV/token bf16")
                        .c_str());
  for (const sz::ModelSpec& m : catalog.models()) {
    const bool mla = m.attention == sz::AttentionKind::kMultiLatent;
    std::printf("%s", fmt::format("  {:<16}{:<13}{:>5}{:>7}{:>9}{:>6}{:>18}{:>10}{:>15}\n", m.name, m.architecture,
                                  mla ? "MLA" : "GQA", m.layers, mla ? std::string("-") : std::to_string(m.kv_heads),
                                  m.head_dim, sz::FormatCount(m.parameters), sz::FormatCount(m.max_context),
                                  sz::FormatCount(sz::BytesForValues(sz::KvValuesPerToken(m), sz::Precision::kBf16)))
                          .c_str());
  }
  std::printf("\nGPU presets (%s/gpus):\n", catalog.dir().string().c_str());
  std::printf("%s", fmt::format("  {:<12}{:>11}{:>12}{:>12}{:>12}  {}\n", "name", "memory", "bandwidth", "bf16 dense",
                                "fp8 dense", "interconnect")
                        .c_str());
  for (const sz::GpuSpec& g : catalog.gpus()) {
    std::printf("%s", fmt::format("  {:<12}{:>11}{:>12}{:>12}{:>12}  {} {:.0f} GB/s\n", g.name,
                                  sz::FormatBytes(g.hbm_bytes), fmt::format("{:.2f} TB/s", g.memory_bandwidth / 1e12),
                                  fmt::format("{:.0f} TF", g.bf16_flops / 1e12),
                                  g.fp8_flops ? fmt::format("{:.0f} TF", *g.fp8_flops / 1e12) : std::string("-"),
                                  g.interconnect, g.interconnect_bandwidth / 1e9)
                          .c_str());
  }
}

std::string KvFormula(const sz::SizingReport& r) {
  const sz::ModelSpec& m = r.model;
  const std::string bytes = PrecisionBytesText(r.options.kv);
  if (m.attention == sz::AttentionKind::kMultiLatent) {
    return fmt::format("{} layers x ({} latent + {} rope) x {}", m.layers, m.mla.kv_lora_rank, m.mla.qk_rope_head_dim,
                       bytes);
  }
  return fmt::format("{} layers x 2 (K, V) x {} KV heads x {} dims x {}", m.layers, m.kv_heads, m.head_dim, bytes);
}

void PrintReport(const sz::SizingReport& r) {
  const sz::SizingOptions& o = r.options;
  std::printf("%s on %lld x %s: weights %s, KV %s, context %s tokens, %lld sequence%s\n", r.model.name.c_str(),
              static_cast<long long>(o.gpus), r.gpu.name.c_str(), std::string(sz::PrecisionName(o.weights)).c_str(),
              std::string(sz::PrecisionName(o.kv)).c_str(), sz::FormatCount(o.context_tokens).c_str(),
              static_cast<long long>(o.sequences), o.sequences == 1 ? "" : "s");

  std::printf("\nKV cache\n");
  Row("per token", sz::FormatCount(r.kv_bytes_per_token) + " B", KvFormula(r));
  if (o.gpus > 1) {
    const std::string split = r.kv_heads_per_gpu > 0 ? fmt::format("{} KV heads per GPU", r.kv_heads_per_gpu)
                                                     : std::string("latent replicated on every GPU");
    Row("per token per GPU", sz::FormatCount(r.kv_bytes_per_token_per_gpu) + " B", split);
  }
  Row("per sequence", sz::FormatBytes(r.kv_bytes_per_sequence), sz::FormatCount(r.tokens_per_sequence) + " tokens");
  Row("footprint", sz::FormatBytes(r.requested_kv_bytes),
      fmt::format("{} sequence{} x {} tokens", o.sequences, o.sequences == 1 ? "" : "s",
                  sz::FormatCount(r.tokens_per_sequence)));

  std::printf("\nMemory per GPU\n");
  Row("GPU memory", sz::FormatBytes(r.hbm_bytes_per_gpu), sz::FormatCount(r.hbm_bytes_per_gpu) + " B");
  Row("weights", sz::FormatBytes(r.weight_bytes_per_gpu),
      fmt::format("{} parameters x {}{}", sz::FormatCount(r.model.parameters), PrecisionBytesText(o.weights),
                  o.gpus > 1 ? fmt::format(" / {} GPUs", o.gpus) : std::string()));
  Row("workspace", sz::FormatBytes(r.workspace_bytes_per_gpu),
      o.workspace.is_fraction() ? fmt::format("{:g}% of GPU memory", o.workspace.fraction() * 100)
                                : std::string("fixed"));
  if (r.weights_fit) {
    Row("left for KV", sz::FormatBytes(r.kv_budget_bytes_per_gpu), sz::FormatCount(r.kv_budget_bytes_per_gpu) + " B");
  } else {
    Row("left for KV", "none", "short by " + sz::FormatBytes(r.shortfall_bytes_per_gpu));
  }

  std::printf("\nCapacity\n");
  Row("tokens that fit", sz::FormatCount(r.tokens_that_fit), "in the KV left, across the GPU group");
  Row("sequences", sz::FormatCount(r.sequences_that_fit),
      "of " + sz::FormatCount(r.tokens_per_sequence) + " tokens at once");
  std::string verdict = r.requested_fits ? "fits" : "does not fit";
  if (r.weights_fit && r.kv_budget_bytes_per_gpu > 0) {
    verdict += fmt::format(" ({:.1f}% of the KV left)",
                           100.0 * static_cast<double>(r.requested_kv_bytes_per_gpu) /
                               static_cast<double>(r.kv_budget_bytes_per_gpu));
  }
  Row("your footprint", verdict);
  for (const std::string& note : r.notes) std::printf("\nnote: %s", note.c_str());
  if (!r.notes.empty()) std::printf("\n");
}

int RunSize(const SizeArgs& a) {
  auto catalog = sz::PresetCatalog::Load(a.preset_dir);
  if (!catalog.ok()) return Fail(catalog.status());
  if (a.list) {
    if (a.json) std::printf("%s\n", sz::CatalogToJson(*catalog).c_str());
    else PrintList(*catalog);
    return 0;
  }
  if (a.model.empty()) {
    return Fail(InvalidArgument("--model is required: a preset name (see --list), a config.json or a .gguf"));
  }
  auto model = sz::ResolveModel(*catalog, a.model);
  if (!model.ok()) return Fail(model.status());
  auto gpu = sz::ResolveGpu(*catalog, a.gpu);
  if (!gpu.ok()) return Fail(gpu.status());

  sz::SizingOptions options;
  auto gpus = ParsePositive("--gpus", a.gpus);
  if (!gpus.ok()) return Fail(gpus.status());
  options.gpus = *gpus;
  auto weights = sz::ParsePrecision(a.weights);
  if (!weights.ok()) return Fail(InvalidArgument("--weights: " + weights.status().message()));
  options.weights = *weights;
  auto kv = sz::ParsePrecision(a.kv);
  if (!kv.ok()) return Fail(InvalidArgument("--kv: " + kv.status().message()));
  options.kv = *kv;
  options.context_tokens = model->max_context;
  if (!a.context.empty()) {
    auto context = sz::ParseTokenCount(a.context);
    if (!context.ok()) return Fail(InvalidArgument("--context: " + context.status().message()));
    options.context_tokens = *context;
  }
  auto sequences = ParsePositive("--sequences", a.sequences);
  if (!sequences.ok()) return Fail(sequences.status());
  options.sequences = *sequences;
  auto workspace = sz::ParseWorkspace(a.workspace);
  if (!workspace.ok()) return Fail(workspace.status());
  options.workspace = *workspace;

  auto report = sz::ComputeSizing(*model, *gpu, options);
  if (!report.ok()) return Fail(report.status());
  if (a.json) std::printf("%s\n", sz::SizingReportToJson(*report).c_str());
  else PrintReport(*report);
  return 0;
}

}  // namespace

CommandRunner AddSizeCommand(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "size",
      "KV-cache sizing calculator: bytes of KV per token, GPU memory left for KV after the weights and a "
      "workspace reserve, the tokens that fit, and how many sequences of a given context run at once.");
  auto args = std::make_shared<SizeArgs>();
  cmd->add_option("-m,--model", args->model,
                  "Model: a preset name (see --list; case does not matter), a preset .json, a Hugging Face "
                  "config.json or its folder, or a .gguf file. Required unless --list.")
      ->type_name("NAME|PATH");
  cmd->add_option("-g,--gpu", args->gpu, "GPU: a preset name (see --list) or a GPU preset .json. Default: H100-80GB.")
      ->type_name("NAME|PATH");
  cmd->add_option("--gpus,--tp", args->gpus,
                  "GPUs in the tensor-parallel group, each holding 1/N of the weights and of the KV heads. "
                  "Must divide the attention heads. Default: 1.")
      ->type_name("N");
  cmd->add_option("--weights", args->weights,
                  "Weight precision: f32, bf16, fp16, fp8, int8 or int4 (int4 = 0.515625 bytes: 4 bits plus a "
                  "16-bit scale per 128 weights). Weight bytes = parameters x bytes per weight. Default: bf16.")
      ->type_name("PREC");
  cmd->add_option("--kv", args->kv,
                  "KV-cache precision: f32, bf16, fp16, fp8, int8 or int4 (bytes as for --weights). Default: bf16.")
      ->type_name("PREC");
  cmd->add_option("--context", args->context,
                  "Tokens per sequence (prompt plus output): 8192, 32k, 128k (k = 1024 tokens, M = 1024k). "
                  "Default: the model's maximum context.")
      ->type_name("TOKENS");
  cmd->add_option("--sequences", args->sequences,
                  "Sequences held at once, for the footprint line (KV per token x context x sequences) and its "
                  "fit check. Default: 1.")
      ->type_name("N");
  cmd->add_option("--workspace", args->workspace,
                  "GPU memory held back from KV on each GPU for activations, CUDA graphs and fragmentation: a "
                  "fraction (0.1 or 10%) or a size (4GiB, 4GB, 512MiB; K/M/G/T alone are binary). Default: 0.1.")
      ->type_name("FRACTION|SIZE");
  cmd->add_option("--preset-dir", args->preset_dir,
                  "Folder holding models/*.json and gpus/*.json. Default: " + std::string(KVSTACK_PRESET_DIR) + ".")
      ->type_name("DIR");
  cmd->add_flag("--json", args->json, "Print the report (or the --list) as JSON instead of a table.");
  cmd->add_flag("--list", args->list, "List the model and GPU presets and exit.");
  cmd->footer(kFooter);
  return [args]() { return RunSize(*args); };
}

}  // namespace kvstack::cli
