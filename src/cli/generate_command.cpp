// kvstack generate: run one prompt through the engine and report what the
// cache did (time to first token, throughput, prefix hits, blocks used).
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "kvstack/engine.h"
#include "kvstack/sizing.h"
#include "kvstack/kernels.h"
#include "kvstack/tokenizer.h"

namespace kvstack::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt = "Once upon a time";
  int n = 64;
  int runs = 1;
  int threads = 0;
  kernels::MatMulPrecision matmul = EngineOptions{}.matmul_precision;
  int block_size = 16;
  KvTypeArgs kv_type;
  std::string kv_memory = "64MiB";
  float temperature = 0;
  int top_k = 0;
  float top_p = 1;
  float min_p = 0;
  float repeat_penalty = 1;
  uint64_t seed = 0;
  bool no_bos = false;
  std::vector<std::string> stop;
};


int RunGenerate(const GenerateArgs& a) {
  EngineOptions o;
  o.model_path = a.model;
  o.threads = a.threads;
  o.matmul_precision = a.matmul;
  o.block_size = a.block_size;
  if (Status st = ApplyKvTypeOptions(a.kv_type, &o); !st.ok()) {
    std::fprintf(stderr, "kvstack generate: %s\n", st.message().c_str());
    return 2;
  }
  auto mem = ParseKvMemory(a.kv_memory);
  if (!mem.ok()) {
    std::fprintf(stderr, "kvstack generate: %s\n", mem.status().message().c_str());
    return 2;
  }
  o.kv_memory_bytes = *mem;
  auto engine = Engine::Create(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "kvstack generate: %s\n", engine.status().ToString().c_str());
    return engine.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  Engine& e = **engine;
  const EngineInfo& info = e.info();
  std::fprintf(stderr, "model: %s (%s, %d layers, %d heads / %d KV heads, head dim %d, vocab %d), %d threads, %s kernels, %s matmul\n",
               a.model.c_str(), info.architecture.c_str(), info.n_layer, info.n_head, info.n_head_kv, info.head_dim,
               info.n_vocab, info.threads, info.cpu_level.c_str(), std::string(MatMulPrecisionName(info.matmul_precision)).c_str());

  Tokenizer::EncodeOptions enc;
  enc.add_bos = !a.no_bos && e.tokenizer().add_bos();
  const std::vector<Token> prompt = e.tokenizer().Encode(a.prompt, enc);
  for (int run = 0; run < a.runs; ++run) {
    GenerationRequest r;
    r.prompt = prompt;
    r.sampling.temperature = a.temperature;
    r.sampling.top_k = a.top_k;
    r.sampling.top_p = a.top_p;
    r.sampling.min_p = a.min_p;
    r.sampling.repetition_penalty = a.repeat_penalty;
    r.sampling.seed = a.seed;
    r.sampling.max_tokens = a.n;
    r.sampling.stop_strings = a.stop;
    auto id = e.Submit(std::move(r));
    if (!id.ok()) {
      std::fprintf(stderr, "kvstack generate: %s\n", id.status().ToString().c_str());
      return 2;
    }
    if (run == 0) std::fputs(a.prompt.c_str(), stdout);
    RequestMetrics metrics;
    std::vector<GenerationEvent> events;
    while (e.HasWork()) {
      events.clear();
      Status s = e.Step(&events);
      if (!s.ok()) {
        std::fprintf(stderr, "\nkvstack generate: %s\n", s.ToString().c_str());
        return 1;
      }
      for (const GenerationEvent& ev : events) {
        if (run == 0) std::fputs(ev.text.c_str(), stdout);
        if (ev.finish != FinishReason::kNone) metrics = ev.metrics;
      }
      std::fflush(stdout);
    }
    if (run == 0) std::fputs("\n", stdout);
    const double ttft_ms = (metrics.first_token_at - metrics.queued_at) / 1e3;
    const double prefill_s = (metrics.first_token_at - metrics.queued_at) / 1e6;
    const double decode_s = (metrics.finished_at - metrics.first_token_at) / 1e6;
    const int computed = metrics.prompt_tokens - metrics.cached_tokens;
    const CacheMetrics cm = e.cache().Metrics();
    std::fprintf(stderr,
                 "run %d: TTFT %.2f ms | prefill %d tokens (%d from the prefix cache), %.0f tok/s | decode %d tokens, "
                 "%.0f tok/s | KV blocks: %d in use, %d cached, %d free of %d (block %d tokens, %s)\n",
                 run + 1, ttft_ms, metrics.prompt_tokens, metrics.cached_tokens,
                 prefill_s > 0 ? computed / prefill_s : 0.0, metrics.generated_tokens,
                 decode_s > 0 ? (metrics.generated_tokens - 1) / decode_s : 0.0, cm.in_use_blocks, cm.cached_blocks,
                 cm.free_blocks, cm.total_blocks, cm.block_size, KvTypesName(o).c_str());
  }
  return 0;
}

}  // namespace

CommandRunner AddGenerateCommand(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Run one prompt through the CPU engine over the paged KV cache and print the completion, then time to first "
      "token, prefill and decode tokens per second, prefix-cache hit tokens and KV blocks used.");
  cmd->add_option("-m,--model", args->model, "GGUF model file (llama or qwen2; F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("-p,--prompt", args->prompt, "Prompt text")->capture_default_str();
  cmd->add_option("-n,--n-predict", args->n, "Tokens to generate at most")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--runs", args->runs,
                  "Run the same prompt this many times; runs after the first show the prefix cache at work (lower TTFT)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("-t,--threads", args->threads, "Kernel threads (0: one per CPU)")->capture_default_str()->check(CLI::Range(0, 1024));
  cmd->add_option("--block-size", args->block_size, "Tokens per KV block: a power of two from 1 to 512")->capture_default_str();
  AddKvTypeOptions(cmd, &args->kv_type);
  AddExactMatmulFlag(cmd, &args->matmul);
  AddCpuLevelOption(cmd);
  cmd->add_option("--kv-memory", args->kv_memory, "KV cache size (B, KiB, MiB, GiB)")->capture_default_str();
  cmd->add_option("--temperature", args->temperature, "Sampling temperature; 0 is greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", args->top_k, "Keep the k most likely tokens (0: off)")->capture_default_str()->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", args->top_p, "Nucleus sampling: smallest set with this total probability (1: off)")->capture_default_str();
  cmd->add_option("--min-p", args->min_p, "Drop tokens below this fraction of the top probability (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", args->repeat_penalty, "Repetition penalty over the last 64 tokens (1: off)")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Random seed: the same seed gives the same tokens")->capture_default_str();
  cmd->add_option("--stop", args->stop, "Stop when this text appears (repeatable); the stop text is not printed");
  cmd->add_flag("--no-bos", args->no_bos, "Do not prepend the BOS token even if the model asks for it");
  return [args] { return RunGenerate(*args); };
}

}  // namespace kvstack::cli
