// `kvstack plan` arithmetic against hand-computed values, and the CLI.
#include <gtest/gtest.h>

#include "common/run_kvstack.h"
#include "kvstack/plan.h"

namespace kvstack::plan {
namespace {

namespace sz = ::kvstack::sizing;

struct Presets {
  sz::ModelSpec model;
  sz::GpuSpec gpu;
};
Presets Llama8bOnH100() {
  auto catalog = sz::PresetCatalog::Load(KVSTACK_PRESET_DIR);
  EXPECT_TRUE(catalog.ok()) << catalog.status().ToString();
  return {catalog->FindModel("Llama-3.1-8B").value(), catalog->FindGpu("H100-80GB").value()};
}

TEST(PlanTest, HbmSplitAndConcurrencyByHand) {
  const Presets p = Llama8bOnH100();
  PlanOptions o;  // bf16/bf16, activations 8%, reserve 2 GiB, contexts 4k/16k/32k
  auto r = ComputePlan(p.model, p.gpu, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // HBM 85,520,809,984 B; weights 8,030,261,248 x 2; activations
  // floor(0.08 x HBM); reserve 2 GiB; KV the rest.
  EXPECT_EQ(r->hbm_bytes, 85'520'809'984);
  EXPECT_EQ(r->weight_bytes, 16'060'522'496);
  EXPECT_EQ(r->activation_bytes, 6'841'664'798);
  EXPECT_EQ(r->reserve_bytes, 2'147'483'648);
  EXPECT_EQ(r->kv_bytes, 60'471'139'042);
  EXPECT_EQ(r->weight_bytes + r->activation_bytes + r->reserve_bytes + r->kv_bytes, r->hbm_bytes);
  // 32 layers x 2 x 8 KV heads x 128 x 2 B.
  EXPECT_EQ(r->kv_bytes_per_token, 131'072);
  EXPECT_EQ(r->tokens_per_replica, 461'358);  // floor(60,471,139,042 / 131,072)
  EXPECT_EQ(r->p50.per_replica, 112);         // floor(461,358 / 4,096)
  EXPECT_EQ(r->p95.per_replica, 28);          // / 16,384
  EXPECT_EQ(r->p99.per_replica, 14);          // / 32,768
  EXPECT_TRUE(r->alternatives.empty());
}

TEST(PlanTest, AlternativesForATarget) {
  const Presets p = Llama8bOnH100();
  PlanOptions o;
  o.gpus = 2;  // two replicas of one GPU
  o.target_concurrency = 100;
  auto r = ComputePlan(p.model, p.gpu, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->replicas, 2);
  EXPECT_EQ(r->p95.total, 56);
  const Alternative* fp8 = nullptr;
  const Alternative* more = nullptr;
  for (const Alternative& a : r->alternatives) {
    if (a.change == "KV fp8") fp8 = &a;
    if (a.change.find("GPUs (") != std::string::npos) more = &a;
  }
  ASSERT_NE(fp8, nullptr);
  EXPECT_EQ(fp8->concurrency_p95, 2 * 54);  // floor(60,471,139,042 / 68,096) = 888,027; / 16,384 = 54
  EXPECT_TRUE(fp8->reaches_target);
  ASSERT_NE(more, nullptr);
  EXPECT_EQ(more->gpus, 4);  // ceil(100 / 28) replicas
  EXPECT_EQ(more->concurrency_p95, 112);
  // 100 x 16,384 tokens needed, 2 x 461,358 held: the overflow in bytes.
  EXPECT_EQ(r->target_overflow_bytes, (int64_t{100} * 16'384 - 2 * 461'358) * 131'072);
  EXPECT_NE(FormatPlan(*r).find("KV fp8"), std::string::npos);
  EXPECT_NE(RenderPlanHtml(*r).find("<svg"), std::string::npos);
}

TEST(PlanTest, BadOptions) {
  const Presets p = Llama8bOnH100();
  PlanOptions o;
  o.gpus = 3;
  o.tensor_parallel = 2;
  EXPECT_EQ(ComputePlan(p.model, p.gpu, o).status().code(), StatusCode::kInvalidArgument);
  o = PlanOptions{};
  o.context_p50 = 64'000;
  EXPECT_EQ(ComputePlan(p.model, p.gpu, o).status().code(), StatusCode::kInvalidArgument);
}

TEST(PlanCliTest, PrintsTheSplitAndAlternatives) {
  const auto run = test_support::RunKvstack(
      "plan --model Llama-3.1-8B --gpu H100-80GB --context-p50 4k --context-p95 16k --context-p99 32k "
      "--concurrency 64");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("461,358"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("KV fp8"), std::string::npos) << run.output;
  const auto bad = test_support::RunKvstack("plan --model Llama-3.1-8B --gpus 3 --tp 2");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("multiple of --tp"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace kvstack::plan
