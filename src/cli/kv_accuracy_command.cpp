// `kvstack bench kv-accuracy`: teacher-forced top-1 agreement and KL of
// quantized KV types against f32 KV (engine/kv_accuracy.h), as a table.
#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "engine/kv_accuracy.h"

namespace kvstack::cli {
namespace {

struct KvAccuracyArgs {
  std::vector<std::string> models;
  std::string types = "int8,fp8-e4m3,fp8-e5m2,int4,int8/int4";
  int64_t positions = 20000;
  int32_t context = 0;
  int32_t block_size = 16;
  uint64_t seed = 1;
  int threads = 1;
  bool markdown = false;
};

// "int8" (K and V), "int8/int4" (K int8, V int4), and either followed by
// "@int8": blocks come back through tiers storing int8 (--tier-kv-type).
Result<engine::KvCandidate> ParseCandidate(const std::string& item) {
  engine::KvCandidate c;
  const size_t at = item.find('@');
  const std::string text = item.substr(0, at);
  if (at != std::string::npos) {
    auto t = ParseKvDType(item.substr(at + 1));
    if (!t.ok()) return InvalidArgument("--kv-types: " + t.status().message());
    c.via_tier = *t;
  }
  const size_t slash = text.find('/');
  auto k = ParseKvDType(text.substr(0, slash));
  if (!k.ok()) return InvalidArgument("--kv-types: " + k.status().message());
  c.k = c.v = *k;
  if (slash == std::string::npos) return c;
  auto v = ParseKvDType(text.substr(slash + 1));
  if (!v.ok()) return InvalidArgument("--kv-types: " + v.status().message());
  c.v = *v;
  return c;
}

int Run(const KvAccuracyArgs& a) {
  engine::KvAccuracyOptions o;
  std::stringstream list(a.types);
  for (std::string item; std::getline(list, item, ',');) {
    auto p = ParseCandidate(item);
    if (!p.ok()) return ReportFailure("bench kv-accuracy", p.status());
    o.candidates.push_back(*p);
  }
  o.positions = a.positions;
  o.context = a.context;
  o.block_size = a.block_size;
  o.seed = a.seed;
  o.threads = a.threads;
  const char* sep = a.markdown ? " | " : "  ";
  if (a.markdown) std::printf("| model | context x windows | KV (K/V) | top-1 agreement | mean KL (nats) | p99 KL | max KL |\n|---|---|---|---|---|---|---|\n");
  for (const std::string& m : a.models) {
    o.model_path = m;
    auto rep = engine::MeasureKvAccuracy(o);
    if (!rep.ok()) return ReportFailure("bench kv-accuracy", rep.status());
    for (const engine::KvAccuracy& r : rep->results) {
      std::string kv = r.k_type == r.v_type ? std::string(KvDTypeName(r.k_type))
                                            : fmt::format("{}/{}", KvDTypeName(r.k_type), KvDTypeName(r.v_type));
      if (r.via_tier) kv += fmt::format(" via {} tiers", KvDTypeName(*r.via_tier));
      std::printf("%s%s%s%d x %d%s%s%s%.4f%s%.2e%s%.2e%s%.2e%s\n", a.markdown ? "| " : "", m.c_str(), sep, rep->context,
                  rep->windows, sep, kv.c_str(), sep, r.top1_agreement, sep, r.mean_kl, sep, r.p99_kl, sep, r.max_kl,
                  a.markdown ? " |" : "");
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

std::function<int()> AddKvAccuracyBench(CLI::App* bench) {
  auto a = std::make_shared<KvAccuracyArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "kv-accuracy",
      "Accuracy of quantized KV types against f32 KV, teacher-forced over text sampled from the model: top-1 "
      "agreement and KL divergence of the next-token distribution at every position.");
  cmd->add_option("-m,--model", a->models, "GGUF model; repeat for several")->required()->take_all();
  cmd->add_option("--kv-types", a->types, "Comma-separated K/V types to compare ('int8' or 'int8/int4' for K/V; 'f16@int8': f16 KV whose full blocks "
                  "come back from tiers storing int8, as --tier-kv-type int8 does)")
      ->capture_default_str();
  cmd->add_option("--positions", a->positions, "Positions compared per model (whole windows)")->capture_default_str();
  cmd->add_option("--context", a->context, "Tokens per window; 0: the model's training context")->capture_default_str();
  cmd->add_option("--block-size", a->block_size, "Tokens per KV block")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of the sampled text")->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "Kernel threads")->capture_default_str();
  cmd->add_flag("--markdown", a->markdown, "Print a Markdown table (for BENCHMARKS.md)");
  return [a, cmd]() -> int { return cmd->parsed() ? Run(*a) : -1; };
}

}  // namespace kvstack::cli
