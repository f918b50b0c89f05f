// Trace readers (Mooncake, Azure, kvstack), the writer, content tokens and
// the synthetic generators.
#include <filesystem>
#include <fstream>
#include <optional>

#include <gtest/gtest.h>

#include "kvstack/trace.h"
#include "common/requirement.h"

namespace kvstack::sim {
namespace {

namespace fs = std::filesystem;

class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvstack_trace_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p;
  }
  fs::path dir_;
};

TEST_F(TraceTest, ReadsMooncake) {
  const fs::path p = Write("m.jsonl",
                           "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [0, 1]}\n"
                           "\n"
                           "{\"timestamp\": 1500, \"input_length\": 512, \"output_length\": 7, \"hash_ids\": [0]}\n");
  auto t = ReadTrace(p, TraceFormat::kMooncake);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->requests.size(), 2u);
  EXPECT_EQ(t->block_tokens, 512);
  EXPECT_EQ(t->requests[1].arrival_us, 1'500'000);
  EXPECT_EQ(t->requests[0].input_tokens, 600);
  EXPECT_EQ(t->requests[0].block_ids, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(DetectTraceFormat(p).value(), TraceFormat::kMooncake);
}

TEST_F(TraceTest, BadLinesNameTheirLineNumber) {
  const fs::path p = Write("bad.jsonl",
                           "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [0]}\n"
                           "{\"timestamp\": 0, \"input_length\": -3, \"output_length\": 5, \"hash_ids\": [0]}\n");
  auto t = ReadTrace(p, TraceFormat::kMooncake);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("bad.jsonl:2:"), std::string::npos) << t.status().message();
  EXPECT_NE(t.status().message().find("input_length"), std::string::npos);

  const fs::path q = Write("short.jsonl",
                           "{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [0, 1]}\n");
  auto u = ReadTrace(q, TraceFormat::kMooncake);
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("short.jsonl:1:"), std::string::npos) << u.status().message();

  const fs::path r = Write("junk.jsonl", "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 5, \"hash_ids\": [0]}\nnot json\n");
  auto v = ReadTrace(r, TraceFormat::kMooncake);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("junk.jsonl:2: not a JSON object"), std::string::npos) << v.status().message();
  EXPECT_EQ(ReadTrace(dir_ / "missing.jsonl", TraceFormat::kMooncake).status().code(), StatusCode::kNotFound);
}

TEST_F(TraceTest, ReadsAzure) {
  const fs::path p = Write("a.csv",
                           "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                           "2023-11-16 18:17:03.9799600,4808,10\n"
                           "2023-11-16 18:17:04.0319600,3180,8\r\n");
  auto t = ReadTrace(p, TraceFormat::kAzure);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->requests.size(), 2u);
  EXPECT_EQ(t->requests[0].arrival_us, 0);
  EXPECT_EQ(t->requests[1].arrival_us, 52'000);
  EXPECT_EQ(t->requests[1].input_tokens, 3180);
  EXPECT_EQ(t->requests[1].output_tokens, 8);
  EXPECT_TRUE(t->requests[1].block_ids.empty());
  const fs::path bad = Write("b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,x,10\n");
  auto b = ReadTrace(bad, TraceFormat::kAzure);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("b.csv:2: ContextTokens"), std::string::npos) << b.status().message();
  // Found by fuzz/trace_fuzz.cpp: seconds this large overflowed the arrival time.
  const fs::path huge = Write("h.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,1,1\n"
                                       "2023-11-16 18:17:52333333333333333333333333333.9,1,1\n");
  auto h = ReadTrace(huge, TraceFormat::kAzure);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("h.csv:3: TIMESTAMP"), std::string::npos) << h.status().message();
  EXPECT_NE(h.status().message().find("out of range"), std::string::npos) << h.status().message();
}

