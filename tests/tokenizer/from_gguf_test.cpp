// Tokenizer::FromGguf: what it reads, the defaults it applies, and errors
// that name the key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kvstack/tokenizer.h"
#include "tokenizer/vocab_image.h"

namespace kvstack {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ByteAlphabet;
using testing::VocabImage;

MATCHER_P2(FailsWith, code, substring, "") {
  if (arg.ok()) {
    *result_listener << "succeeded";
    return false;
  }
  *result_listener << arg.status().ToString();
  return arg.status().code() == code && arg.status().message().find(substring) != std::string::npos;
}

VocabImage Spm() {
  VocabImage image;
  image.Str("tokenizer.ggml.model", "llama").StrArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\u2581a"});
  return image;
}

VocabImage Bpe(std::string_view pre) {
  VocabImage image;
  image.Str("tokenizer.ggml.model", "gpt2").Str("tokenizer.ggml.pre", pre).StrArray("tokenizer.ggml.tokens",
                                                                                     ByteAlphabet());
  return image;
}

TEST(FromGgufTest, ErrorsNameTheKey) {
  EXPECT_THAT(VocabImage().StrArray("tokenizer.ggml.tokens", {"a"}).Build(),
              FailsWith(StatusCode::kNotFound, "tokenizer.ggml.model"));
  EXPECT_THAT(VocabImage().Str("tokenizer.ggml.model", "bert").StrArray("tokenizer.ggml.tokens", {"a"}).Build(),
              FailsWith(StatusCode::kInvalidArgument, "'tokenizer.ggml.model' is 'bert'"));
  EXPECT_THAT(Bpe("gpt-2").Build(), FailsWith(StatusCode::kNotFound, "tokenizer.ggml.merges"));
  EXPECT_THAT(Bpe("deepseek-coder").StrArray("tokenizer.ggml.merges", {}).Build(),
              FailsWith(StatusCode::kInvalidArgument, "'tokenizer.ggml.pre' is 'deepseek-coder'"));
  EXPECT_THAT(Bpe("gpt-2").StrArray("tokenizer.ggml.merges", {"Ġ t", "ab"}).Build(),
              FailsWith(StatusCode::kInvalidArgument, "'tokenizer.ggml.merges' entry 1 is 'ab'"));
  EXPECT_THAT(Bpe("gpt-2").StrArray("tokenizer.ggml.merges", {}).Bool("tokenizer.ggml.add_bos_token", true).Build(),
              FailsWith(StatusCode::kInvalidArgument, "tokenizer.ggml.add_bos_token"));
  // Llama 3 adds BOS by default, so its file must name one.
  EXPECT_THAT(Bpe("llama-bpe").StrArray("tokenizer.ggml.merges", {}).Build(),
              FailsWith(StatusCode::kInvalidArgument, "tokenizer.ggml.bos_token_id"));
  EXPECT_THAT(Spm().U32("tokenizer.ggml.bos_token_id", 9).Build(),
              FailsWith(StatusCode::kInvalidArgument, "tokenizer.ggml.bos_token_id"));
}

TEST(FromGgufTest, SentencePieceDefaultsAndOverrides) {
  auto t = Spm()
               .U32("tokenizer.ggml.bos_token_id", 0xFFFFFFFFu)  // llama.cpp's "none": the default stays
               .U32("tokenizer.ggml.eos_token_id", 3)
               .Bool("tokenizer.ggml.add_bos_token", false)
               .Bool("tokenizer.ggml.add_eos_token", true)
               .Build();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->bos(), 1);
  EXPECT_EQ((*t)->eos(), 3);
  EXPECT_EQ((*t)->unk(), 0);
  EXPECT_FALSE((*t)->add_bos());
  EXPECT_TRUE((*t)->add_eos());
  EXPECT_THAT((*t)->Encode("a"), ElementsAre(3, 3));
  EXPECT_THAT((*t)->Encode("a", {.add_bos = true, .add_eos = false}), ElementsAre(1, 3));
  // No token_type key: every token is normal, so "<s>" is plain text.
  EXPECT_EQ((*t)->Kind(1), TokenKind::kNormal);
  EXPECT_EQ((*t)->Piece(1), "<s>");
}

TEST(FromGgufTest, BpeWithoutSpecialIds) {
  auto t = Bpe("gpt-2").StrArray("tokenizer.ggml.merges", {}).Build();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->bos(), std::nullopt);
  EXPECT_EQ((*t)->eos(), std::nullopt);
  EXPECT_EQ((*t)->unk(), std::nullopt);
  EXPECT_TRUE((*t)->eog_tokens().empty());
  EXPECT_THAT((*t)->Encode("a", {.add_bos = true, .add_eos = true}), ElementsAre('a'));
}

TEST(FromGgufTest, TokenTypesAndEndOfTurn) {
  auto t = VocabImage()
               .Str("tokenizer.ggml.model", "llama")
               .StrArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "x", "y", "<turn>", "<|eot_id|>", ""})
               .I32Array("tokenizer.ggml.token_type", {2, 3, 3, 0, 5, 3, 3, 3})
               .U32("tokenizer.ggml.eot_token_id", 5)
               .Build();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->Kind(3), TokenKind::kUndefined);
  EXPECT_EQ((*t)->Piece(3), "");
  EXPECT_EQ((*t)->Kind(4), TokenKind::kUnused);
  EXPECT_EQ((*t)->Piece(4), "");
  EXPECT_EQ((*t)->eot(), 5);  // the key wins over the text
  EXPECT_THAT((*t)->eog_tokens(), ElementsAre(2, 5, 6));
  // An empty control token is never matched in text.
  EXPECT_THAT((*t)->Encode("<turn>", {.add_bos = false}), ElementsAre(5));
}

}  // namespace
}  // namespace kvstack
