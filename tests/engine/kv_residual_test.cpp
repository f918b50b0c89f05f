// Quantized KV through the sequence's residual (engine/kv_residual.h): the
// partial last block waits at f16, a full block is quantized once from its
// f16 rows. The contract checked here, under random chunkings: a block's
// bytes, the residual's rows and the logits of every position do not depend
// on how the tokens were batched, and a fork continues its parent's block.
// (Attention works on tiles of a sequence's tokens; each token's arithmetic
// is its own, so float KV is held to the same invariance.)
#include <cstring>
#include <filesystem>
#include <random>

#include <unistd.h>

#include <gtest/gtest.h>

#include "engine/forward.h"
#include "engine/kv_residual.h"
#include "engine/llama_model.h"
#include "kvstack/engine.h"
#include "kvstack/kernels.h"
#include "kvstack/model_gen.h"

namespace kvstack::engine {
namespace {

// A Q8_0 model: with int8 activations every product is batch invariant
// (kernels.h), so K and V of a position are the same bits in any batch and
// the only thing a chunking could change is how the cache stores them.
std::string WriteModel() {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvstack-residual-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "gqa-q8_0.gguf").string();
  GenModelSpec spec{.n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 2, .n_ff = 96, .seed = 21};
  spec.weight_type = GgmlType::kQ8_0;
  EXPECT_TRUE(WriteGenModel(spec, path).ok());
  return path;
}

struct Fed {
  std::unique_ptr<KvArena> arena;
  std::unique_ptr<Forward> forward;
  KvResidual residual;
  std::vector<std::vector<float>> logits;  // per position
};

// Feeds `tokens` in chunks of the sizes `chunks` gives (cycled), every
// position asking for logits.
Fed Feed(const LlamaModel& m, kernels::ThreadPool* pool, const KvShape& shape, const std::vector<Token>& tokens,
         const std::vector<int>& chunks) {
  const int32_t blocks = static_cast<int32_t>(tokens.size()) / shape.block_size + 1;
  auto arena = KvArena::Create(shape, blocks, KvStorageMode::kAllocate);
  EXPECT_TRUE(arena.ok());
  Fed r{std::make_unique<KvArena>(std::move(arena).value()), nullptr, KvResidual(shape), {}};
  std::memset(r.arena->Block(0), 0, r.arena->total_bytes());
  r.forward = std::make_unique<Forward>(m, r.arena.get(), pool, kernels::MatMulPrecision::kInt8Activations);
  std::vector<BlockId> table(static_cast<size_t>(blocks));
  for (int32_t i = 0; i < blocks; ++i) table[i] = static_cast<BlockId>(i);
  const size_t V = m.hparams().n_vocab;
  size_t at = 0, c = 0;
  while (at < tokens.size()) {
    const size_t n = std::min(tokens.size() - at, static_cast<size_t>(chunks[c++ % chunks.size()]));
    ForwardBatch batch;
    batch.tables = {table};
    batch.residuals = {&r.residual};
    for (size_t p = at; p < at + n; ++p) batch.tokens.push_back({tokens[p], static_cast<int32_t>(p), 0, true});
    std::vector<float> logits;
    const Status s = r.forward->Run(batch, &logits);
    EXPECT_TRUE(s.ok()) << s.ToString();
    for (size_t i = 0; i < n; ++i) r.logits.emplace_back(logits.begin() + i * V, logits.begin() + (i + 1) * V);
    at += n;
  }
  return r;
}

class KvResidualTest : public ::testing::TestWithParam<std::pair<KvDType, KvDType>> {};

TEST_P(KvResidualTest, BlocksResidualAndLogitsDoNotDependOnTheChunking) {
  const std::string path = WriteModel();
  auto model = LlamaModel::Load(path);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
  const LlamaModel& m = **model;
  const LlamaHParams& h = m.hparams();
  const KvShape shape{.num_layers = static_cast<int32_t>(h.n_layer), .num_kv_heads = static_cast<int32_t>(h.n_head_kv),
                      .head_dim = static_cast<int32_t>(h.head_dim), .block_size = 16, .dtype = GetParam().first,
                      .v_dtype = GetParam().second};
  kernels::ThreadPool pool(2);
  std::mt19937 rng(5);
  std::vector<Token> tokens(101);  // 6 full blocks and 5 tokens
  for (Token& t : tokens) t = static_cast<Token>(1 + rng() % (h.n_vocab - 1));
  // Token by token: how decode writes the cache.
  const Fed one = Feed(m, &pool, shape, tokens, {1});
  const int B = shape.block_size, full = static_cast<int>(tokens.size()) / B;
  for (int trial = 0; trial < 6; ++trial) {
    std::vector<int> chunks;
    for (int i = 0; i < 5; ++i) chunks.push_back(1 + static_cast<int>(rng() % 40));
    if (trial == 0) chunks = {static_cast<int>(tokens.size())};  // one prefill
    const Fed r = Feed(m, &pool, shape, tokens, chunks);
    SCOPED_TRACE(::testing::Message() << "chunks " << ::testing::PrintToString(chunks));
    for (int b = 0; b < full; ++b) {
      EXPECT_EQ(std::memcmp(one.arena->Block(b), r.arena->Block(b), r.arena->block_bytes()), 0) << "block " << b;
    }
    // The partial block: slots 0..4 of every head, K and V, in the residual.
    const size_t rows = static_cast<size_t>(tokens.size() % B) * shape.head_dim * sizeof(uint16_t);
    for (int l = 0; l < shape.num_layers; ++l) {
      for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
        for (int kh = 0; kh < shape.num_kv_heads; ++kh) {
          EXPECT_EQ(std::memcmp(one.residual.Head(l, part, kh), r.residual.Head(l, part, kh), rows), 0)
              << "layer " << l << " head " << kh;
        }
      }
    }
    // A position reads its own block at f16 and the blocks below quantized,
    // whichever step computed them.
    for (size_t p = 0; p < tokens.size(); ++p) EXPECT_EQ(one.logits[p], r.logits[p]) << "position " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, KvResidualTest,
                         ::testing::Values(std::pair{KvDType::kInt8, KvDType::kInt8},
                                           std::pair{KvDType::kInt4, KvDType::kInt4},
                                           std::pair{KvDType::kFp8E4M3, KvDType::kFp8E4M3},
                                           std::pair{KvDType::kInt8, KvDType::kF16},
                                           std::pair{KvDType::kF16, KvDType::kInt4},
                                           // Float KV has no residual; its attention is tiled
                                           // the same way, so the same invariance holds.
                                           std::pair{KvDType::kF16, KvDType::kF16},
                                           std::pair{KvDType::kF32, KvDType::kBF16}),
                         [](const auto& info) {
                           std::string name = std::string(KvDTypeName(info.param.first)) + "_" +
                                              std::string(KvDTypeName(info.param.second));
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

// What a residual must be given with: one per table, for the shape, and a
// table's tokens consecutive. Each mistake is an error that names it.
TEST(KvResidualContract, MissingOrMisusedResidualsAreErrors) {
  const std::string path = WriteModel();
  auto model = LlamaModel::Load(path);
  ASSERT_TRUE(model.ok());
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
  const LlamaHParams& h = (*model)->hparams();
  const KvShape shape{.num_layers = static_cast<int32_t>(h.n_layer), .num_kv_heads = static_cast<int32_t>(h.n_head_kv),
                      .head_dim = static_cast<int32_t>(h.head_dim), .block_size = 16, .dtype = KvDType::kInt8};
  auto arena = KvArena::Create(shape, 4, KvStorageMode::kAllocate);
  ASSERT_TRUE(arena.ok());
  kernels::ThreadPool pool(1);
  Forward fwd(**model, &*arena, &pool);
  std::vector<BlockId> table = {BlockId{0}, BlockId{1}};
  ForwardBatch batch;
  batch.tables = {table};
  batch.tokens = {{5, 0, 0, true}, {6, 1, 0, true}};
  std::vector<float> logits;
  Status s = fwd.Run(batch, &logits);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("residual"), std::string::npos) << s.message();

  KvShape other = shape;
  other.block_size = 8;
  KvResidual wrong(other);
  batch.residuals = {&wrong};
  s = fwd.Run(batch, &logits);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("another KV shape"), std::string::npos) << s.message();

  KvResidual residual(shape);
  batch.residuals = {&residual};
  batch.tokens = {{5, 0, 0, true}, {6, 2, 0, true}};
  s = fwd.Run(batch, &logits);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("consecutive"), std::string::npos) << s.message();

