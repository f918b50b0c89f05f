// The engine thread (no network): requests through the command queue give
// the engine's own tokens, cancels free blocks, pins compute then pin and
// expire by their TTL on the loop's clock, and Stop ends everything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "kvstack/model_gen.h"
#include "kvstack/tokenizer.h"
#include "server/engine_loop.h"

namespace kvstack::server {
namespace {

// The tiny generated model, written once for the whole suite.
const std::string& TinyModel() {
  static const std::string path = [] {
    const std::string p = (std::filesystem::temp_directory_path() /
                           ("kvstack_engine_loop_tiny_" + std::to_string(::getpid()) + ".gguf"))
                              .string();
    auto spec = GenModelPreset("tiny");
    EXPECT_TRUE(spec.ok());
    EXPECT_TRUE(WriteGenModel(*spec, p).ok());
    return p;
  }();
  return path;
}

class EngineLoopTest : public ::testing::Test {
 protected:
  static void TearDownTestSuite() { std::filesystem::remove(TinyModel()); }

  std::unique_ptr<Engine> MakeEngine(const Clock* clock = nullptr) {
    EngineOptions o;
    o.model_path = TinyModel();
    o.threads = 1;
    o.num_blocks = 64;
    o.clock = clock;
    auto e = Engine::Create(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return std::move(e).value();
  }

  std::unique_ptr<EngineLoop> MakeLoop(const Clock* clock = nullptr) {
    return std::make_unique<EngineLoop>(MakeEngine(clock), clock, [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.emplace_back(line);
    });
  }

  // Every event of the request, the final one last.
  static std::vector<GenerationEvent> Drain(RequestChannel& channel) {
    std::vector<GenerationEvent> events;
    while (channel.Take(&events, std::chrono::milliseconds(100))) {
    }
    return events;
  }

  std::mutex log_mu_;
  std::vector<std::string> log_;
};

GenerationRequest Greedy(std::vector<Token> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

TEST_F(EngineLoopTest, GivesTheEnginesOwnTokens) {
  auto direct = MakeEngine();
  const std::vector<Token> prompt = direct->tokenizer().Encode("Once upon a time");
  ASSERT_TRUE(direct->Submit(Greedy(prompt, 12)).ok());
  std::vector<Token> want;
  std::vector<GenerationEvent> events;
  while (direct->HasWork()) {
    events.clear();
    ASSERT_TRUE(direct->Step(&events).ok());
    for (const auto& e : events) want.insert(want.end(), e.tokens.begin(), e.tokens.end());
  }

  auto loop = MakeLoop();
  auto channel = loop->Submit(Greedy(prompt, 12));
  ASSERT_TRUE(channel->WaitAccepted().ok());
  std::vector<Token> got;
  const std::vector<GenerationEvent> all = Drain(*channel);
  for (const auto& e : all) got.insert(got.end(), e.tokens.begin(), e.tokens.end());
  EXPECT_EQ(got, want);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back().finish, FinishReason::kLength);
  EXPECT_EQ(all.back().metrics.generated_tokens, 12);
}

TEST_F(EngineLoopTest, SubmitErrorsComeThroughTheChannel) {
  auto loop = MakeLoop();
  auto channel = loop->Submit(Greedy({1, 999999}, 4));
  Status s = channel->WaitAccepted();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("prompt[1]: token id 999999 outside the vocabulary"));
  std::vector<GenerationEvent> events;
  EXPECT_FALSE(channel->Take(&events, std::chrono::milliseconds(1)));
  EXPECT_TRUE(events.empty());
}

TEST_F(EngineLoopTest, CancelEndsTheRequestAndFreesItsBlocks) {
  auto loop = MakeLoop();
  auto channel = loop->Submit(Greedy({1, 2, 3, 4, 5}, 400));
  loop->Cancel(channel);
  const std::vector<GenerationEvent> events = Drain(*channel);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().finish, FinishReason::kCancelled);
  auto metrics = loop->Call([](Engine& e) { return e.cache().Metrics(); });
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->in_use_blocks, 0);
  EXPECT_EQ(metrics->live_sequences, 0);
  loop->Cancel(channel);  // finished: nothing to do, no harm
}

TEST_F(EngineLoopTest, PinComputesThePromptThenPinsItsFullBlocks) {
  auto loop = MakeLoop();
  std::vector<Token> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = 10 + i;
  auto pin = loop->Pin({.tokens = prompt, .cache_salt = "t"});
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  EXPECT_EQ(pin->id, "pin-1");
  EXPECT_EQ(pin->tokens, 40);
  EXPECT_EQ(pin->blocks, 2);  // 40 tokens: two full blocks of 16
  EXPECT_FALSE(pin->expires_at.has_value());
  auto metrics = loop->Call([](Engine& e) { return e.cache().Metrics(); });
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->pinned_blocks, 2);
  EXPECT_EQ(metrics->in_use_blocks, 0);

  // Cached now: the second pin needs no prefill.
  auto again = loop->Pin({.tokens = prompt, .cache_salt = "t"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, "pin-2");
  auto admissions = loop->Call([](Engine& e) { return e.cache().Metrics().admissions; });
  EXPECT_EQ(*admissions, 1u);

  // Another tenant's cache holds nothing of it.
  auto request = loop->Submit(Greedy(prompt, 1));
  ASSERT_TRUE(request->WaitAccepted().ok());
  EXPECT_EQ(Drain(*request).back().metrics.cached_tokens, 0);
  GenerationRequest same = Greedy(prompt, 1);
  same.cache_salt = "t";
  auto hit = loop->Submit(same);
  ASSERT_TRUE(hit->WaitAccepted().ok());
  EXPECT_EQ(Drain(*hit).back().metrics.cached_tokens, 32);

  EXPECT_TRUE(loop->Unpin("pin-1").ok());
  EXPECT_TRUE(loop->Unpin("pin-2").ok());
  Status gone = loop->Unpin("pin-2");
  EXPECT_EQ(gone.code(), StatusCode::kNotFound);
  EXPECT_EQ(gone.message(),
            "pin 'pin-2' does not exist for this cache_salt (never created, deleted, expired, or made under another "
            "salt)");
  EXPECT_EQ(loop->Call([](Engine& e) { return e.cache().Metrics().pinned_blocks; }).value(), 0);
}