// Arrivals are calendar time: a trace may run past the end of a month or a
// year, and a date that does not exist is refused.
TEST_F(TraceTest, AzureArrivalsCrossMonthsAndYears) {
  const fs::path p = Write("months.csv",
                           "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                           "2023-11-30 23:59:59.5000000,10,1\n"
                           "2023-12-01 00:00:00.2500000,10,1\n"
                           "2024-01-01 00:00:01.5000000,10,1\n"
                           "2024-02-29 00:00:01.5000000,10,1\n");
  auto t = ReadTrace(p, TraceFormat::kAzure);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->requests.size(), 4u);
  EXPECT_EQ(t->requests[1].arrival_us, 750'000);
  const Micros day = Micros{86'400} * 1'000'000;
  EXPECT_EQ(t->requests[2].arrival_us, 31 * day + 2'000'000);  // December's 31 days, 0.5 s before, 1.5 s after
  EXPECT_EQ(t->requests[3].arrival_us, 90 * day + 2'000'000);  // + January's 31 and February 1-28's
  const fs::path bad = Write("feb29.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-02-29 10:00:00.0,1,1\n");
  auto b = ReadTrace(bad, TraceFormat::kAzure);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("feb29.csv:2: TIMESTAMP \"2023-02-29 10:00:00.0\": no such date"), std::string::npos)
      << b.status().message();
}

// With an origin, t_ms counts from it (an arrival before it is written as
// 0) and the header records it, so traces written by several servers can be
// put on one time line.
TEST_F(TraceTest, WriterWithAnOriginCountsFromItAndRecordsIt) {
  const fs::path p = dir_ / "origin.jsonl";
  {
    auto w = TraceWriter::Open(p, Micros{9'000'000});
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const std::vector<Token> prompt = {5, 6};
    RecordedRequest r;
    r.prompt = prompt;
    r.output_tokens = 1;
    r.arrival_us = 10'000'000;
    ASSERT_TRUE((*w)->Append(r).ok());
    r.arrival_us = 8'000'000;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  std::ifstream in(p);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, R"({"kvstack_trace": 1, "time_unit": "ms", "origin_us": 9000000})");
  auto t = ReadTrace(p, TraceFormat::kKvstack);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->requests.size(), 2u);
  EXPECT_EQ(t->requests[0].arrival_us, 0);
  EXPECT_EQ(t->requests[1].arrival_us, 1'000'000);
}

