// The wire codec: kvstack's batches round-trip exactly; another engine's
// payloads (int hashes, no priority) decode; bad payloads name what is wrong.
#include "kvstack/kv_event_wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kvstack {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(KvEventWireTest, HashBytesRoundTripHiFirstBigEndian) {
  const BlockHash h{.lo = 0x0102030405060708ull, .hi = 0x1112131415161718ull};
  const std::string b = HashBytes(h);
  ASSERT_EQ(b.size(), 16u);
  EXPECT_EQ(static_cast<unsigned char>(b[0]), 0x11);
  EXPECT_EQ(static_cast<unsigned char>(b[15]), 0x08);
  EXPECT_EQ(HashFromBytes(b), h);
  EXPECT_FALSE(HashFromBytes("short").has_value());
}

TEST(KvEventWireTest, SeqFrameIsEightBytesBigEndian) {
  EXPECT_EQ(SeqFrame(1), std::string("\0\0\0\0\0\0\0\1", 8));
  EXPECT_EQ(SeqFrame(-1), std::string(8, '\xff'));
  EXPECT_EQ(SeqFromFrame(SeqFrame(123456789012)), 123456789012);
  EXPECT_FALSE(SeqFromFrame("1234").has_value());
}

TEST(KvEventWireTest, CacheBatchRoundTrips) {
  KvEventLog log(100);
  const BlockHash a{1, 2}, b{3, 4};
  const std::vector<Token> ta = {1, 2, 3, 4}, tb = {5, 6, 7, 8};
  log.BlockStored(a, {}, ta, StorageTier::kDevice, 90);
  log.BlockStored(b, a, tb, StorageTier::kHost);
  log.BlockRemoved(a, StorageTier::kDisk);
  log.AllCleared(StorageTier::kDevice);
  log.AllCleared(StorageTier::kRemote);
  auto decoded = DecodeWireBatch(EncodeKvEventBatch(log.Drain(), 4, 1234.5));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->ts, 1234.5);
  EXPECT_EQ(decoded->data_parallel_rank, 0);
  ASSERT_EQ(decoded->events.size(), 5u);
  const WireEvent& s0 = decoded->events[0];
  EXPECT_EQ(s0.kind, KvEventKind::kBlockStored);
  EXPECT_THAT(s0.block_hashes, ElementsAre(HashBytes(a)));
  EXPECT_FALSE(s0.parent.has_value());
  EXPECT_THAT(s0.token_ids, ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(s0.block_size, 4);
  EXPECT_EQ(s0.medium, "GPU");
  EXPECT_EQ(s0.priority, 90);
  const WireEvent& s1 = decoded->events[1];
  EXPECT_EQ(s1.parent, HashBytes(a));
  EXPECT_EQ(s1.medium, "CPU");
  EXPECT_EQ(s1.priority, kDefaultPriority);
  EXPECT_EQ(decoded->events[2].kind, KvEventKind::kBlockRemoved);
  EXPECT_EQ(decoded->events[2].medium, "DISK");
  EXPECT_EQ(decoded->events[3].kind, KvEventKind::kAllCleared);
  EXPECT_FALSE(decoded->events[3].medium.has_value());  // vLLM's plain form for the device pool
  EXPECT_EQ(decoded->events[4].medium, "REDIS");
  EXPECT_EQ(MediumTier(*decoded->events[4].medium), StorageTier::kRemote);
}

// What vLLM itself sends: int hashes, seven fields, no data_parallel_rank.
TEST(KvEventWireTest, DecodesAnotherEnginesBatch) {
  WireBatch batch{.ts = 1.0, .events = {}, .data_parallel_rank = std::nullopt};
  WireEvent e{.kind = KvEventKind::kBlockStored,
              .block_hashes = {std::string(32, 'x'), std::string(32, 'y')},
              .parent = std::string(32, 'p'),
              .token_ids = {1, 2, 3, 4},
              .block_size = 2,
              .lora_id = std::nullopt,
              .medium = std::nullopt,
              .priority = std::nullopt};
  batch.events.push_back(e);
  auto decoded = DecodeWireBatch(EncodeWireBatch(batch));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_FALSE(decoded->data_parallel_rank.has_value());
  ASSERT_EQ(decoded->events.size(), 1u);
  EXPECT_EQ(decoded->events[0].block_hashes.size(), 2u);
  EXPECT_EQ(decoded->events[0].block_hashes[1], std::string(32, 'y'));
  EXPECT_FALSE(decoded->events[0].priority.has_value());
  EXPECT_FALSE(decoded->events[0].medium.has_value());
}

TEST(KvEventWireTest, BadPayloadsNameWhatIsWrong) {
  EXPECT_THAT(DecodeWireBatch("\xc1").status().message(), HasSubstr("not msgpack"));
  EXPECT_THAT(DecodeWireBatch(std::string("\x91\x01", 2)).status().message(), HasSubstr("[ts, events"));
  WireBatch batch{.ts = 1.0, .events = {WireEvent{.kind = KvEventKind::kBlockStored, .block_size = 0}}};
  EXPECT_THAT(DecodeWireBatch(EncodeWireBatch(batch)).status().message(), HasSubstr("event 0.block_size"));
}

}  // namespace
}  // namespace kvstack
