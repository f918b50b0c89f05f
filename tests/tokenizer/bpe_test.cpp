// Byte-level BPE on a hand-built vocabulary (GPT-2's 256-character alphabet
// plus a few merges), and the GPT-2, Llama-3, Qwen2 and default
// pre-tokenizers on hand-made strings; no vocabulary file of ../shared uses
// the latter three.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kvstack/tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab_image.h"

namespace kvstack {
namespace {

using ::testing::ElementsAre;
using testing::ByteAlphabet;
using testing::ByteSpelling;
using testing::VocabImage;

// ids 0..255 spell the bytes (token b is byte b); then:
constexpr Token kHe = 256, kLl = 257, kHell = 258, kHello = 259, kSpaceW = 260, kOr = 261, kSpaceWor = 262,
                kLd = 263, kSpaceWorld = 264, kEndOfText = 265, kImStart = 266, kImEnd = 267, kXyz = 268;

VocabImage BpeVocab(std::string_view pre) {
  std::vector<std::string> tokens = ByteAlphabet();
  for (const char* t : {"he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "<|endoftext|>",
                        "<|im_start|>", "<|im_end|>", "xyz"}) {
    tokens.push_back(t);
  }
  std::vector<int32_t> types(tokens.size(), 1);
  types[kEndOfText] = types[kImStart] = types[kImEnd] = 3;
  VocabImage image;
  image.Str("tokenizer.ggml.model", "gpt2")
      .Str("tokenizer.ggml.pre", pre)
      .StrArray("tokenizer.ggml.tokens", tokens)
      .I32Array("tokenizer.ggml.token_type", types)
      // Ranks in list order: "l l" merges before "h e".
      .StrArray("tokenizer.ggml.merges",
                {"l l", "h e", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "x y"})
      .U32("tokenizer.ggml.bos_token_id", kEndOfText)
      .U32("tokenizer.ggml.eos_token_id", kEndOfText);
  return image;
}

std::unique_ptr<Tokenizer> Build(const VocabImage& image) {
  auto tokenizer = image.Build();
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

Token Byte(char c) { return static_cast<uint8_t>(c); }

TEST(BpeTest, LowestRankMergesFirst) {
  auto t = Build(BpeVocab("gpt-2"));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("hello world"), ElementsAre(kHello, kSpaceWorld));
  EXPECT_THAT(t->Encode("hell"), ElementsAre(kHell));
  // Two "l l" pairs of equal rank: the leftmost merges.
  EXPECT_THAT(t->Encode("lll"), ElementsAre(kLl, Byte('l')));
  // Merges never cross pre-tokenizer words: "o" and " w" stay apart.
  EXPECT_THAT(t->Encode("o world"), ElementsAre(Byte('o'), kSpaceWorld));
  // "x y" makes "xy", which is no token: its characters are emitted.
  EXPECT_THAT(t->Encode("xy"), ElementsAre(Byte('x'), Byte('y')));
}

TEST(BpeTest, DefaultsFollowThePreTokenizer) {
  auto gpt2 = Build(BpeVocab("gpt-2"));
  ASSERT_NE(gpt2, nullptr);
  EXPECT_FALSE(gpt2->add_bos());
  EXPECT_FALSE(gpt2->add_space_prefix());
  EXPECT_EQ(gpt2->pre_name(), "gpt-2");
  EXPECT_THAT(gpt2->Encode("xyz"), ElementsAre(Byte('x'), Byte('y'), Byte('z')));

  // Llama 3: BOS by default, and a word that is a token is not merged.
  auto llama3 = Build(BpeVocab("llama-bpe"));
  ASSERT_NE(llama3, nullptr);
  EXPECT_TRUE(llama3->add_bos());
  EXPECT_THAT(llama3->Encode("xyz"), ElementsAre(kEndOfText, kXyz));
  EXPECT_THAT(llama3->Encode("xyz", {.add_bos = false}), ElementsAre(kXyz));

  auto qwen2 = Build(BpeVocab("qwen2"));
  ASSERT_NE(qwen2, nullptr);
  EXPECT_FALSE(qwen2->add_bos());
  auto qwen2_bos = Build(BpeVocab("qwen2").Bool("tokenizer.ggml.add_bos_token", true));
  ASSERT_NE(qwen2_bos, nullptr);
  EXPECT_THAT(qwen2_bos->Encode("hello"), ElementsAre(kEndOfText, kHello));
}

TEST(BpeTest, SpecialTokens) {
  auto t = Build(BpeVocab("qwen2"));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(t->Encode("<|im_start|>hello<|im_end|>"), ElementsAre(kImStart, kHello, kImEnd));
  // Unlike SentencePiece, no space is added after a special token.
  EXPECT_THAT(t->Encode("<|im_start|> world"), ElementsAre(kImStart, kSpaceWorld));
  // As plain text: the words "<|", "im", "_end", "|>", none of which merges.
  const std::vector<Token> plain = t->Encode("<|im_end|>", {.parse_special = false});
  EXPECT_THAT(plain, ElementsAre(Byte('<'), Byte('|'), Byte('i'), Byte('m'), Byte('_'), Byte('e'), Byte('n'),
                                 Byte('d'), Byte('|'), Byte('>')));
  EXPECT_EQ(t->Decode(plain), "<|im_end|>");
  EXPECT_TRUE(t->IsEog(kImEnd));
  EXPECT_TRUE(t->IsEog(kEndOfText));
  EXPECT_FALSE(t->IsEog(kImStart));
  EXPECT_EQ(t->Decode(std::vector<Token>{kImStart, kHello, kImEnd}), "hello");
  EXPECT_EQ(t->Decode(std::vector<Token>{kImStart, kHello, kImEnd}, {.skip_special = false}),
            "<|im_start|>hello<|im_end|>");
}

TEST(BpeTest, InvalidUtf8BecomesReplacementCharacters) {
  auto t = Build(BpeVocab("gpt-2"));
  ASSERT_NE(t, nullptr);
  // One U+FFFD (EF BF BD) per invalid byte.
  EXPECT_THAT(t->Encode("a\xFF\xC3"), ElementsAre(Byte('a'), 0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD));
  EXPECT_EQ(t->Decode(t->Encode("a\xFF")), "a\xEF\xBF\xBD");
}

TEST(BpeTest, RoundTrips) {
  auto t = Build(BpeVocab("llama-bpe"));
  ASSERT_NE(t, nullptr);
  for (std::string text : {"", " ", "hello world", "  \n\n\t x", "日本語 é 🦙", "I'M 12345!!"}) {
    EXPECT_EQ(t->Decode(t->Encode(text)), text) << "'" << text << "'";
  }
  EXPECT_EQ(t->Piece(kSpaceWorld), " world");
  EXPECT_EQ(t->Piece(Byte('\n')), "\n");
  EXPECT_EQ(t->Text(Byte('\n')), "Ċ");
}

// ---------------------------------------------------------------------------
// Pre-tokenizers on their own.

std::vector<std::string> Words(std::string_view pre, std::string_view text) {
  auto spec = tokenizer_impl::LookupPreTokenizer(pre);
  EXPECT_TRUE(spec.has_value()) << pre;
  if (!spec) return {};
  auto pretokenizer = tokenizer_impl::PreTokenizer::Compile(spec->patterns);
  EXPECT_TRUE(pretokenizer.ok()) << pretokenizer.status().ToString();
  if (!pretokenizer.ok()) return {};
  std::vector<std::string> words;
  for (std::string_view w : pretokenizer->Split(text)) words.emplace_back(w);
  return words;
}

TEST(PreTokenizerTest, Gpt2) {
  EXPECT_THAT(Words("gpt-2", "Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Words("gpt-2", "I'm here"), ElementsAre("I", "'m", " here"));
  EXPECT_THAT(Words("gpt-2", "I'M"), ElementsAre("I", "'", "M"));  // contractions are case-sensitive
  EXPECT_THAT(Words("gpt-2", "1234567 apples"), ElementsAre("1234567", " apples"));
  EXPECT_THAT(Words("gpt-2", "a  b"), ElementsAre("a", " ", " b"));
  EXPECT_THAT(Words("gpt-2", "a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(Words("gpt-2", "a  "), ElementsAre("a", "  "));
  EXPECT_THAT(Words("gpt-2", ".Hello"), ElementsAre(".", "Hello"));
  EXPECT_THAT(Words("gpt-2", "\n\n\n"), ElementsAre("\n\n\n"));
}

TEST(PreTokenizerTest, Llama3) {
  EXPECT_THAT(Words("llama-bpe", "Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Words("llama-bpe", "I'M here"), ElementsAre("I", "'M", " here"));  // case-insensitive
  EXPECT_THAT(Words("llama-bpe", "1234567"), ElementsAre("123", "456", "7"));
  EXPECT_THAT(Words("llama-bpe", ".Hello"), ElementsAre(".Hello"));
  EXPECT_THAT(Words("llama-bpe", "$100"), ElementsAre("$", "100"));
  EXPECT_THAT(Words("llama-bpe", "x  \n"), ElementsAre("x", "  \n"));
  EXPECT_THAT(Words("llama-bpe", "Hello!!\n\nWorld"), ElementsAre("Hello", "!!\n\n", "World"));
  EXPECT_THAT(Words("llama-bpe", "a  b"), ElementsAre("a", " ", " b"));
  EXPECT_THAT(Words("llama-bpe", "  hi"), ElementsAre(" ", " hi"));
  EXPECT_THAT(Words("llama-bpe", "\n\n\n"), ElementsAre("\n\n\n"));
  EXPECT_THAT(Words("llama-bpe", "日本語です"), ElementsAre("日本語です"));
  EXPECT_THAT(Words("llama3", "don't"), ElementsAre("don", "'t"));
}

TEST(PreTokenizerTest, Qwen2SplitsEveryDigit) {
  EXPECT_THAT(Words("qwen2", "1234567"), ElementsAre("1", "2", "3", "4", "5", "6", "7"));
  EXPECT_THAT(Words("qwen2", "I'M x2"), ElementsAre("I", "'M", " x", "2"));
  EXPECT_THAT(Words("qwen2", "你好世界"), ElementsAre("你好世界"));
  EXPECT_THAT(Words("qwen2", "<|im_end|>"), ElementsAre("<|", "im", "_end", "|>"));
}

TEST(PreTokenizerTest, DefaultAppliesItsPatternsInTurn) {
  EXPECT_THAT(Words("", "Hello, world! 123"), ElementsAre("Hello", ",", " world", "!", " ", "123"));
  EXPECT_THAT(Words("default", "x 12345"), ElementsAre("x", " ", "123", "45"));
}

TEST(PreTokenizerTest, WhitespaceIsUnicodeWhiteSpace) {
  // U+0085 (NEL) is White_Space, though not PCRE2's \s; U+00A0 is both.
  EXPECT_THAT(Words("gpt-2", "!\u0085!"), ElementsAre("!", "\u0085", "!"));
  EXPECT_THAT(Words("gpt-2", "!\u00A0\u00A0!"), ElementsAre("!", "\u00A0", "\u00A0", "!"));
  EXPECT_THAT(Words("llama-bpe", "a\u3000\u3000"), ElementsAre("a", "\u3000\u3000"));
}

TEST(PreTokenizerTest, UnknownNamesAreNotSupported) {
  EXPECT_FALSE(tokenizer_impl::LookupPreTokenizer("deepseek-coder").has_value());
  EXPECT_THAT(tokenizer_impl::SupportedPreTokenizerNames(), ::testing::HasSubstr("llama-bpe"));
}

TEST(PreTokenizerTest, WhitespaceClassesExpand) {
  const std::string expanded = tokenizer_impl::ExpandWhitespaceClasses(R"([^\s\p{L}]\s+(?!\S)\[\s)");
  EXPECT_THAT(expanded, ::testing::StartsWith(R"([^\x{09}-\x{0D})"));
  EXPECT_THAT(expanded, ::testing::HasSubstr(R"((?![^\x{09}-\x{0D})"));
  EXPECT_THAT(expanded, ::testing::HasSubstr(R"(\[[\x{09})"));  // an escaped '[' opens no class
  EXPECT_EQ(expanded.find("\\s"), std::string::npos);
}

}  // namespace
}  // namespace kvstack
