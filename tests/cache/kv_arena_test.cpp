// KvArena: the documented layout, dtypes, copy, and metadata-only mode.
#include "kvstack/kv_arena.h"

#include <cstring>

#include <gtest/gtest.h>

#include "kvstack/block_hash.h"

namespace kvstack {
namespace {

TEST(KvArenaTest, LayoutMatchesTheDocumentedFormula) {
  const KvShape s{.num_layers = 3, .num_kv_heads = 2, .head_dim = 8, .block_size = 16, .dtype = KvDType::kF16};
  auto a = KvArena::Create(s, 5, KvStorageMode::kAllocate);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(s.k_head_bytes(), 16u * 8 * 2);
  EXPECT_EQ(s.v_head_bytes(), 16u * 8 * 2);
  EXPECT_EQ(s.layer_bytes(), 2u * 2 * 16 * 8 * 2);
  EXPECT_EQ(a->block_bytes(), 3u * 2 * 2 * 16 * 8 * 2);
  EXPECT_EQ(a->total_bytes(), 5 * a->block_bytes());
  const std::byte* base = a->Block(0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(base) % 64, 0u);
  // K(b, l) = b*block + l*layer; V = K + H*head.
  EXPECT_EQ(a->K(2, 1) - base, static_cast<ptrdiff_t>(2 * a->block_bytes() + s.layer_bytes()));
  EXPECT_EQ(a->V(2, 1) - a->K(2, 1), static_cast<ptrdiff_t>(2 * s.k_head_bytes()));
  EXPECT_EQ(a->Block(4) + a->block_bytes(), base + a->total_bytes());
}

TEST(KvArenaTest, DTypesAndNames) {
  EXPECT_EQ(KvDTypeBytes(KvDType::kF32), 4u);
  EXPECT_EQ(KvDTypeBytes(KvDType::kF16), 2u);
  EXPECT_EQ(KvDTypeBytes(KvDType::kBF16), 2u);
  EXPECT_EQ(*ParseKvDType("bf16"), KvDType::kBF16);
  EXPECT_EQ(*ParseKvDType("fp8"), KvDType::kFp8E4M3);
  EXPECT_EQ(ParseKvDType("q8").status().message(),
            "KV dtype 'q8': must be f32, f16, bf16, int8, fp8-e4m3 (or fp8), fp8-e5m2 or int4");
  for (KvDType t : {KvDType::kF32, KvDType::kF16, KvDType::kBF16, KvDType::kInt8, KvDType::kFp8E4M3,
                    KvDType::kFp8E5M2, KvDType::kInt4}) {
    EXPECT_EQ(*ParseKvDType(KvDTypeName(t)), t);
  }
}

// K and V of different types: V starts after all heads of K, each head its
// type's bytes (scales included), and the layout names both.
TEST(KvArenaTest, MixedKAndVTypes) {
  const KvShape s{.num_layers = 2, .num_kv_heads = 2, .head_dim = 128, .block_size = 16, .dtype = KvDType::kInt8,
                  .v_dtype = KvDType::kInt4};
  EXPECT_EQ(s.k_head_bytes(), 16u * 128 + 4 + 128);
  EXPECT_EQ(s.v_head_bytes(), 16u * 64 + 16 * 2 * 2);
  EXPECT_EQ(s.layer_bytes(), 2 * (s.k_head_bytes() + s.v_head_bytes()));
  EXPECT_EQ(s.types_name(), "k=int8,v=int4");
  EXPECT_EQ(s.layout_identity(), "kv:k=int8,v=int4,B=16,H=2,D=128,L=2");
  auto a = KvArena::Create(s, 2, KvStorageMode::kAllocate);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->V(1, 1) - a->K(1, 1), static_cast<ptrdiff_t>(2 * s.k_head_bytes()));
  EXPECT_EQ(a->K(1, 1) - a->Block(1), static_cast<ptrdiff_t>(s.layer_bytes()));
  const KvShape same{.num_layers = 2, .num_kv_heads = 2, .head_dim = 128, .block_size = 16, .dtype = KvDType::kInt8};
  EXPECT_EQ(same.types_name(), "int8");
  EXPECT_NE(same.layout_identity(), s.layout_identity());
  // int4 keys' bytes changed (channel offsets): their identity says which.
  const KvShape int4{.num_layers = 2, .num_kv_heads = 2, .head_dim = 128, .block_size = 16, .dtype = KvDType::kInt4};
  EXPECT_EQ(int4.layout_identity(), "kv:k=int4.2,v=int4,B=16,H=2,D=128,L=2");
  // So did fp8 rows' (a scale code each), keys and values alike.
  const KvShape fp8{.num_layers = 2, .num_kv_heads = 2, .head_dim = 128, .block_size = 16,
                    .dtype = KvDType::kFp8E4M3, .v_dtype = KvDType::kFp8E5M2};
  EXPECT_EQ(fp8.layout_identity(), "kv:k=fp8-e4m3.2,v=fp8-e5m2.2,B=16,H=2,D=128,L=2");
  const KvShape odd{.num_layers = 1, .num_kv_heads = 1, .head_dim = 7, .block_size = 16, .dtype = KvDType::kInt4};
  EXPECT_EQ(KvArena::Create(odd, 1, KvStorageMode::kAllocate).status().message(),
            "KV shape: int4 needs an even head_dim, not 7");
}

TEST(KvArenaTest, CopyBlockCopiesEveryLayer) {
  const KvShape s{.num_layers = 2, .num_kv_heads = 1, .head_dim = 4, .block_size = 2, .dtype = KvDType::kF32};
  auto a = KvArena::Create(s, 3, KvStorageMode::kAllocate);
  ASSERT_TRUE(a.ok());
  std::memset(a->Block(1), 0x11, a->block_bytes());
  a->CopyBlock(1, 2);
  EXPECT_EQ(std::memcmp(a->Block(1), a->Block(2), a->block_bytes()), 0);
  EXPECT_EQ(static_cast<int>(*a->Block(0)), 0);
}

TEST(KvArenaTest, MetadataOnlyHasShapeButNoBytes) {
  const KvShape s{.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .block_size = 16, .dtype = KvDType::kBF16};
  auto a = KvArena::Create(s, 1'000'000, KvStorageMode::kMetadataOnly);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->has_storage());
  EXPECT_EQ(a->block_bytes(), 2u * 1024 * 1024);  // Llama-3-8B: 2 MiB per 16-token block
  a->CopyBlock(0, 1);                             // a no-op without bytes
}