TEST_F(TraceTest, WriterRoundTripsThroughTheReader) {
  const fs::path p = dir_ / "rec.jsonl";
  {
    auto w = TraceWriter::Open(p);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const std::vector<Token> a = {5, 6, 7, 8, 9};
    RecordedRequest r;
    r.arrival_us = 10'000'000;
    r.session = "s\"1";
    r.tenant = "acme";
    r.prompt = a;
    r.output_tokens = 12;
    r.ranges = {{0, 3, 90}};
    r.request_priority = 60;
    r.measured_ttft_us = 3'250;
    r.measured_cached_tokens = 4;
    ASSERT_TRUE((*w)->Append(r).ok());
    r.arrival_us = 10'250'000;
    r.session = "";
    r.tenant = "";
    r.ranges.clear();
    r.request_priority = kDefaultPriority;
    r.measured_ttft_us.reset();  // a request the server did not time
    r.measured_cached_tokens.reset();
    ASSERT_TRUE((*w)->Append(r).ok());
    EXPECT_EQ((*w)->lines_written(), 2);
  }
  auto t = ReadTrace(p, TraceFormat::kKvstack);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(DetectTraceFormat(p).value(), TraceFormat::kKvstack);
  ASSERT_EQ(t->requests.size(), 2u);
  const TraceRequest& r0 = t->requests[0];
  EXPECT_EQ(r0.arrival_us, 0);
  EXPECT_EQ(t->requests[1].arrival_us, 250'000);
  EXPECT_EQ(r0.tokens, (std::vector<Token>{5, 6, 7, 8, 9}));
  EXPECT_EQ(r0.output_tokens, 12);
  EXPECT_EQ(t->tenants[r0.tenant], "acme");
  EXPECT_EQ(t->sessions[r0.session], "s\"1");
  ASSERT_EQ(r0.ranges.size(), 1u);
  EXPECT_EQ(r0.ranges[0].end, 3);
  EXPECT_EQ(r0.ranges[0].priority, 90);
  EXPECT_EQ(r0.request_priority, 60);
  EXPECT_TRUE(t->has_priorities);
  EXPECT_EQ(t->requests[1].tenant, 0u);
  EXPECT_EQ(r0.measured_ttft_us, std::optional<Micros>(3'250));
  EXPECT_EQ(r0.measured_cached_tokens, std::optional<int32_t>(4));
  EXPECT_FALSE(t->requests[1].measured_ttft_us.has_value());
  EXPECT_FALSE(t->requests[1].measured_cached_tokens.has_value());
}

TEST_F(TraceTest, MeasuredFieldsAreValidated) {
  const fs::path p = Write("m.jsonl",
                           "{\"t_ms\": 0, \"input_length\": 2, \"output_length\": 1, \"measured_ttft_ms\": 0.5}\n"
                           "{\"t_ms\": 1, \"input_length\": 2, \"output_length\": 1, \"measured_ttft_ms\": -1}\n");
  auto t = ReadTrace(p, TraceFormat::kKvstack);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("m.jsonl:2: \"measured_ttft_ms\" must be a non-negative number"),
            std::string::npos)
      << t.status().message();
  const fs::path q = Write("c.jsonl",
                           "{\"t_ms\": 0, \"input_length\": 2, \"output_length\": 1, \"measured_cached_tokens\": 3}\n");
  auto u = ReadTrace(q, TraceFormat::kKvstack);
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("c.jsonl:1: \"measured_cached_tokens\" 3 exceeds input_length 2"),
            std::string::npos)
      << u.status().message();
  const fs::path ok = Write("ok.jsonl",
                            "{\"t_ms\": 0, \"input_length\": 2, \"output_length\": 1, \"measured_ttft_ms\": 0.5, "
                            "\"measured_cached_tokens\": 0}\n");
  auto v = ReadTrace(ok, TraceFormat::kKvstack);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->requests[0].measured_ttft_us, std::optional<Micros>(500));
  EXPECT_EQ(v->requests[0].measured_cached_tokens, std::optional<int32_t>(0));
}

TEST_F(TraceTest, KvstackFormatWithBlockIdsAndErrors) {
  const fs::path p = Write("k.jsonl",
                           "{\"t_ms\": 2, \"input_length\": 20, \"output_length\": 1, \"block_tokens\": 16, "
                           "\"block_ids\": [4, 5]}\n"
                           "{\"t_ms\": 1, \"input_length\": 3, \"output_length\": 1, \"tokens\": [1, 2]}\n");
  auto t = ReadTrace(p, TraceFormat::kKvstack);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("k.jsonl:2: 2 tokens but input_length 3"), std::string::npos)
      << t.status().message();
  const fs::path q = Write("k2.jsonl",
                           "{\"t_ms\": 2, \"input_length\": 20, \"output_length\": 1, \"block_tokens\": 16, "
                           "\"block_ids\": [4, 5]}\n"
                           "{\"t_ms\": 1, \"input_length\": 16, \"output_length\": 1, \"block_ids\": [4]}\n");
  auto u = ReadTrace(q, TraceFormat::kKvstack);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->block_tokens, 16);
  EXPECT_EQ(u->requests[0].arrival_us, 1000);  // sorted by arrival
}

TEST(ContentTokensTest, EqualIdsGiveEqualTokensAndPrefixesNest) {
  Trace t;
  t.block_tokens = 4;
  TraceRequest a, b, c;
  a.block_ids = {7, 8};
  a.input_tokens = 6;  // a partial second block
  b.block_ids = {7, 8, 9};
  b.input_tokens = 12;
  c.block_ids = {7, 10};
  c.input_tokens = 8;
  std::vector<Token> ta, tb, tc, u1, u2;
  ContentTokens(t, a, 0, &ta);
  ContentTokens(t, b, 1, &tb);
  ContentTokens(t, c, 2, &tc);
  ASSERT_EQ(ta.size(), 6u);
  EXPECT_TRUE(std::equal(ta.begin(), ta.end(), tb.begin()));
  EXPECT_TRUE(std::equal(ta.begin(), ta.begin() + 4, tc.begin()));
  EXPECT_FALSE(std::equal(tb.begin() + 4, tb.begin() + 8, tc.begin() + 4));
  for (Token x : tb) EXPECT_GE(x, 0);
  TraceRequest unique;
  unique.input_tokens = 5;
  ContentTokens(t, unique, 3, &u1);
  ContentTokens(t, unique, 4, &u2);
  EXPECT_NE(u1, u2);
  std::vector<Token> again;
  ContentTokens(t, b, 1, &again);
  EXPECT_EQ(again, tb);
}

