// The OpenAI extras' JSON, with no server: logprobs objects (completions and
// chat), n choices whole and streamed, echo, usage counted once, and the
// /tokenize and /detokenize bodies. A tiny generated model supplies the
// tokenizer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "kvstack/gguf.h"
#include "kvstack/model_gen.h"
#include "kvstack/tokenizer.h"
#include "server/logprobs_json.h"
#include "server/openai_response.h"
#include "server/sse.h"
#include "server/tokenize_request.h"

namespace kvstack::server {
namespace {

using nlohmann::json;

const Tokenizer& Tok() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    const std::string p = (std::filesystem::temp_directory_path() /
                           ("kvstack_logprobs_json_tiny_" + std::to_string(::getpid()) + ".gguf"))
                              .string();
    auto spec = GenModelPreset("tiny");
    EXPECT_TRUE(spec.ok());
    EXPECT_TRUE(WriteGenModel(*spec, p).ok());
    auto file = GgufFile::Open(p);
    EXPECT_TRUE(file.ok());
    auto t = Tokenizer::FromGguf(*file);
    EXPECT_TRUE(t.ok());
    std::filesystem::remove(p);
    return std::move(t).value();
  }();
  return *tok;
}

// Two ordinary tokens of the vocabulary with non-empty, distinct pieces.
std::pair<Token, Token> TwoTokens() {
  const Tokenizer& t = Tok();
  Token a = -1;
  for (Token i = 0; i < t.vocab_size(); ++i) {
    if (t.Kind(i) != TokenKind::kNormal || t.Piece(i).empty()) continue;
    if (a < 0) {
      a = i;
    } else if (t.Piece(i) != t.Piece(a)) {
      return {a, i};
    }
  }
  ADD_FAILURE() << "no two ordinary tokens";
  return {0, 0};
}

PositionLogprobs Lp(Token token, float logprob, std::vector<TokenLogprob> top) {
  return PositionLogprobs{.token = token, .logprob = logprob, .top = std::move(top)};
}

TEST(LogprobsJson, CompletionsShapeWithEchoAndTheChosenTokenInTop) {
  const auto [a, b] = TwoTokens();
  const std::string pa(Tok().Piece(a)), pb(Tok().Piece(b));
  int64_t offset = 0;
  // Prompt [a, b]: b is scored; generated: a, whose top is only b.
  const json j = CompletionLogprobsJson(Tok(), std::vector<Token>{a, b},
                                        std::vector<PositionLogprobs>{Lp(b, -0.5f, {{b, -0.5f}})},
                                        std::vector<PositionLogprobs>{Lp(a, -2.0f, {{b, -0.25f}})}, &offset);
  EXPECT_EQ(j["tokens"], json::array({pa, pb, pa}));
  EXPECT_TRUE(j["token_logprobs"][0].is_null()) << "the first prompt token has no logprob";
  EXPECT_TRUE(j["top_logprobs"][0].is_null());
  EXPECT_FLOAT_EQ(j["token_logprobs"][1].get<float>(), -0.5f);
  EXPECT_FLOAT_EQ(j["token_logprobs"][2].get<float>(), -2.0f);
  EXPECT_EQ(j["top_logprobs"][2].size(), 2u) << "the alternatives plus the chosen token";
  EXPECT_FLOAT_EQ(j["top_logprobs"][2][pa].get<float>(), -2.0f);
  EXPECT_FLOAT_EQ(j["top_logprobs"][2][pb].get<float>(), -0.25f);
  const int64_t la = static_cast<int64_t>(pa.size()), lb = static_cast<int64_t>(pb.size());
  EXPECT_EQ(j["text_offset"], json::array({0, la, la + lb}));
  EXPECT_EQ(offset, 2 * la + lb);
}