TEST_F(EngineLoopTest, PinsAreListedAndReleasedOnlyByTheirTenant) {
  auto loop = MakeLoop();
  auto labeler = TenantLabeler::Create("a-secret-of-sixteen-bytes", {});
  ASSERT_TRUE(labeler.ok());
  const TenantId a = labeler->Identify("salt-a"), b = labeler->Identify("salt-b"), none = labeler->Identify("");
  std::vector<Token> prompt(20, 9);
  auto pin = loop->Pin({.tokens = prompt, .cache_salt = "salt-a", .tenant = a});
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  EXPECT_EQ(pin->tenant, a.label);
  auto unsalted = loop->Pin({.tokens = prompt});
  ASSERT_TRUE(unsalted.ok()) << unsalted.status().ToString();

  auto ids = [&](std::optional<std::string> owner) {
    std::vector<std::string> out;
    auto pins = loop->ListPins(std::move(owner));
    EXPECT_TRUE(pins.ok());
    for (const PinInfo& p : *pins) out.push_back(p.id);
    return out;
  };
  EXPECT_EQ(ids(a.owner), std::vector<std::string>{"pin-1"});
  EXPECT_TRUE(ids(b.owner).empty());
  EXPECT_EQ(ids(none.owner), std::vector<std::string>{"pin-2"});
  EXPECT_EQ(ids(std::nullopt), (std::vector<std::string>{"pin-1", "pin-2"})) << "the operator sees all";

  // Another tenant, or no tenant, gets the answer a missing pin gets.
  EXPECT_EQ(loop->Unpin("pin-1", b.owner).code(), StatusCode::kNotFound);
  EXPECT_EQ(loop->Unpin("pin-1", none.owner).code(), StatusCode::kNotFound);
  EXPECT_EQ(loop->Unpin("pin-2", a.owner).code(), StatusCode::kNotFound);
  EXPECT_EQ(loop->Call([](Engine& e) { return e.cache().Metrics().live_pins; }).value(), 2);
  EXPECT_TRUE(loop->Unpin("pin-1", a.owner).ok());
  EXPECT_TRUE(loop->Unpin("pin-2", none.owner).ok());
  EXPECT_TRUE(ids(std::nullopt).empty());
}

TEST_F(EngineLoopTest, PinOfLessThanABlockIsRefused) {
  auto loop = MakeLoop();
  auto pin = loop->Pin({.tokens = {1, 2, 3}});
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pin.status().message(), "pin: 3 tokens is less than one block (16 tokens); nothing to pin");
}

TEST_F(EngineLoopTest, PinsExpireOnTheLoopsClock) {
  ManualClock clock(1'000'000);
  auto loop = MakeLoop(&clock);
  std::vector<Token> prompt(20, 7);
  auto pin = loop->Pin({.tokens = prompt, .ttl = 5'000'000});
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  EXPECT_EQ(pin->expires_at, 6'000'000);
  clock.Advance(4'999'999);
  ASSERT_TRUE(loop->Call([](Engine&) { return 0; }).ok());
  ASSERT_TRUE(loop->Call([](Engine&) { return 0; }).ok());
  EXPECT_EQ(loop->ListPins()->size(), 1u);
  clock.Advance(1);
  // Expiry runs after each batch of commands: the second call sees its effect.
  ASSERT_TRUE(loop->Call([](Engine&) { return 0; }).ok());
  ASSERT_TRUE(loop->Call([](Engine&) { return 0; }).ok());
  EXPECT_TRUE(loop->ListPins()->empty());
  EXPECT_EQ(loop->Call([](Engine& e) { return e.cache().Metrics().pinned_blocks; }).value(), 0);
  std::lock_guard<std::mutex> lock(log_mu_);
  EXPECT_THAT(log_, ::testing::Contains("pin pin-1 expired: its blocks are evictable again"));
}

TEST_F(EngineLoopTest, StopCancelsWhatRunsAndRefusesWhatComes) {
  auto loop = MakeLoop();
  auto channel = loop->Submit(Greedy({1, 2, 3}, 400));
  ASSERT_TRUE(channel->WaitAccepted().ok());
  loop->Stop();
  EXPECT_EQ(Drain(*channel).back().finish, FinishReason::kCancelled);
  auto late = loop->Submit(Greedy({1, 2, 3}, 4));
  EXPECT_EQ(late->WaitAccepted().code(), StatusCode::kUnavailable);
  EXPECT_EQ(loop->Call([](Engine&) { return 1; }).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(loop->Pin({.tokens = std::vector<Token>(20, 7)}).status().code(), StatusCode::kUnavailable);
  loop->Stop();  // idempotent
}

}  // namespace
}  // namespace kvstack::server