// Within a block, token ids step by one odd stride (mod 2^31) from a start,
// both drawn from the block id: whole blocks of the usual 64 tokens and a
// partial one, so that any unrolled or vectorized form of the loop is
// exercised (an 8-lane form once came out different at -O3).
TEST(ContentTokensTest, ABlockStepsByOneOddStride) {
  Trace t;
  t.block_tokens = 64;
  TraceRequest r;
  r.block_ids = {3, 1u << 20, 77, 123456789};
  r.input_tokens = 3 * 64 + 21;
  std::vector<Token> tokens;
  ContentTokens(t, r, 0, &tokens);
  ASSERT_EQ(tokens.size(), static_cast<size_t>(r.input_tokens));
  for (size_t begin = 0; begin < tokens.size(); begin += 64) {
    const size_t end = std::min(tokens.size(), begin + 64);
    const uint32_t stride = (static_cast<uint32_t>(tokens[begin + 1]) - static_cast<uint32_t>(tokens[begin])) & 0x7fffffff;
    EXPECT_EQ(stride & 1, 1u) << "block at " << begin;
    for (size_t i = begin + 1; i < end; ++i) {
      EXPECT_GE(tokens[i], 0);
      ASSERT_EQ((static_cast<uint32_t>(tokens[i]) - static_cast<uint32_t>(tokens[i - 1])) & 0x7fffffff, stride)
          << "token " << i;
    }
  }
}

TEST(SyntheticTest, GeneratorsAreDeterministicAndConsistent) {
  for (SyntheticKind kind : {SyntheticKind::kChat, SyntheticKind::kAgent, SyntheticKind::kRag}) {
    SyntheticOptions o;
    o.kind = kind;
    o.requests = 500;
    auto a = GenerateTrace(o);
    auto b = GenerateTrace(o);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->requests.size(), 500u);
    for (size_t i = 0; i < a->requests.size(); ++i) {
      const TraceRequest& r = a->requests[i];
      EXPECT_EQ(r.block_ids, b->requests[i].block_ids);
      EXPECT_GE(static_cast<int64_t>(r.block_ids.size()) * a->block_tokens, r.input_tokens);
      if (i > 0) EXPECT_GE(r.arrival_us, a->requests[i - 1].arrival_us);
      for (const TracePriorityRange& range : r.ranges) EXPECT_LE(range.end, r.input_tokens);
    }
    EXPECT_EQ(a->has_priorities, kind != SyntheticKind::kChat);
  }
  SyntheticOptions bad;
  bad.requests = 0;
  EXPECT_EQ(GenerateTrace(bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSyntheticKind("rag").value(), SyntheticKind::kRag);
  EXPECT_FALSE(ParseSyntheticKind("x").ok());
}

TEST(SharedTraceTest, ReadsTheMooncakeConversationTrace) {
  const fs::path p = fs::path(KVSTACK_SHARED_DIR) / "traces" / "mooncake_conversation_trace.jsonl";
  if (!fs::exists(p)) KVSTACK_SKIP_MISSING() << "no " << p << " (the shared traces folder is absent)";
  auto t = ReadTrace(p, TraceFormat::kMooncake);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->requests.size(), 12031u);
  const fs::path a = fs::path(KVSTACK_SHARED_DIR) / "traces" / "azure_llm_2023_code.csv";
  auto u = ReadTrace(a, TraceFormat::kAzure);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->requests.size(), 8819u);
}

}  // namespace
}  // namespace kvstack::sim