TEST(KvArenaTest, RejectsBadShapes) {
  KvShape s{.num_layers = 0, .num_kv_heads = 1, .head_dim = 1, .block_size = 1};
  EXPECT_EQ(KvArena::Create(s, 1, KvStorageMode::kAllocate).status().message(),
            "KV shape: num_layers 0 must be >= 1");
  s.num_layers = 1;
  EXPECT_EQ(KvArena::Create(s, 0, KvStorageMode::kAllocate).status().code(), StatusCode::kInvalidArgument);
}

TEST(KvArenaDeathTest, PointerIntoMetadataOnlyArenaAborts) {
  const KvShape s{.num_layers = 1, .num_kv_heads = 1, .head_dim = 1, .block_size = 1};
  auto a = KvArena::Create(s, 2, KvStorageMode::kMetadataOnly);
  ASSERT_TRUE(a.ok());
  EXPECT_DEATH(a->Block(0), "KV arena: block 0 of 2");
}

TEST(BlockHasherTest, ChainedKeysDependOnEverythingBefore) {
  BlockHasher h(0);
  const BlockHash root = h.Root({.model_id = "m"});
  const std::vector<Token> a{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<BlockHash> ka;
  h.ChainBlocks(root, a, 4, &ka);
  ASSERT_EQ(ka.size(), 2u);
  EXPECT_EQ(ka[1], h.Chain(h.Chain(root, {a.data(), 4}), {a.data() + 4, 4}));
  // The same second block after a different first block has another key.
  std::vector<Token> b{9, 2, 3, 4, 5, 6, 7, 8};
  std::vector<BlockHash> kb;
  h.ChainBlocks(root, b, 4, &kb);
  EXPECT_NE(ka[1], kb[1]);
  // Seeds, salts, models and adapters separate key spaces; fields are
  // length-prefixed so ("ab","") differs from ("a","b").
  EXPECT_NE(BlockHasher(1).Root({.model_id = "m"}), root);
  EXPECT_NE(h.Root({.model_id = "m", .cache_salt = "t"}), root);
  EXPECT_NE(h.Root({.model_id = "ab"}), h.Root({.model_id = "a", .cache_salt = "b"}));
  EXPECT_NE(h.Root({.model_id = "m", .adapter_id = "x"}), root);
  // A partial block gets no key; long blocks hash through the streaming path.
  std::vector<BlockHash> none;
  h.ChainBlocks(root, std::vector<Token>(3, 1), 4, &none);
  EXPECT_TRUE(none.empty());
  std::vector<Token> big(512, 7);
  EXPECT_EQ(h.Chain(root, big), h.Chain(root, big));
  EXPECT_FALSE(h.Chain(root, big).IsZero());
  EXPECT_EQ(BlockHash({0x1, 0xab}).ToHex(), "00000000000000ab0000000000000001");
}

}  // namespace
}  // namespace kvstack
