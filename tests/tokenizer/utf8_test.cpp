// UTF-8 helpers and GPT-2's byte alphabet.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace kvstack::tokenizer_impl {
namespace {

TEST(Utf8Test, SequenceLengthCountsLikeLlamaCpp) {
  EXPECT_EQ(Utf8SequenceLength('a'), 1u);
  EXPECT_EQ(Utf8SequenceLength(0x80), 1u);  // a stray continuation byte is a character of its own
  EXPECT_EQ(Utf8SequenceLength(0xC3), 2u);
  EXPECT_EQ(Utf8SequenceLength(0xE6), 3u);
  EXPECT_EQ(Utf8SequenceLength(0xF0), 4u);
  EXPECT_EQ(Utf8SequenceLength(0xFF), 4u);
}

TEST(Utf8Test, WellFormedPrefixFollowsTable3_7) {
  EXPECT_EQ(WellFormedPrefix("a"), 1u);
  EXPECT_EQ(WellFormedPrefix("é!"), 2u);
  EXPECT_EQ(WellFormedPrefix("日"), 3u);
  EXPECT_EQ(WellFormedPrefix("🦙"), 4u);
  EXPECT_EQ(WellFormedPrefix(""), 0u);
  EXPECT_EQ(WellFormedPrefix("\xC0\x80"), 0u);          // overlong
  EXPECT_EQ(WellFormedPrefix("\xE0\x80\x80"), 0u);      // overlong
  EXPECT_EQ(WellFormedPrefix("\xED\xA0\x80"), 0u);      // surrogate
  EXPECT_EQ(WellFormedPrefix("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(WellFormedPrefix("\xE6\x97"), 0u);          // truncated
  EXPECT_EQ(WellFormedPrefix("\x80"), 0u);
}

TEST(Utf8Test, EveryInvalidByteBecomesOneReplacementCharacter) {
  EXPECT_EQ(ToWellFormedUtf8("ok é"), "ok é");
  EXPECT_EQ(ToWellFormedUtf8("a\xFF" "b"), "a\uFFFD" "b");
  EXPECT_EQ(ToWellFormedUtf8("\xE6\x97"), "\uFFFD\uFFFD");
  EXPECT_EQ(ToWellFormedUtf8("\xE6\x97\xA5"), "日");
  EXPECT_TRUE(IsWellFormedUtf8("日本 🦙"));
  EXPECT_FALSE(IsWellFormedUtf8("日\xE6"));
}

TEST(Utf8Test, CompletePrefixHoldsBackOnlyCharactersThatCanStillComplete) {
  EXPECT_EQ(CompleteUtf8Prefix(""), 0u);
  EXPECT_EQ(CompleteUtf8Prefix("ab"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xE6"), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xE6\x97"), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xE6\x97\xA5"), 4u);
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\xA6"), 0u);
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\xA6\x99"), 4u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xFF"), 2u);      // cannot start a character
  EXPECT_EQ(CompleteUtf8Prefix("a\xE0\x80"), 3u);  // an overlong start never completes
  EXPECT_EQ(CompleteUtf8Prefix("a\x80"), 2u);      // a stray continuation byte
}

TEST(Utf8Test, EncodeAndDecodeCodePoints) {
  for (uint32_t cp : {0x41u, 0xE9u, 0x65E5u, 0x1F999u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, &s);
    EXPECT_EQ(WellFormedPrefix(s), s.size());
    size_t pos = 0;
    EXPECT_EQ(DecodeUtf8(s, &pos), cp);
    EXPECT_EQ(pos, s.size());
  }
}

TEST(ByteLevelTest, AlphabetMatchesGpt2) {
  EXPECT_EQ(ByteToCodePoint('!'), 0x21u);
  EXPECT_EQ(ByteToCodePoint(' '), 0x120u);   // "Ġ"
  EXPECT_EQ(ByteToCodePoint('\n'), 0x10Au);  // "Ċ"
  EXPECT_EQ(ByteToCodePoint(0x00), 0x100u);
  EXPECT_EQ(ByteToCodePoint(0x7F), 0x121u);
  EXPECT_EQ(ByteToCodePoint(0xAD), 0x143u);  // the last of the 68 moved bytes
  EXPECT_EQ(ByteToCodePoint(0xFF), 0xFFu);
  std::set<uint32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = ByteToCodePoint(static_cast<uint8_t>(b));
    seen.insert(cp);
    EXPECT_EQ(CodePointToByte(cp), b);
  }
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(CodePointToByte(0x20), std::nullopt);
  EXPECT_EQ(CodePointToByte(0x144), std::nullopt);
}

TEST(ByteLevelTest, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(all)), all);
  EXPECT_EQ(ByteLevelEncode("a b\n"), "aĠbĊ");
  EXPECT_EQ(ByteLevelDecode("ĠhelloĊ"), " hello\n");
  EXPECT_EQ(ByteLevelDecode("日"), "日");       // outside the alphabet: copied
  EXPECT_EQ(ByteLevelDecode("\xFF"), "\xFF");  // malformed: copied
}

}  // namespace
}  // namespace kvstack::tokenizer_impl
