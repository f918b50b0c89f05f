// StreamDecoder: whole characters only, and the same text as Decode.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "kvstack/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab_image.h"

namespace kvstack {
namespace {

using testing::ByteAlphabet;
using testing::VocabImage;

// GPT-2's alphabet (token b is byte b), "Ġhello" and two control tokens.
constexpr Token kSpaceHello = 256, kEnd = 257, kStart = 258;

std::unique_ptr<Tokenizer> ByteVocab() {
  std::vector<std::string> tokens = ByteAlphabet();
  tokens.push_back("Ġhello");
  tokens.push_back("<|end|>");
  tokens.push_back("<|start|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types[kEnd] = types[kStart] = 3;
  auto t = VocabImage()
               .Str("tokenizer.ggml.model", "gpt2")
               .Str("tokenizer.ggml.pre", "gpt-2")
               .StrArray("tokenizer.ggml.tokens", tokens)
               .I32Array("tokenizer.ggml.token_type", types)
               .StrArray("tokenizer.ggml.merges", {"Ġ h"})
               .Build();
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

std::vector<Token> BytesOf(std::string_view text) {
  std::vector<Token> ids;
  for (char c : text) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

TEST(StreamDecoderTest, HoldsBackASplitCharacter) {
  auto t = ByteVocab();
  ASSERT_NE(t, nullptr);
  StreamDecoder stream(*t);
  const std::vector<Token> llama = BytesOf("🦙");
  EXPECT_EQ(stream.Push(llama[0]), "");
  EXPECT_EQ(stream.Push(llama[1]), "");
  EXPECT_EQ(stream.Push(llama[2]), "");
  EXPECT_EQ(stream.pending_bytes(), 3u);
  EXPECT_EQ(stream.Push(llama[3]), "🦙");
  EXPECT_EQ(stream.pending_bytes(), 0u);
  EXPECT_EQ(stream.Push(kSpaceHello), " hello");
  EXPECT_EQ(stream.Push('!'), "!");
  EXPECT_EQ(stream.Flush(), "");
}

TEST(StreamDecoderTest, ReleasesBytesThatCannotCompleteAndFlushesTheRest) {
  auto t = ByteVocab();
  ASSERT_NE(t, nullptr);
  StreamDecoder stream(*t);
  EXPECT_EQ(stream.Push(0xFF), "\xFF");
  EXPECT_EQ(stream.Push(0xE6), "");
  EXPECT_EQ(stream.Push('a'), "\xE6" "a");  // the lead byte was not followed by a continuation
  EXPECT_EQ(stream.Push(0xE6), "");
  EXPECT_EQ(stream.Push(0x97), "");
  EXPECT_EQ(stream.Flush(), "\xE6\x97");
  EXPECT_EQ(stream.Push(0xA5), "\xA5");  // after Flush the stream continues; a stray byte is released
}

TEST(StreamDecoderTest, SpecialTokensFollowTheOptions) {
  auto t = ByteVocab();
  ASSERT_NE(t, nullptr);
  StreamDecoder skipping(*t);
  EXPECT_EQ(skipping.Push(kStart), "");
  EXPECT_EQ(skipping.Push(kEnd), "");
  EXPECT_EQ(skipping.Push(-1), "");  // invalid ids render as nothing, as in Decode
  // A skipped special token between the bytes of a character does not split it.
  const std::vector<Token> e = BytesOf("é");
  EXPECT_EQ(skipping.Push(e[0]), "");
  EXPECT_EQ(skipping.Push(kEnd), "");
  EXPECT_EQ(skipping.Push(e[1]), "é");
  // A rendered one is text, which ends the pending character as it is.
  StreamDecoder rendering(*t, {.skip_special = false});
  EXPECT_EQ(rendering.Push(kStart), "<|start|>");
  EXPECT_EQ(rendering.Push(e[0]), "");
  EXPECT_EQ(rendering.Push(kEnd), "\xC3<|end|>");
  EXPECT_EQ(rendering.Push(e[1]), "\xA9");
}

// Random streams of whole characters cut into byte tokens, with specials and
// merged tokens mixed in: every chunk is well-formed, and all chunks together
// are Decode's text.
TEST(StreamDecoderTest, RandomStreamsMatchDecode) {
  auto t = ByteVocab();
  ASSERT_NE(t, nullptr);
  const std::vector<std::string> characters = {"a", " ", "\n", "é", "日", "🦙", "ÿ", "\u0085"};
  std::mt19937 rng(17);
  for (int round = 0; round < 500; ++round) {
    std::vector<Token> ids;
    const int length = static_cast<int>(rng() % 20);
    for (int i = 0; i < length; ++i) {
      const uint32_t pick = rng() % (characters.size() + 2);
      if (pick == characters.size()) {
        ids.push_back(rng() % 2 ? kEnd : kStart);
      } else if (pick == characters.size() + 1) {
        ids.push_back(kSpaceHello);
      } else {
        for (Token b : BytesOf(characters[pick])) ids.push_back(b);
      }
    }
    for (bool skip_special : {true, false}) {
      const Tokenizer::DecodeOptions options = {.skip_special = skip_special};
      StreamDecoder stream(*t, options);
      std::string streamed;
      for (Token id : ids) {
        const std::string chunk = stream.Push(id);
        EXPECT_TRUE(tokenizer_impl::IsWellFormedUtf8(chunk)) << "round " << round;
        streamed += chunk;
      }
      EXPECT_EQ(stream.pending_bytes(), 0u);
      streamed += stream.Flush();
      EXPECT_EQ(streamed, t->Decode(ids, options)) << "round " << round;
    }
  }
}

TEST(StreamDecoderTest, StripsThePrefixSpaceLikeDecode) {
  auto t = VocabImage()
               .Str("tokenizer.ggml.model", "llama")
               .StrArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\u2581hi", "<0xC3>", "<0xA9>"})
               .I32Array("tokenizer.ggml.token_type", {2, 3, 3, 1, 6, 6})
               .Build();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<Token> ids = {1, 3, 4, 5, 3};
  for (bool strip : {false, true}) {
    const Tokenizer::DecodeOptions options = {.strip_prefix_space = strip};
    StreamDecoder stream(**t, options);
    std::string streamed;
    for (Token id : ids) streamed += stream.Push(id);
    EXPECT_EQ(streamed + stream.Flush(), (*t)->Decode(ids, options));
  }
  EXPECT_EQ((*t)->Decode(ids, {.strip_prefix_space = true}), "hié hi");
}

TEST(TokenizerThreadsTest, ConcurrentEncodeAndDecodeAgree) {
  auto t = ByteVocab();
  ASSERT_NE(t, nullptr);
  const std::string text = "hello 日本 🦙 hello\n<|end|> x";
  const std::vector<Token> expected = t->Encode(text);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 200; ++round) {
        const std::vector<Token> ids = t->Encode(text);
        mismatches[i] += ids != expected || t->Decode(ids, {.skip_special = false}) != text;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ::testing::Each(0));
}

}  // namespace
}  // namespace kvstack
