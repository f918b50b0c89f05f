// StopMatcher tests: what a streaming client sees, piece by piece.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kvstack/sampler.h"

namespace kvstack {
namespace {

// Feeds every piece and returns what was emitted after each one.
struct Stream {
  std::vector<std::string> emitted;
  std::optional<size_t> stop_index;
  std::string flushed;
};

Stream StreamPieces(std::vector<std::string> stops, const std::vector<std::string>& pieces) {
  StopMatcher m(std::move(stops));
  Stream s;
  for (const std::string& piece : pieces) {
    StopMatcher::Output out = m.Feed(piece);
    s.emitted.push_back(out.text);
    s.stop_index = out.stop_index;
  }
  s.flushed = m.Flush();
  return s;
}

using ::testing::ElementsAre;

TEST(StopMatcherTest, NoStopStringsPassesTextThrough) {
  Stream s = StreamPieces({}, {"Hello", ", ", "world"});
  EXPECT_THAT(s.emitted, ElementsAre("Hello", ", ", "world"));
  EXPECT_FALSE(s.stop_index);
  EXPECT_EQ(s.flushed, "");
}

TEST(StopMatcherTest, StopInsideOnePiece) {
  Stream s = StreamPieces({"END"}, {"abc", "xyENDzz", "more"});
  EXPECT_THAT(s.emitted, ElementsAre("abc", "xy", ""));
  EXPECT_EQ(s.stop_index, 0u);
  EXPECT_EQ(s.flushed, "");
}

TEST(StopMatcherTest, StopSplitAcrossPieces) {
  Stream s = StreamPieces({"</answer>"}, {"42 </", "ans", "wer> trailing"});
  // "</" and "ans" could start the stop string: held, never shown.
  EXPECT_THAT(s.emitted, ElementsAre("42 ", "", ""));
  EXPECT_EQ(s.stop_index, 0u);
}

TEST(StopMatcherTest, AFalseStartIsReleasedOnceItDiverges) {
  Stream s = StreamPieces({"</answer>"}, {"a </an", "t> b"});
  EXPECT_THAT(s.emitted, ElementsAre("a ", "</ant> b"));
  EXPECT_FALSE(s.stop_index);
}

TEST(StopMatcherTest, HeldTextIsFlushedAtTheEnd) {
  Stream s = StreamPieces({"STOP"}, {"done ST"});
  EXPECT_THAT(s.emitted, ElementsAre("done "));
  EXPECT_EQ(s.flushed, "ST");
}

TEST(StopMatcherTest, OverlappingPrefixOfItself) {
  // "ababc" inside "abababc": after "abab" the held tail must be the whole
  // "abab" (a prefix), and the match starts two bytes in.
  Stream s = StreamPieces({"ababc"}, {"ab", "ab", "ab", "c!"});
  EXPECT_THAT(s.emitted, ElementsAre("", "", "ab", ""));
  EXPECT_EQ(s.stop_index, 0u);
}

TEST(StopMatcherTest, RepeatedFirstCharacter) {
  Stream s = StreamPieces({"abc"}, {"a", "a", "bc"});
  EXPECT_THAT(s.emitted, ElementsAre("", "a", ""));
  EXPECT_EQ(s.stop_index, 0u);
}

TEST(StopMatcherTest, TheEarliestOfSeveralStopsWins) {
  Stream s = StreamPieces({"world", "lo, w"}, {"Hello, world"});
  EXPECT_THAT(s.emitted, ElementsAre("Hel"));
  EXPECT_EQ(s.stop_index, 1u);
}

TEST(StopMatcherTest, StopsSharingAPrefixHoldTheLongestCandidate) {
  Stream s = StreamPieces({"\n\n", "\nUser:"}, {"hi\nUs", "er", ": next"});
  EXPECT_THAT(s.emitted, ElementsAre("hi", "", ""));
  EXPECT_EQ(s.stop_index, 1u);
  Stream t = StreamPieces({"\n\n", "\nUser:"}, {"hi\nUs", "e!"});
  EXPECT_THAT(t.emitted, ElementsAre("hi", "\nUse!"));
}

TEST(StopMatcherTest, NothingAfterAStop) {
  StopMatcher m({"x"});
  EXPECT_EQ(m.Feed("ax").stop_index, 0u);
  EXPECT_TRUE(m.stopped());
  StopMatcher::Output out = m.Feed("more");
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(out.stop_index, 0u);
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, IncompleteUtf8IsHeldUntilTheCharacterEnds) {
  // "é" is C3 A9 and "€" is E2 82 AC; byte tokens deliver them a byte at a time.
  Stream s = StreamPieces({}, {"caf\xC3", "\xA9", " \xE2\x82", "\xAC"});
  EXPECT_THAT(s.emitted, ElementsAre("caf", "\xC3\xA9", " ", "\xE2\x82\xAC"));
}

TEST(StopMatcherTest, MultiByteStopStringSplitMidCharacter) {
  // The stop string is "。" (E3 80 82), split inside the character.
  Stream s = StreamPieces({"\xE3\x80\x82"}, {"\xE4\xBD\xA0\xE5\xA5\xBD\xE3", "\x80", "\x82\xE5\x90\x97"});
  EXPECT_THAT(s.emitted, ElementsAre("\xE4\xBD\xA0\xE5\xA5\xBD", "", ""));
  EXPECT_EQ(s.stop_index, 0u);
}

TEST(StopMatcherTest, InvalidBytesAreNotHeldForever) {
  // A stray continuation byte can never complete; waiting would stall output.
  Stream s = StreamPieces({}, {"a\x80", "b\xFF"});
  EXPECT_THAT(s.emitted, ElementsAre("a\x80", "b\xFF"));
}

TEST(StopMatcherTest, FlushReturnsAnUnfinishedCharacter) {
  Stream s = StreamPieces({}, {"x\xF0\x9F"});
  EXPECT_THAT(s.emitted, ElementsAre("x"));
  EXPECT_EQ(s.flushed, "\xF0\x9F");
}

TEST(StopMatcherTest, EmptyStopStringsAreIgnored) {
  Stream s = StreamPieces({""}, {"abc"});
  EXPECT_THAT(s.emitted, ElementsAre("abc"));
  EXPECT_FALSE(s.stop_index);
}

}  // namespace
}  // namespace kvstack
