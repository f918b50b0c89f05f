// SentencePiece on a hand-built vocabulary: merge order by score, the leading
// space rule, byte fallback, special tokens, and decoding.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "kvstack/tokenizer.h"
#include "tokenizer/vocab_image.h"

namespace kvstack {
namespace {

using ::testing::ElementsAre;
using testing::VocabImage;

// ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below.
constexpr Token kByte0 = 3;
constexpr Token kSpace = 259, kA = 260, kB = 261, kC = 262, kSpaceA = 263, kAB = 264, kBC = 265, kSpaceAB = 266,
                kCB = 267, kTag = 268, kImEnd = 269;

VocabImage SpmVocab() {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    scores.push_back(0);
    types.push_back(6);
  }
  struct Piece {
    const char* text;
    float score;
    int32_t type;
  };
  // "ab" outscores "▁a", so "▁ab" is built as ▁ + ab; "bc" and "cb" tie.
  const Piece pieces[] = {{"\u2581", -1}, {"a", -2},       {"b", -3},        {"c", -4},
                          {"\u2581a", -5}, {"ab", -0.5f},  {"bc", -6},       {"\u2581ab", -7},
                          {"cb", -6},      {"<tag>", 0, 4}, {"<|im_end|>", 0, 1}};
  for (const Piece& p : pieces) {
    tokens.push_back(p.text);
    scores.push_back(p.score);
    types.push_back(p.type == 0 ? 1 : p.type);
  }
  VocabImage image;
  image.Str("tokenizer.ggml.model", "llama")
      .StrArray("tokenizer.ggml.tokens", tokens)
      .F32Array("tokenizer.ggml.scores", scores)
      .I32Array("tokenizer.ggml.token_type", types);
  return image;
}

std::unique_ptr<Tokenizer> Build(const VocabImage& image) {
  auto tokenizer = image.Build();
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

constexpr Tokenizer::EncodeOptions kPlain = {.add_bos = false, .add_eos = false};

TEST(SpmTest, DefaultsFollowLlama) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->model(), Tokenizer::Model::kSentencePiece);
  EXPECT_EQ(t->model_name(), "llama");
  EXPECT_EQ(t->bos(), 1);
  EXPECT_EQ(t->eos(), 2);
  EXPECT_EQ(t->unk(), 0);
  EXPECT_TRUE(t->add_bos());
  EXPECT_FALSE(t->add_eos());
  EXPECT_TRUE(t->add_space_prefix());
  EXPECT_THAT(t->Encode("ab"), ElementsAre(1, kSpaceAB));
  EXPECT_THAT(t->Encode("ab", {.add_eos = true}), ElementsAre(1, kSpaceAB, 2));
  EXPECT_THAT(t->Encode(""), ElementsAre(1));
  EXPECT_THAT(t->Encode("", kPlain), ElementsAre());
}

TEST(SpmTest, HighestScoreMergesFirst) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  // ▁ a b: "ab" (-0.5) before "▁a" (-5), then "▁ab".
  EXPECT_THAT(t->Encode("ab", kPlain), ElementsAre(kSpaceAB));
  EXPECT_THAT(t->Encode("abc", kPlain), ElementsAre(kSpaceAB, kC));
  // "bc" and "cb" score the same: the leftmost pair merges.
  EXPECT_THAT(t->Encode("bcb", kPlain), ElementsAre(kSpace, kBC, kB));
}

TEST(SpmTest, LeadingSpaceRule) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("a", kPlain), ElementsAre(kSpaceA));
  EXPECT_THAT(t->Encode(" a", kPlain), ElementsAre(kSpace, kSpaceA));
  EXPECT_THAT(t->Encode("a a", kPlain), ElementsAre(kSpaceA, kSpaceA));
  EXPECT_THAT(t->Encode(" ", kPlain), ElementsAre(kSpace, kSpace));

  auto no_prefix = Build(SpmVocab().Bool("tokenizer.ggml.add_space_prefix", false));
  ASSERT_NE(no_prefix, nullptr);
  EXPECT_FALSE(no_prefix->add_space_prefix());
  EXPECT_THAT(no_prefix->Encode("a", kPlain), ElementsAre(kA));
  EXPECT_EQ(no_prefix->Decode(std::vector<Token>{kSpaceA}, {.strip_prefix_space = true}), " a");
}

TEST(SpmTest, BytesWithoutAPieceFallBackToByteTokens) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("é", kPlain), ElementsAre(kSpace, kByte0 + 0xC3, kByte0 + 0xA9));
  EXPECT_THAT(t->Encode("\n", kPlain), ElementsAre(kSpace, kByte0 + 0x0A));
  // Invalid UTF-8 is bytes too, and decodes back unchanged.
  const std::string invalid = "a\xFF\xC3";
  const std::vector<Token> ids = t->Encode(invalid, kPlain);
  EXPECT_THAT(ids, ElementsAre(kSpaceA, kByte0 + 0xFF, kByte0 + 0xC3));
  EXPECT_EQ(t->Decode(ids, {.strip_prefix_space = true}), invalid);
}

