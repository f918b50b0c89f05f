// `kvstack bench engine` end to end: a tiny model written by the real
// `kvstack gen-model`, one or two sequences of a few tokens, the table and the
// --profile JSON checked field by field, and the exit codes of bad input. No
// timing is asserted beyond "positive": speed lives in BENCHMARKS.md.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/run_kvstack.h"
#include "modelgen/temp_dir.h"

namespace kvstack {
namespace {

using ::testing::HasSubstr;

using test_support::CommandRun;
using test_support::RunKvstack;

// A small copy buffer keeps the test fast; the figures are not checked.
constexpr char kQuick[] = " --threads 1 --prompt-tokens 8 --gen-tokens 4 --repeats 1 --copy-mib 4";

// The JSON in the file at `path`, or a discarded value when it is not JSON;
// its text in *text either way, for a failure message.
nlohmann::json ReadJson(const std::string& path, std::string* text) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  *text = buffer.str();
  return nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
}

class BenchEngineCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.File("tiny.gguf");
    const CommandRun gen = RunKvstack("gen-model --quiet --out " + model_);
    ASSERT_EQ(gen.exit_code, 0) << gen.output;
  }
  TempDir dir_;
  std::string model_;
};

TEST_F(BenchEngineCommand, HelpDescribesTheMethod) {
  const CommandRun run = RunKvstack("bench engine --help");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  for (const char* text : {"--model", "--threads", "--sequences", "--prompt-tokens", "--gen-tokens", "--kv-type",
                           "--block-size", "--batch-tokens", "--repeats", "--profile", "--markdown", "prefill tok/s",
                           "floor", "Exit codes", "--exact-matmul"}) {
    EXPECT_THAT(run.output, HasSubstr(text));
  }
}

TEST_F(BenchEngineCommand, PrintsAMarkdownTableAndWritesTheProfile) {
  const std::string profile = dir_.File("profile.json");
  const CommandRun run =
      RunKvstack("bench engine --model " + model_ + kQuick + " --sequences 1,2 --markdown --profile " + profile);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("| model | threads | seqs | prefill tok/s | decode tok/s |"));
  EXPECT_THAT(run.output, HasSubstr("| tiny.gguf | 1 | 1 |"));
  EXPECT_THAT(run.output, HasSubstr("| tiny.gguf | 1 | 2 |"));
  EXPECT_THAT(run.output, HasSubstr("memcpy"));

  ASSERT_TRUE(std::ifstream(profile).good()) << "no profile at " << profile;
  std::string text;
  const nlohmann::json j = ReadJson(profile, &text);
  ASSERT_FALSE(j.is_discarded()) << text;
  EXPECT_EQ(j["format"], "kvstack-bench-engine/1");
  EXPECT_GT(j["memcpy_gbps"].get<double>(), 0);
  // The floor is the read bandwidth of the configuration's thread count.
  const double read_gbps = j["read_gbps"]["1"].get<double>();
  EXPECT_GT(read_gbps, 0);
  for (const nlohmann::json& r : j["results"]) {
    const double want = 1e3 * r["bytes_per_decode_step"].get<double>() / (read_gbps * 1e9);
    // Both sides come from printed figures (6 significant digits for the
    // bandwidth, 4 decimals for the floor).
    EXPECT_NEAR(r["floor_ms_per_decode_step"].get<double>(), want, want * 2e-3 + 1e-4);
  }
  ASSERT_EQ(j["results"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const nlohmann::json& r = j["results"][i];
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["model_path"], model_);
    EXPECT_EQ(r["architecture"], "llama");
    EXPECT_EQ(r["n_layer"], 2);
    EXPECT_EQ(r["n_embd"], 64);
    EXPECT_EQ(r["threads"], 1);
    EXPECT_EQ(r["sequences"], i + 1);
    EXPECT_EQ(r["prompt_tokens"], 8);
    EXPECT_EQ(r["gen_tokens"], 4);
    EXPECT_EQ(r["matmul"], "int8-activations");  // the engine's default
    EXPECT_EQ(r["cached_tokens"], 0);  // distinct prompts: no prefix hits
    EXPECT_EQ(r["preemptions"], 0);
    EXPECT_GE(r["generated_tokens"].get<int>(), i + 1);  // at least the first tokens
    EXPECT_LE(r["generated_tokens"].get<int>(), 4 * (i + 1));
    EXPECT_GT(r["weight_bytes"].get<double>(), 0);
    EXPECT_GT(r["kv_bytes_per_token"].get<double>(), 0);
    EXPECT_GT(r["prefill_tok_s"].get<double>(), 0);
    EXPECT_GT(r["prefill_ms_per_token"].get<double>(), 0);
    EXPECT_GT(r["bytes_per_decode_step"].get<double>(), r["weight_bytes"].get<double>());
    EXPECT_GT(r["floor_ms_per_decode_step"].get<double>(), 0);
    for (const char* key : {"model_identity", "decode_tok_s", "ms_per_decode_step", "mean_decode_batch",
                            "step_to_floor", "early_stops", "batch_tokens", "n_head", "n_head_kv", "head_dim"}) {
      EXPECT_TRUE(r.contains(key)) << key;
    }
  }
  ASSERT_EQ(j["cost_models"].size(), 1u);
  const nlohmann::json& cm = j["cost_models"][0];
  EXPECT_EQ(cm["threads"], 1);
  EXPECT_EQ(cm["prefill"].size(), 2u);
  EXPECT_EQ(cm["decode"].size(), 2u);
  EXPECT_TRUE(cm["decode_step_ms_fit"].contains("base_ms"));
  EXPECT_TRUE(cm["decode_step_ms_fit"].contains("per_sequence_ms"));
}