  batch.tokens = {{5, 0, 0, true}, {6, 1, 0, true}};
  EXPECT_TRUE(fwd.Run(batch, &logits).ok());
}

// n choices fork from the prompt's partial last block: each continues the
// parent's residual, so greedy choices equal the single completion.
TEST(KvResidualEngine, ForkedChoicesContinueTheParentsPartialBlock) {
  const std::string path = WriteModel();
  for (KvDType kv : {KvDType::kInt8, KvDType::kInt4}) {
    EngineOptions o;
    o.model_path = path;
    o.threads = 1;
    o.kv_dtype = kv;
    o.kv_memory_bytes = 4 << 20;
    o.matmul_precision = kernels::MatMulPrecision::kInt8Activations;
    auto e = Engine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    std::vector<Token> prompt;
    for (int i = 0; i < 37; ++i) prompt.push_back(static_cast<Token>(3 + (i * 7) % 200));  // 2 blocks and 5
    auto run = [&](int n) {
      GenerationRequest r;
      r.prompt = prompt;
      r.sampling.max_tokens = 24;
      r.n = n;
      auto id = (*e)->Submit(r);
      EXPECT_TRUE(id.ok()) << id.status().ToString();
      std::map<int32_t, std::vector<Token>> by_choice;
      std::vector<GenerationEvent> events;
      while ((*e)->HasWork()) {
        events.clear();
        EXPECT_TRUE((*e)->Step(&events).ok());
        for (const GenerationEvent& ev : events) {
          by_choice[ev.choice].insert(by_choice[ev.choice].end(), ev.tokens.begin(), ev.tokens.end());
        }
      }
      return by_choice;
    };
    const std::vector<Token> alone = run(1)[0];
    ASSERT_EQ(alone.size(), 24u);
    auto forked = run(3);
    ASSERT_EQ(forked.size(), 3u);
    for (const auto& [choice, toks] : forked) EXPECT_EQ(toks, alone) << KvDTypeName(kv) << " choice " << choice;
  }
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

}  // namespace
}  // namespace kvstack::engine
