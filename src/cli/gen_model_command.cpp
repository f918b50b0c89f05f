// `kvstack gen-model`: writes a synthetic Llama-family GGUF model of any shape
// and weight type (tests, benchmarks, the demo model). A preset gives the
// shape; explicit options override it field by field.
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/commands.h"
#include "kvstack/model_gen.h"

namespace kvstack::cli {
namespace {

struct GenModelArgs {
  std::string out;
  std::string preset = "tiny";
  std::string arch;
  std::string layers, embd, heads, kv_heads, head_dim, ff, ctx;
  std::string rope_base, rms_eps, rope_scaling;
  std::string type = "f32";
  std::string seed;
  std::string name;
  bool tied = false;
  bool untied = false;
  bool quiet = false;
};

constexpr char kFooter[] = R"(
The model: llama.cpp's tensor names and shapes (token_embd, blk.N.attn_q/k/v/
output, ffn_gate/up/down, the norms, output; qwen2 adds q/k/v biases), the
{arch}.* keys, and a byte-level SentencePiece-style vocabulary of about 800
tokens (<unk> <s> </s>, the 256 byte tokens, English pieces, and the ChatML
tokens <|im_start|> <|im_end|> with a ChatML chat template). Weights are
pseudo-random, scaled by 1/sqrt(fan_in), and depend only on --seed and the
tensor's name: the same options always write the same bytes. Norms and biases
are F32 whatever --type says. Quantized types need every weight row to be whole
blocks: --embd, --ff and --heads x --head-dim multiples of 32 (q8_0, q4_0) or
256 (q4_k, q6_k). The file is written to a temporary name and renamed, so
--out never holds a partial model. Exit codes: 0 written, 1 the write failed,
2 bad options.

Presets:
  tiny                 2 layers, embd 64, 4 heads (2 KV), ff 128, ctx 512
  stories              6 layers, embd 288, 6 heads, ff 768, ctx 256 (stories15M)
  llama-3.2-1b-shape   16 layers, embd 2048, 32 heads (8 KV), head dim 64,
                       ff 8192, tied, rope base 500000 with Llama 3 scaling
                       (factor 32, low 1, high 4, original 8192); ctx 4096
                       unless --ctx asks for more (the real model: 131072)

Examples:
  kvstack gen-model --out tiny.gguf
  kvstack gen-model --out q8.gguf --preset stories --type q8_0 --seed 7
  kvstack gen-model --out qwen.gguf --arch qwen2 --embd 256 --heads 8 --kv-heads 2 --ff 512 --type q4_k
  kvstack gen-model --out 1b.gguf --preset llama-3.2-1b-shape --type q4_0)";

int Fail(const Status& status) { return ReportFailure("gen-model", status); }

template <typename T>
Result<T> ParseNumber(std::string_view flag, const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) {
    return InvalidArgument(fmt::format("{} \"{}\": expected a number", flag, text));
  }
  return value;
}

// Overrides `field` when the option was given.
template <typename T>
Status Override(std::string_view flag, const std::string& text, T& field) {
  if (text.empty()) return Status::Ok();
  auto value = ParseNumber<T>(flag, text);
  if (!value.ok()) return value.status();
  field = *value;
  return Status::Ok();
}

Result<GgmlType> ParseType(const std::string& text) {
  static constexpr std::pair<std::string_view, GgmlType> kTypes[] = {
      {"f32", GgmlType::kF32},   {"f16", GgmlType::kF16},   {"bf16", GgmlType::kBF16}, {"q8_0", GgmlType::kQ8_0},
      {"q4_0", GgmlType::kQ4_0}, {"q4_k", GgmlType::kQ4_K}, {"q6_k", GgmlType::kQ6_K},
  };
  std::string lower;
  for (char c : text) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (const auto& [name, type] : kTypes) {
    if (lower == name) return type;
  }
  return InvalidArgument(fmt::format("--type \"{}\": must be f32, f16, bf16, q8_0, q4_0, q4_k or q6_k", text));
}