TEST_F(BenchEngineCommand, ExactMatmulIsReportedInTheProfile) {
  const std::string profile = dir_.File("exact.json");
  const CommandRun run = RunKvstack("bench engine --model " + model_ + kQuick + " --exact-matmul --profile " + profile);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("exact-float matmul"));
  std::string text;
  const nlohmann::json j = ReadJson(profile, &text);
  ASSERT_FALSE(j.is_discarded()) << text;
  ASSERT_FALSE(j["results"].empty());
  EXPECT_EQ(j["results"][0]["matmul"], "exact-float");
}

// --cpu-level lowers the kernels' level before anything runs: the run says
// which it used (portable runs everywhere), and the profile records it; an
// unknown name is bad input that lists the valid ones.
TEST_F(BenchEngineCommand, CpuLevelChoosesTheKernelsAndIsReported) {
  const std::string profile = dir_.File("portable.json");
  const CommandRun run = RunKvstack("bench engine --model " + model_ + kQuick + " --cpu-level portable --profile " + profile);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("portable kernels"));
  std::string text;
  const nlohmann::json j = ReadJson(profile, &text);
  ASSERT_FALSE(j.is_discarded()) << text;
  ASSERT_FALSE(j["results"].empty());
  EXPECT_EQ(j["results"][0]["cpu_level"], "portable");

  const CommandRun bad = RunKvstack("bench engine --model " + model_ + kQuick + " --cpu-level avx9");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("--cpu-level: avx9 not in {portable,avx2,avx512,avx512-vnni,avx512-amx}"));
}

TEST_F(BenchEngineCommand, SeveralPromptLengthsAddTheStepCostFit) {
  const std::string profile = dir_.File("steps.json");
  const CommandRun run = RunKvstack("bench engine --model " + model_ +
                                    " --threads 1 --prompt-tokens 4,12 --gen-tokens 4 --repeats 1 --copy-mib 4 "
                                    "--sequences 1,2 --markdown --profile " + profile);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("| model | threads | prompt | seqs | prefill tok/s |"));
  EXPECT_THAT(run.output, HasSubstr("| tiny.gguf | 1 | 12 | 2 |"));
  std::string text;
  const nlohmann::json j = ReadJson(profile, &text);
  ASSERT_FALSE(j.is_discarded()) << text;
  ASSERT_EQ(j["results"].size(), 4u);
  EXPECT_EQ(j["results"][0]["prompt_tokens"], 4);
  EXPECT_EQ(j["results"][3]["prompt_tokens"], 12);
  const nlohmann::json& cm = j["cost_models"][0];
  ASSERT_EQ(cm["prefill"].size(), 4u);
  EXPECT_EQ(cm["prefill"][2]["prompt_tokens"], 12);
  ASSERT_TRUE(cm.contains("step_ms_fit")) << cm.dump();
  const nlohmann::json& fit = cm["step_ms_fit"];
  EXPECT_EQ(fit["points"], 8);  // a prefill and a decode point per configuration
  for (const char* key : {"base_ms", "per_token_ms", "per_attended_ms", "max_relative_error"}) {
    EXPECT_TRUE(fit[key].is_number()) << key;
  }
}

TEST_F(BenchEngineCommand, PlainTableByDefault) {
  const CommandRun run = RunKvstack("bench engine --model " + model_ + kQuick + " --sequences 1");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("step/floor"));
  EXPECT_THAT(run.output, ::testing::Not(HasSubstr("|---")));
}

TEST_F(BenchEngineCommand, NoModelIsBadInputWithAHint) {
  const CommandRun run = RunKvstack("bench engine" + std::string(kQuick));
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_THAT(run.output, HasSubstr("--model"));
  EXPECT_THAT(run.output, HasSubstr("gen-model"));
}

TEST_F(BenchEngineCommand, BadListsAndMissingFilesAreBadInput) {
  const struct {
    std::string args;
    std::string message;
  } cases[] = {
      {"--model " + model_ + kQuick + " --sequences 1,x", "--sequences '1,x': 'x' is not a whole number"},
      {"--model " + model_ + kQuick + " --sequences 0", "--sequences '0': 0 is outside 1..4096"},
      {"--model " + model_ + kQuick + " --sequences 1,", "--sequences '1,': '' is not a whole number"},
      {"--model " + model_ + " --threads 1,-2", "--threads '1,-2': -2 is outside 0..1024"},
      {"--model " + model_ + kQuick + " --kv-type q3", "--kv-type"},
      {"--model " + dir_.File("absent.gguf") + kQuick, "absent.gguf: no such file"},
      {"--model " + model_ + " --threads 1 --copy-mib 4 --prompt-tokens 600 --gen-tokens 4", "exceed the context"},
  };
  for (const auto& c : cases) {
    const CommandRun run = RunKvstack("bench engine " + c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr(c.message)) << c.args;
  }
}

TEST_F(BenchEngineCommand, UnwritableProfileIsARuntimeFailure) {
  const CommandRun run = RunKvstack("bench engine --model " + model_ + kQuick + " --sequences 1 --profile " +
                                    dir_.File("no/such/dir/p.json"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("cannot write"));
}

TEST(BenchCommand, RequiresABenchmarkName) {
  const CommandRun run = RunKvstack("bench");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_THAT(run.output, HasSubstr("name a benchmark: engine"));
}

}  // namespace
}  // namespace kvstack