TEST(LogprobsJson, ChatShape) {
  const auto [a, b] = TwoTokens();
  const std::string pb(Tok().Piece(b));
  const json j = ChatLogprobsJson(Tok(), std::vector<PositionLogprobs>{Lp(b, -0.1f, {{b, -0.1f}, {a, -3.0f}})});
  ASSERT_EQ(j["content"].size(), 1u);
  const json& c = j["content"][0];
  EXPECT_EQ(c["token"], pb);
  EXPECT_FLOAT_EQ(c["logprob"].get<float>(), -0.1f);
  ASSERT_EQ(c["bytes"].size(), pb.size());
  EXPECT_EQ(c["bytes"][0], static_cast<int>(static_cast<unsigned char>(pb[0])));
  ASSERT_EQ(c["top_logprobs"].size(), 2u);
  EXPECT_EQ(c["top_logprobs"][1]["token"], std::string(Tok().Piece(a)));
  EXPECT_TRUE(j["refusal"].is_null());
}

ResponseMeta Meta(Endpoint endpoint) {
  ResponseMeta m;
  m.endpoint = endpoint;
  m.id = "cmpl-1";
  m.model = "m";
  m.created = 1;
  m.tokenizer = &Tok();
  return m;
}

RequestMetrics Usage(int32_t generated) {
  RequestMetrics m;
  m.prompt_tokens = 7;
  m.cached_tokens = 4;
  m.generated_tokens = generated;
  return m;
}

TEST(OpenAiResponseChoices, WholeResponseIndexesChoicesAndEchoes) {
  const auto [a, b] = TwoTokens();
  ResponseMeta meta = Meta(Endpoint::kCompletions);
  meta.n = 2;
  meta.echo = true;
  meta.echo_text = "P:";
  meta.logprobs = 1;
  meta.prompt_tokens = {a};
  RequestMetrics usage;
  AddChoiceUsage(&usage, Usage(3));
  AddChoiceUsage(&usage, Usage(2));
  const json j = CompletionResponse(meta,
                                    {ChoiceOutput{.text = "x", .logprobs = {Lp(b, -1, {{b, -1}})}, .finish = FinishReason::kLength},
                                     ChoiceOutput{.text = "y", .logprobs = {Lp(a, -2, {{b, -1}})}, .finish = FinishReason::kStop}},
                                    {}, usage);
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["choices"][0]["text"], "P:x");
  EXPECT_EQ(j["choices"][1]["text"], "P:y");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][1]["logprobs"]["tokens"].size(), 2u) << "the echoed prompt token, then the generated one";
  EXPECT_EQ(j["usage"], json::parse(R"({"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
                                        "prompt_tokens_details": {"cached_tokens": 4}})"))
      << "the prompt counted once, every choice's tokens";
}