TEST(SpmTest, WithoutByteTokensUnknownCharactersBecomeUnk) {
  auto t = Build(VocabImage()
                     .Str("tokenizer.ggml.model", "llama")
                     .StrArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\u2581", "a"})
                     .I32Array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1}));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("aé", kPlain), ElementsAre(3, 4, 0, 0));  // one UNK per byte, as llama.cpp
}

TEST(SpmTest, SpecialTokensAndTheSpaceAfterThem) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  // A special token starts a new text: the next fragment gets a prefix space.
  EXPECT_THAT(t->Encode("a</s>a", kPlain), ElementsAre(kSpaceA, 2, kSpaceA));
  EXPECT_THAT(t->Encode("<s>a"), ElementsAre(1, 1, kSpaceA));
  // Without parse_special the text is plain bytes...
  EXPECT_THAT(t->Encode("</s>", {.add_bos = false, .parse_special = false}),
              ElementsAre(kSpace, kByte0 + '<', kByte0 + '/', kByte0 + 's', kByte0 + '>'));
  // ...but user-defined tokens are always matched.
  EXPECT_THAT(t->Encode("a<tag>", {.add_bos = false, .parse_special = false}), ElementsAre(kSpaceA, kTag));
}

TEST(SpmTest, EndOfTurnTextIsControlAndEndsGeneration) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Kind(kImEnd), TokenKind::kControl);  // the file says normal; llama.cpp overrides
  EXPECT_TRUE(t->IsEog(kImEnd));
  EXPECT_TRUE(t->IsEog(2));
  EXPECT_EQ(t->eot(), kImEnd);
  EXPECT_THAT(t->eog_tokens(), ElementsAre(2, kImEnd));
  EXPECT_EQ(t->Find("<|im_end|>"), kImEnd);
  EXPECT_EQ(t->Find("nope"), std::nullopt);
}

TEST(SpmTest, DecodeStripsOnlyThePrefixSpaceItIsAskedTo) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  const std::vector<Token> hello = {1, kSpaceA, kSpaceAB, 2};
  EXPECT_EQ(t->Decode(hello), " a ab");
  EXPECT_EQ(t->Decode(hello, {.strip_prefix_space = true}), "a ab");
  EXPECT_EQ(t->Decode(hello, {.skip_special = false, .strip_prefix_space = true}), "<s>a ab</s>");
  EXPECT_EQ(t->Decode(hello, {.skip_special = false}), "<s> a ab</s>");
  // Only one space is owed, and only by the first text token.
  EXPECT_EQ(t->Decode(std::vector<Token>{kSpace, kSpaceA}, {.strip_prefix_space = true}), " a");
  EXPECT_EQ(t->Decode(std::vector<Token>{kByte0 + 0xC3, kByte0 + 0xA9}, {.strip_prefix_space = true}), "é");
}

TEST(SpmTest, RoundTrips) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  for (std::string text : {"", " ", "  a", "abc cab\tbca\n", "a</s>b", "日本語 é", "<tag><tag>"}) {
    const std::vector<Token> ids = t->Encode(text, {.add_bos = true, .parse_special = false});
    EXPECT_EQ(t->Decode(ids, {.strip_prefix_space = true}), text) << "'" << text << "'";
  }
}

TEST(SpmTest, PiecesAndKinds) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 270);
  EXPECT_EQ(t->Piece(kSpaceAB), " ab");
  EXPECT_EQ(t->Text(kSpaceAB), "\u2581ab");
  EXPECT_EQ(t->Piece(kByte0 + 0x0A), "\n");
  EXPECT_EQ(t->Piece(1), "<s>");
  EXPECT_EQ(t->Kind(kByte0), TokenKind::kByte);
  EXPECT_EQ(t->Kind(0), TokenKind::kUnknown);
  EXPECT_EQ(t->Kind(kTag), TokenKind::kUserDefined);
  EXPECT_TRUE(t->IsSpecial(0));
  EXPECT_TRUE(t->IsSpecial(1));
  EXPECT_FALSE(t->IsSpecial(kTag));
  EXPECT_FALSE(t->IsValid(270));
  EXPECT_FALSE(t->IsValid(-1));
}

TEST(SpmTest, InvalidIdsRenderAsNothingAndCheckTokensNamesThem) {
  auto t = Build(SpmVocab());
  ASSERT_NE(t, nullptr);
  const std::vector<Token> ids = {kA, 9999, -3, kB};
  EXPECT_EQ(t->Decode(ids), "ab");
  const Status status = t->CheckTokens(ids);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("token id 9999 at position 1"));
  EXPECT_TRUE(t->CheckTokens(std::vector<Token>{0, 269}).ok());
}

}  // namespace
}  // namespace kvstack
