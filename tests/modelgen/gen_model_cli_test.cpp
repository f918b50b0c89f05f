// The real `kvstack gen-model` binary: help, presets and overrides, the file
// it writes, and exit code 2 with a clear message for bad shapes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "common/run_kvstack.h"
#include "kvstack/gguf.h"
#include "modelgen/temp_dir.h"

namespace kvstack {
namespace {

using ::testing::HasSubstr;

using test_support::CommandRun;
using test_support::RunKvstack;

TEST(GenModelCommand, HelpExplainsEveryOption) {
  const CommandRun run = RunKvstack("gen-model --help");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  for (const char* option : {"--out", "--preset", "--arch", "--layers", "--embd", "--heads", "--kv-heads",
                             "--head-dim", "--ff", "--ctx", "--rope-base", "--rms-eps", "--rope-scaling", "--type",
                             "--tied", "--untied", "--seed", "--name", "--quiet", "llama-3.2-1b-shape", "q4_k",
                             "Exit codes"}) {
    EXPECT_THAT(run.output, HasSubstr(option));
  }
}

TEST(GenModelCommand, WritesTheTinyModelByDefault) {
  TempDir dir;
  const std::string path = dir.File("tiny.gguf");
  const CommandRun run = RunKvstack("gen-model --out " + path);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("wrote " + path + ": llama, 2 layers, embd 64"));
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto hp = ReadLlamaHParams(*f);
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->n_layer, 2u);
  EXPECT_EQ(hp->n_embd, 64u);
  EXPECT_TRUE(f->FindTensor("output.weight").ok());
}

TEST(GenModelCommand, PresetWithOverrides) {
  TempDir dir;
  const std::string path = dir.File("m.gguf");
  const CommandRun run = RunKvstack("gen-model --out " + path +
                                    " --preset stories --arch qwen2 --layers 1 --embd 128 --heads 8 --kv-heads 2 "
                                    "--head-dim 32 --ff 256 --ctx 1024 --rope-base 20000 --type Q8_0 --tied "
                                    "--seed 12345678901234 --name custom -q");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto hp = ReadLlamaHParams(*f);
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->architecture, "qwen2");
  EXPECT_EQ(hp->n_layer, 1u);
  EXPECT_EQ(hp->n_embd, 128u);
  EXPECT_EQ(hp->n_head, 8u);
  EXPECT_EQ(hp->n_head_kv, 2u);
  EXPECT_EQ(hp->head_dim, 32u);
  EXPECT_EQ(hp->n_ff, 256u);
  EXPECT_EQ(hp->n_ctx_train, 1024u);
  EXPECT_EQ(hp->rope_freq_base, 20000.0f);
  EXPECT_EQ(*f->GetString("general.name"), "custom");
  EXPECT_FALSE(f->FindTensor("output.weight").ok());
  EXPECT_EQ((*f->FindTensor("blk.0.attn_q.weight"))->type, GgmlType::kQ8_0);
  EXPECT_TRUE(f->FindTensor("blk.0.attn_k.bias").ok());
}

TEST(GenModelCommand, TheSameSeedWritesTheSameFile) {
  TempDir dir;
  ASSERT_EQ(RunKvstack("gen-model -q --seed 3 --out " + dir.File("a.gguf")).exit_code, 0);
  ASSERT_EQ(RunKvstack("gen-model -q --seed 3 --out " + dir.File("b.gguf")).exit_code, 0);
  ASSERT_EQ(RunKvstack("gen-model -q --seed 4 --out " + dir.File("c.gguf")).exit_code, 0);
  auto a = GgufFile::Open(dir.File("a.gguf"));
  auto b = GgufFile::Open(dir.File("b.gguf"));
  auto c = GgufFile::Open(dir.File("c.gguf"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(std::ranges::equal(a->bytes(), b->bytes()));
  EXPECT_FALSE(std::ranges::equal(a->bytes(), c->bytes()));
}

TEST(GenModelCommand, BadInputExitsTwoWithAClearMessage) {
  TempDir dir;
  const std::string out = " --out " + dir.File("x.gguf");
  const struct {
    std::string args;
    const char* message;
  } cases[] = {
      {"gen-model", "--out is required"},
      {"gen-model" + out + " --embd 100 --heads 3 --kv-heads 1", "n_head 3: must divide n_embd 100"},
      {"gen-model" + out + " --heads 8 --kv-heads 3", "n_head_kv 3: must divide n_head 8"},
      {"gen-model" + out + " --type q4_k", "n_embd 64: must be a multiple of 256, the Q4_K block"},
      {"gen-model" + out + " --type q8_0 --ff 100", "n_ff 100: must be a multiple of 32"},
      {"gen-model" + out + " --type q5_1", "--type \"q5_1\": must be f32, f16, bf16"},
      {"gen-model" + out + " --preset huge", "preset 'huge'"},
      {"gen-model" + out + " --layers many", "--layers \"many\": expected a number"},
      {"gen-model" + out + " --seed -1", "--seed \"-1\""},
      {"gen-model" + out + " --arch gpt2", "architecture 'gpt2'"},
      {"gen-model" + out + " --rope-scaling yarn", "--rope-scaling \"yarn\""},
      {"gen-model" + out + " --arch qwen2 --preset llama-3.2-1b-shape", "is for architecture llama"},
      {"gen-model" + out + " --tied --untied", "at most one"},
      {"gen-model --out " + dir.File("missing/dir/x.gguf"), "missing/dir"},
  };
  for (const auto& c : cases) {
    const CommandRun run = RunKvstack(c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr(c.message)) << c.args;
    EXPECT_THAT(run.output, HasSubstr("kvstack gen-model: ")) << c.args;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("x.gguf")));
}

}  // namespace
}  // namespace kvstack