Result<GenModelSpec> SpecFromArgs(const GenModelArgs& a) {
  auto preset = GenModelPreset(a.preset);
  if (!preset.ok()) return InvalidArgument(fmt::format("--preset: {}", preset.status().message()));
  GenModelSpec spec = *preset;
  if (!a.arch.empty()) spec.architecture = a.arch;
  KVSTACK_RETURN_IF_ERROR(Override("--layers", a.layers, spec.n_layer));
  KVSTACK_RETURN_IF_ERROR(Override("--embd", a.embd, spec.n_embd));
  KVSTACK_RETURN_IF_ERROR(Override("--heads", a.heads, spec.n_head));
  KVSTACK_RETURN_IF_ERROR(Override("--kv-heads", a.kv_heads, spec.n_head_kv));
  KVSTACK_RETURN_IF_ERROR(Override("--head-dim", a.head_dim, spec.head_dim));
  KVSTACK_RETURN_IF_ERROR(Override("--ff", a.ff, spec.n_ff));
  KVSTACK_RETURN_IF_ERROR(Override("--ctx", a.ctx, spec.n_ctx));
  KVSTACK_RETURN_IF_ERROR(Override("--rope-base", a.rope_base, spec.rope_freq_base));
  KVSTACK_RETURN_IF_ERROR(Override("--rms-eps", a.rms_eps, spec.rms_eps));
  KVSTACK_RETURN_IF_ERROR(Override("--seed", a.seed, spec.seed));
  if (a.rope_scaling == "none") {
    spec.rope_scaling.reset();
  } else if (a.rope_scaling == "llama3") {
    spec.rope_scaling = Llama3RopeScaling{};
  } else if (!a.rope_scaling.empty()) {
    return InvalidArgument(fmt::format("--rope-scaling \"{}\": must be none or llama3", a.rope_scaling));
  }
  if (a.tied && a.untied) return InvalidArgument("--tied and --untied: give at most one");
  if (a.tied) spec.tied_embeddings = true;
  if (a.untied) spec.tied_embeddings = false;
  auto type = ParseType(a.type);
  if (!type.ok()) return type.status();
  spec.weight_type = *type;
  spec.name = a.name;
  KVSTACK_RETURN_IF_ERROR(spec.Validate());
  return spec;
}

std::string Bytes(uint64_t n) {
  if (n >= (1ull << 30)) return fmt::format("{:.2f} GiB", static_cast<double>(n) / (1ull << 30));
  if (n >= (1ull << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1ull << 20));
  return fmt::format("{:.1f} KiB", static_cast<double>(n) / 1024);
}

// Progress on stderr for models big enough to take a while: a line that
// rewrites itself on a terminal, one line per tenth otherwise (logs).
GenModelProgressFn MakeProgress(bool quiet) {
  if (quiet) return {};
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  auto last_tenth = std::make_shared<int>(0);
  return [tty, last_tenth](const GenModelProgress& p) {
    constexpr uint64_t kQuietBelow = 64ull << 20;
    if (p.bytes_total < kQuietBelow) return;
    const int tenth = static_cast<int>(p.bytes_done * 10 / p.bytes_total);
    const bool done = p.tensors_done == p.tensors_total;
    if (!tty && tenth == *last_tenth && !done) return;
    *last_tenth = tenth;
    std::fprintf(stderr, "%sgen-model: %zu/%zu tensors, %s of %s (%d%%)%s", tty ? "\r" : "", p.tensors_done,
                 p.tensors_total, Bytes(p.bytes_done).c_str(), Bytes(p.bytes_total).c_str(),
                 static_cast<int>(p.bytes_done * 100 / p.bytes_total), tty && !done ? "" : "\n");
    std::fflush(stderr);
  };
}