std::vector<json> Payloads(const std::string& frames) {
  std::vector<json> out;
  size_t at = 0, end;
  while ((end = frames.find("\n\n", at)) != std::string::npos) {
    const std::string data = frames.substr(at + 6, end - at - 6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
    at = end + 2;
  }
  return out;
}

TEST(SseChoices, EachChoiceStreamsUnderItsIndexAndDoneComesLast) {
  const auto [a, b] = TwoTokens();
  ResponseMeta meta = Meta(Endpoint::kCompletions);
  meta.n = 2;
  meta.echo = true;
  meta.echo_text = "P:";
  meta.logprobs = 0;
  meta.prompt_tokens = {a, b};
  SseStream s(meta, /*include_usage=*/true);
  GenerationEvent first0{.id = 1, .tokens = {a}, .text = "x", .choice = 0, .logprobs = {Lp(a, -1, {})},
                         .prompt_logprobs = {Lp(b, -0.5f, {})}};
  GenerationEvent first1{.id = 1, .tokens = {b}, .text = "y", .choice = 1, .logprobs = {Lp(b, -2, {})}};
  std::string frames = s.Frames(first0);
  frames += s.Frames(first1);
  auto f = Payloads(frames);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0]["choices"][0]["index"], 0);
  EXPECT_EQ(f[1]["choices"][0]["index"], 1);
  EXPECT_EQ(f[1]["choices"][0]["text"], "P:y") << "every choice echoes the prompt first";
  EXPECT_EQ(f[1]["choices"][0]["logprobs"]["tokens"].size(), 3u);
  EXPECT_FLOAT_EQ(f[1]["choices"][0]["logprobs"]["token_logprobs"][1].get<float>(), -0.5f)
      << "choice 0 brought the prompt's logprobs; choice 1 shows them too";
  GenerationEvent end1{.id = 1, .finish = FinishReason::kStop, .metrics = Usage(1), .choice = 1};
  f = Payloads(s.Frames(end1));
  ASSERT_EQ(f.size(), 1u) << "one choice finished; the request goes on";
  EXPECT_EQ(f[0]["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(s.done());
  GenerationEvent more0{.id = 1, .tokens = {a}, .text = "z", .choice = 0, .logprobs = {Lp(a, -1, {})}};
  f = Payloads(s.Frames(more0));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]["choices"][0]["text"], "z");
  EXPECT_EQ(f[0]["choices"][0]["logprobs"]["text_offset"][0],
            static_cast<int64_t>(Tok().Piece(a).size() * 2 + Tok().Piece(b).size()))
      << "offsets continue over the choice's earlier chunks";
  GenerationEvent end0{.id = 1, .finish = FinishReason::kLength, .metrics = Usage(2), .choice = 0,
                       .request_finished = true};
  f = Payloads(s.Frames(end0));
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(f[1]["usage"]["completion_tokens"], 3);
  EXPECT_EQ(f[1]["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(f[2], "[DONE]");
  EXPECT_TRUE(s.done());
}

TEST(SseChoices, ScoringCopiesTheOnlyChoiceToEveryIndex) {
  ResponseMeta meta = Meta(Endpoint::kCompletions);
  meta.n = 3;
  meta.echo = true;
  meta.echo_text = "P";
  meta.score_only = true;
  SseStream s(meta, false);
  const auto f = Payloads(s.Frames(
      GenerationEvent{.id = 1, .finish = FinishReason::kLength, .metrics = Usage(0), .request_finished = true}));
  ASSERT_EQ(f.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(f[i]["choices"][0]["index"], i);
    EXPECT_EQ(f[i]["choices"][0]["text"], "P");
  }
}

TEST(Tokenize, Bodies) {
  auto text = ParseTokenizeBody({{"prompt", "hi"}, {"add_special_tokens", false}, {"return_token_strs", true}});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->prompt.text, "hi");
  EXPECT_FALSE(text->add_special_tokens);
  EXPECT_TRUE(text->return_token_strs);
  auto chat = ParseTokenizeBody({{"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  ASSERT_TRUE(chat.ok());
  EXPECT_TRUE(chat->add_special_tokens);
  EXPECT_EQ(chat->prompt.messages->size(), 1u);
  EXPECT_EQ(ParseTokenizeBody({{"prompt", "a"}, {"messages", json::array()}}).error().message,
            "give exactly one of prompt (a string) or messages (a chat)");
  EXPECT_EQ(ParseTokenizeBody(json::object()).error().param, "prompt");
  EXPECT_EQ(ParseTokenizeBody({{"prompt", 5}}).error().message, "prompt must be a string");
  EXPECT_EQ(ParseTokenizeBody({{"prompt", "a"}, {"add_special_tokens", 1}}).error().param, "add_special_tokens");

  const auto [a, b] = TwoTokens();
  EXPECT_EQ(TokenizeResponse({a, b}, 256, Tok(), true),
            json({{"tokens", {a, b}}, {"count", 2}, {"max_model_len", 256},
                  {"token_strs", {std::string(Tok().Piece(a)), std::string(Tok().Piece(b))}}}));
  EXPECT_TRUE(TokenizeResponse({a}, 256, Tok(), false)["token_strs"].is_null());

  auto ids = ParseDetokenizeBody({{"tokens", {a, b}}}, Tok());
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<Token>{a, b}));
  EXPECT_EQ(ParseDetokenizeBody(json::object(), Tok()).error().message, "tokens is required: an array of token ids");
  EXPECT_EQ(ParseDetokenizeBody({{"tokens", {1, "x"}}}, Tok()).error().message, "tokens[1] must be an integer token id");
  EXPECT_THAT(ParseDetokenizeBody({{"tokens", {-1}}}, Tok()).error().message,
              ::testing::StartsWith("tokens[0] -1: not in the vocabulary"));
}

}  // namespace
}  // namespace kvstack::server