int RunGenModel(const GenModelArgs& a) {
  if (a.out.empty()) return Fail(InvalidArgument("--out is required: the path of the .gguf file to write"));
  auto spec = SpecFromArgs(a);
  if (!spec.ok()) return Fail(spec.status());
  auto writer = BuildGenModel(*spec, MakeProgress(a.quiet));
  if (!writer.ok()) return Fail(writer.status());
  const uint64_t size = writer->FileSize();
  Status written = writer->WriteFile(a.out);
  if (!written.ok()) return Fail(written);

  const GenModelSpec& s = *spec;
  std::printf(
      "wrote %s: %s, %d layers, embd %d, %d heads (%d KV), head dim %d, ff %d, ctx %d, vocab %zu, %s%s, "
      "seed %llu, %s\n",
      a.out.c_str(), s.architecture.c_str(), s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.HeadDim(), s.n_ff,
      s.n_ctx, GetGenModelVocab().tokens.size(), std::string(GetGgmlTypeTraits(s.weight_type).name).c_str(),
      s.tied_embeddings ? ", tied" : "", static_cast<unsigned long long>(s.seed), Bytes(size).c_str());
  return 0;
}

}  // namespace

CommandRunner AddGenModelCommand(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "gen-model",
      "Write a synthetic Llama-family GGUF model of any shape and weight type, with deterministic random "
      "weights and a small byte-level vocabulary: for tests, benchmarks and demos.");
  auto a = std::make_shared<GenModelArgs>();
  cmd->add_option("-o,--out", a->out, "The .gguf file to write (replaced atomically if it exists). Required.")
      ->type_name("PATH");
  cmd->add_option("--preset", a->preset,
                  fmt::format("The starting shape: {} (see below). The options that follow override it. "
                              "Default: tiny.",
                              fmt::join(GenModelPresetNames(), ", ")))
      ->type_name("NAME");
  cmd->add_option("--arch", a->arch,
                  "Architecture: llama, or qwen2 (adds attention q/k/v biases; no Llama 3 rope scaling). "
                  "Default: llama.")
      ->type_name("ARCH");
  cmd->add_option("--layers", a->layers, "Transformer blocks ({arch}.block_count).")->type_name("N");
  cmd->add_option("--embd", a->embd, "Hidden size ({arch}.embedding_length).")->type_name("N");
  cmd->add_option("--heads", a->heads, "Query heads ({arch}.attention.head_count).")->type_name("N");
  cmd->add_option("--kv-heads", a->kv_heads,
                  "Key/value heads (grouped-query attention); must divide --heads. Equal to --heads: "
                  "multi-head attention.")
      ->type_name("N");
  cmd->add_option("--head-dim", a->head_dim,
                  "Dimension of each head; even. Default: --embd / --heads (which must then divide). When it "
                  "differs, attention.key_length/value_length are written.")
      ->type_name("N");
  cmd->add_option("--ff", a->ff, "Feed-forward (SwiGLU) width ({arch}.feed_forward_length).")->type_name("N");
  cmd->add_option("--ctx", a->ctx,
                  "Training context length ({arch}.context_length): the most tokens a sequence may hold.")
      ->type_name("TOKENS");
  cmd->add_option("--rope-base", a->rope_base, "RoPE frequency base ({arch}.rope.freq_base). Default: 10000.")
      ->type_name("F");
  cmd->add_option("--rms-eps", a->rms_eps, "RMSNorm epsilon. Default: 1e-5.")->type_name("F");
  cmd->add_option("--rope-scaling", a->rope_scaling,
                  "none, or llama3: Llama 3 frequency scaling (factor 32, low 1, high 4, original context "
                  "8192), stored as the rope_freqs.weight tensor as llama.cpp does. Default: the preset's.")
      ->type_name("KIND");
  cmd->add_option("-t,--type", a->type,
                  "Weight type of every matrix (token_embd and output too): f32, f16, bf16, q8_0, q4_0, q4_k "
                  "or q6_k. Default: f32.")
      ->type_name("TYPE");
  cmd->add_flag("--tied", a->tied, "Tie the output projection to token_embd (no output.weight).");
  cmd->add_flag("--untied", a->untied, "Write a separate output.weight (undoes a preset's --tied).");
  cmd->add_option("--seed", a->seed, "Seed of the weights (an unsigned 64-bit integer). Default: 0.")
      ->type_name("N");
  cmd->add_option("--name", a->name, "general.name. Default: built from the shape, type and seed.")
      ->type_name("TEXT");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress lines on stderr (shown only for models over 64 MiB).");
  cmd->footer(kFooter);
  return [a]() { return RunGenModel(*a); };
}

}  // namespace kvstack::cli
