// Request parsing and validation (no network, no model): every field's type
// and range error with its exact message and param, and what a valid body
// turns into.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/openai_request.h"

namespace kvstack::server {
namespace {

using nlohmann::json;

const RequestLimits kLimits{.context_tokens = 512, .max_tokens_limit = 64, .default_max_tokens = 16};

ApiError ErrorOf(const json& body, Endpoint endpoint = Endpoint::kCompletions) {
  auto r = ParseCompletionBody(body, endpoint, kLimits);
  EXPECT_FALSE(r.ok()) << body.dump();
  return r.ok() ? ApiError{} : r.error();
}

void ExpectError(const json& body, const std::string& message, const std::string& param,
                 Endpoint endpoint = Endpoint::kCompletions) {
  const ApiError e = ErrorOf(body, endpoint);
  EXPECT_EQ(e.http_status, 400) << body.dump();
  EXPECT_EQ(e.message, message) << body.dump();
  EXPECT_EQ(e.param, param) << body.dump();
  EXPECT_EQ(e.type, "invalid_request_error");
}

TEST(ParseJsonObject, MalformedJsonSaysWhere) {
  auto r = ParseJsonObject("{\"prompt\": ");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().http_status, 400);
  EXPECT_EQ(r.error().message,
            "invalid JSON: parse error at line 1, column 12: syntax error while parsing value - unexpected end of "
            "input; expected '[', '{', or a literal");
}

// Found by fuzz/request_fuzz.cpp: nlohmann throws out_of_range, not
// parse_error, for a number no double holds; it must be a 400 too.
TEST(ParseJsonObject, NumberTooLargeIsA400) {
  auto r = ParseJsonObject("{\"max_tokens\": 5555e555}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().http_status, 400);
  EXPECT_EQ(r.error().message, "invalid JSON: number overflow parsing '5555e555'");
}

TEST(ParseJsonObject, BodyMustBeAnObject) {
  auto r = ParseJsonObject("[1, 2]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "request body must be a JSON object");
  EXPECT_TRUE(ParseJsonObject("{\"a\": 1}").ok());
}

TEST(ParseCompletionBody, ReadsEveryField) {
  const json body = {{"model", "m"},
                     {"prompt", "Hello"},
                     {"max_tokens", 20},
                     {"temperature", 0.5},
                     {"top_p", 0.9},
                     {"top_k", 40},
                     {"min_p", 0.05},
                     {"repetition_penalty", 1.1},
                     {"seed", 7},
                     {"stop", {"\n", "END"}},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}},
                     {"ignore_eos", true},
                     {"n", 1},
                     {"user", "u"},
                     {"presence_penalty", 0.5},
                     {"some_future_field", {1, 2}}};
  auto r = ParseCompletionBody(body, Endpoint::kCompletions, kLimits);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->prompt.text, "Hello");
  EXPECT_EQ(r->max_tokens, 20);
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 0.9f);
  EXPECT_EQ(r->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r->sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r->sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(r->seed, 7u);
  EXPECT_THAT(r->sampling.stop_strings, ::testing::ElementsAre("\n", "END"));
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(r->ignore_eos);
}

TEST(ParseCompletionBody, DefaultsAndNulls) {
  auto r = ParseCompletionBody({{"prompt", "x"}, {"temperature", nullptr}, {"stop", nullptr}}, Endpoint::kCompletions,
                               kLimits);
  ASSERT_TRUE(r.ok());
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.0f);
  EXPECT_FALSE(r->max_tokens.has_value());
  EXPECT_FALSE(r->seed.has_value());
  EXPECT_FALSE(r->stream);
  EXPECT_TRUE(r->sampling.stop_strings.empty());
  EXPECT_EQ(r->kv.priority, kDefaultPriority);
}

TEST(ParseCompletionBody, WrongTypesNameTheField) {
  ExpectError({{"prompt", "x"}, {"temperature", "hot"}}, "temperature must be a number", "temperature");
  ExpectError({{"prompt", "x"}, {"top_p", true}}, "top_p must be a number", "top_p");
  ExpectError({{"prompt", "x"}, {"max_tokens", "10"}}, "max_tokens must be an integer", "max_tokens");
  ExpectError({{"prompt", "x"}, {"max_tokens", 1.5}}, "max_tokens must be an integer", "max_tokens");
  ExpectError({{"prompt", "x"}, {"top_k", 2.5}}, "top_k must be an integer", "top_k");
  ExpectError({{"prompt", "x"}, {"seed", "7"}}, "seed must be an integer", "seed");
  ExpectError({{"prompt", "x"}, {"stream", "yes"}}, "stream must be a boolean", "stream");
  ExpectError({{"prompt", "x"}, {"stop", 5}}, "stop must be a string or an array of strings", "stop");
  ExpectError({{"prompt", "x"}, {"stop", {"a", 1}}}, "stop must be a string or an array of strings", "stop");
  ExpectError({{"prompt", "x"}, {"stop", {"a", ""}}}, "stop[1] must not be an empty string", "stop");
  ExpectError({{"prompt", "x"}, {"stream_options", true}}, "stream_options must be an object", "stream_options");
  ExpectError({{"prompt", "x"}, {"stream_options", {{"include_usage", 1}}}},
              "stream_options.include_usage must be a boolean", "stream_options.include_usage");
  ExpectError({{"prompt", "x"}, {"model", 3}}, "model must be a string", "model");
  ExpectError({{"prompt", "x"}, {"cache_salt", 3}}, "cache_salt must be a string", "cache_salt");
}

TEST(ParseCompletionBody, RangesComeFromSamplingValidate) {
  ExpectError({{"prompt", "x"}, {"top_p", 1.5}}, "top_p 1.5: must be in (0, 1] (1 = off)", "top_p");
  ExpectError({{"prompt", "x"}, {"temperature", -1}}, "temperature -1: must be a finite number >= 0 (0 = greedy)",
              "temperature");
  ExpectError({{"prompt", "x"}, {"min_p", 2}}, "min_p 2: must be in [0, 1] (0 = off)", "min_p");
  ExpectError({{"prompt", "x"}, {"repetition_penalty", 0}},
              "repetition_penalty 0: must be a finite number > 0 (1 = off)", "repetition_penalty");
}

TEST(ParseCompletionBody, MaxTokensLimits) {
  ExpectError({{"prompt", "x"}, {"max_tokens", 65}}, "max_tokens 65 exceeds this server's limit of 64 (--max-tokens-limit)",
              "max_tokens");
  ExpectError({{"prompt", "x"}, {"max_tokens", 0}}, "max_tokens 0: must be at least 1 (0 only with echo: it scores the prompt)",
              "max_tokens");
  ExpectError({{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_completion_tokens", 100}},
              "max_completion_tokens 100 exceeds this server's limit of 64 (--max-tokens-limit)",
              "max_completion_tokens", Endpoint::kChat);
}

TEST(ParseCompletionBody, RefusesWhatItCannotDo) {
  ExpectError({{"prompt", "x"}, {"best_of", 3}}, "best_of 3: must equal n (1): this server returns every choice it samples",
              "best_of");
  ExpectError({{"prompt", "x"}, {"suffix", "end"}}, "suffix is not supported by this server", "suffix");
  ExpectError({{"prompt", "x"}, {"frequency_penalty", 3}}, "frequency_penalty 3: must be from -2 to 2",
              "frequency_penalty");
  EXPECT_TRUE(ParseCompletionBody({{"prompt", "x"}, {"logprobs", false}, {"echo", false}, {"n", 1}},
                                  Endpoint::kCompletions, kLimits)
                  .ok());
}

TEST(ParseCompletionBody, ChoicesLogprobsAndEcho) {
  auto b = ParseCompletionBody({{"prompt", "x"}, {"n", 8}, {"best_of", 8}, {"logprobs", 20}, {"echo", true},
                                {"max_tokens", 0}},
                               Endpoint::kCompletions, kLimits);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->n, 8);
  EXPECT_EQ(b->logprobs, 20);
  EXPECT_TRUE(b->echo);
  auto g = BuildGeneration(*b, {1, 2, 3}, kLimits, {}, 7);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->n, 8);
  EXPECT_EQ(g->logprobs, 20);
  EXPECT_EQ(g->prompt_logprobs, 20) << "echo with logprobs scores the prompt";
  EXPECT_EQ(g->sampling.max_tokens, 0);

  auto plain = ParseCompletionBody({{"prompt", "x"}, {"echo", true}}, Endpoint::kCompletions, kLimits);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(BuildGeneration(*plain, {1, 2}, kLimits, {}, 7)->prompt_logprobs, -1)
      << "echo without logprobs needs no prompt logits";
  auto chat = ParseCompletionBody({{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"logprobs", true},
                                   {"top_logprobs", 3}, {"n", 2}},
                                  Endpoint::kChat, kLimits);
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->logprobs, 3);
  EXPECT_EQ(chat->n, 2);
  auto chat_plain = ParseCompletionBody({{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"logprobs", true}},
                                        Endpoint::kChat, kLimits);
  EXPECT_EQ(chat_plain->logprobs, 0);
}

TEST(ParseCompletionBody, ChoicesLogprobsAndEchoBounds) {
  const json msgs = {{{"role", "user"}, {"content", "hi"}}};
  ExpectError({{"prompt", "x"}, {"n", 9}}, "n 9: must be from 1 to 8 (this server's --max-n)", "n");
  ExpectError({{"prompt", "x"}, {"n", 0}}, "n 0: must be from 1 to 8 (this server's --max-n)", "n");
  ExpectError({{"prompt", "x"}, {"n", 2}, {"best_of", 3}},
              "best_of 3: must equal n (2): this server returns every choice it samples", "best_of");
  ExpectError({{"prompt", "x"}, {"logprobs", 21}}, "logprobs 21: must be from 0 to 20", "logprobs");
  ExpectError({{"prompt", "x"}, {"logprobs", true}},
              "logprobs must be an integer from 0 to 20 on /v1/completions: how many alternatives to return per token",
              "logprobs");
  ExpectError({{"prompt", "x"}, {"top_logprobs", 2}},
              "top_logprobs is for /v1/chat/completions; on /v1/completions logprobs is the count", "top_logprobs");
  ExpectError({{"prompt", "x"}, {"max_tokens", 0}},
              "max_tokens 0: must be at least 1 (0 only with echo: it scores the prompt)", "max_tokens");
  ExpectError({{"messages", msgs}, {"logprobs", 2}},
              "logprobs must be true or false on /v1/chat/completions (top_logprobs says how many alternatives)",
              "logprobs", Endpoint::kChat);
  ExpectError({{"messages", msgs}, {"top_logprobs", 2}}, "top_logprobs needs logprobs: true", "top_logprobs",
              Endpoint::kChat);
  ExpectError({{"messages", msgs}, {"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs 21: must be from 0 to 20",
              "top_logprobs", Endpoint::kChat);
  ExpectError({{"messages", msgs}, {"echo", true}}, "echo is only for /v1/completions", "echo", Endpoint::kChat);
  const RequestLimits wide{.context_tokens = 512, .max_tokens_limit = 64, .default_max_tokens = 16, .max_n = 3};
  EXPECT_EQ(ParseCompletionBody({{"prompt", "x"}, {"n", 4}}, Endpoint::kCompletions, wide).error().message,
            "n 4: must be from 1 to 3 (this server's --max-n)");
}

TEST(ParsePrompt, Forms) {
  auto ids = ParsePrompt({{"prompt", {1, 2, 3}}}, Endpoint::kCompletions);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids->token_ids, ::testing::ElementsAre(1, 2, 3));
  auto one = ParsePrompt({{"prompt", {"just one"}}}, Endpoint::kCompletions);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->text, "just one");
  auto nested = ParsePrompt({{"prompt", {{4, 5}}}}, Endpoint::kCompletions);
  ASSERT_TRUE(nested.ok());
  EXPECT_THAT(*nested->token_ids, ::testing::ElementsAre(4, 5));
}

TEST(ParsePrompt, Errors) {
  ExpectError({{"max_tokens", 3}}, "prompt is required", "prompt");
  ExpectError({{"prompt", 5}}, "prompt must be a string, an array of token ids, or an array holding one string",
              "prompt");
  ExpectError({{"prompt", json::array()}}, "prompt must not be an empty array", "prompt");
  ExpectError({{"prompt", {"a", "b"}}}, "prompt: 2 prompts in one request; this server takes one prompt per request",
              "prompt");
  ExpectError({{"prompt", {1, -2}}}, "prompt[1] -2: not a token id", "prompt");
}

TEST(ParsePrompt, Messages) {
  const json body = {{"messages",
                      {{{"role", "developer"}, {"content", "Be brief."}},
                       {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi "}}, {{"type", "text"}, {"text", "there"}}}}},
                       {{"role", "assistant"}, {"content", nullptr}}}}};
  auto r = ParseCompletionBody(body, Endpoint::kChat, kLimits);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(r->prompt.messages.has_value());
  ASSERT_EQ(r->prompt.messages->size(), 3u);
  EXPECT_EQ((*r->prompt.messages)[0].role, "system");
  EXPECT_EQ((*r->prompt.messages)[1].content, "Hi there");
  EXPECT_EQ((*r->prompt.messages)[2].content, "");
  EXPECT_EQ(r->prompt.field, "messages");
}

TEST(ParsePrompt, MessageErrors) {
  const Endpoint chat = Endpoint::kChat;
  ExpectError({{"prompt", "x"}}, "messages is required", "messages", chat);
  ExpectError({{"messages", json::array()}}, "messages must be a non-empty array of {\"role\", \"content\"} objects",
              "messages", chat);
  ExpectError({{"messages", {{{"content", "x"}}}}}, "messages[0].role is required", "messages[0].role", chat);
  ExpectError({{"messages", {{{"role", "robot"}, {"content", "x"}}}}},
              "messages[0].role 'robot': must be system, user, assistant or developer (tool calls are not supported)",
              "messages[0].role", chat);
  ExpectError({{"messages", {{{"role", "user"}, {"content", 5}}}}},
              "messages[0].content must be a string or an array of text parts", "messages[0].content", chat);
  ExpectError({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}},
              "messages[0].content[0].type 'image_url': only text parts are supported", "messages[0].content[0].type",
              chat);
}

TEST(KvControls, ParsesRetentionPriorityAndSession) {
  const json body = {{"prompt", "x"},
                     {"cache_salt", "tenant-a"},
                     {"session_id", "s-1"},
                     {"priority", 80},
                     {"retention",
                      {{"ranges", {{{"start", 0}, {"end", 120}, {"priority", 90}, {"duration_s", 600}},
                                   {{"start", 120}, {"priority", 20}}}},
                       {"decode_priority", 10},
                       {"decode_duration_s", 5}}}};
  auto r = ParseCompletionBody(body, Endpoint::kCompletions, kLimits);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const KvControls& kv = r->kv;
  EXPECT_EQ(kv.cache_salt, "tenant-a");
  EXPECT_EQ(kv.session_id, "s-1");
  EXPECT_EQ(kv.priority, 80);
  ASSERT_EQ(kv.ranges.size(), 2u);
  EXPECT_EQ(kv.ranges[0].end, 120);
  EXPECT_EQ(kv.ranges[0].duration, 600'000'000);
  EXPECT_FALSE(kv.ranges[1].end.has_value());
  EXPECT_EQ(kv.decode_priority, 10);
  EXPECT_EQ(kv.decode_duration, 5'000'000);

  auto spec = MakeRetention(kv, 200);
  ASSERT_TRUE(spec.ok());
  ASSERT_EQ(spec->ranges.size(), 2u);
  EXPECT_EQ(spec->ranges[0].tokens.begin, 0);
  EXPECT_EQ(spec->ranges[0].tokens.end, 120);
  EXPECT_EQ(spec->ranges[0].priority, 90);
  EXPECT_EQ(spec->ranges[1].tokens.begin, 120);
  EXPECT_EQ(spec->ranges[1].tokens.end, 200);  // to the end of the prompt
  EXPECT_FALSE(spec->ranges[1].duration.has_value());
  EXPECT_EQ(spec->decode_priority, 10);
}

TEST(KvControls, ErrorsNameTheField) {
  auto with = [](json retention) { return json{{"prompt", "x"}, {"retention", std::move(retention)}}; };
  ExpectError({{"prompt", "x"}, {"priority", 101}}, "priority 101: must be from 0 to 100", "priority");
  ExpectError({{"prompt", "x"}, {"priority", "high"}}, "priority must be an integer", "priority");
  ExpectError({{"prompt", "x"}, {"session_id", 1}}, "session_id must be a string", "session_id");
  ExpectError(with(5),
              "retention must be an object: {\"ranges\": [...], \"decode_priority\": N, \"decode_duration_s\": S}",
              "retention");
  ExpectError(with({{"ranges", 5}}), "retention.ranges must be an array", "retention.ranges");
  ExpectError(with({{"ranges", {5}}}),
              "retention.ranges[0] must be an object with start, end, priority and duration_s", "retention.ranges[0]");
  ExpectError(with({{"ranges", {{{"start", 0}, {"end", 10}}}}}), "retention.ranges[0].priority is required (0-100)",
              "retention.ranges[0].priority");
  ExpectError(with({{"ranges", {{{"start", 0}, {"end", 10}, {"priority", 101}}}}}),
              "retention.ranges[0].priority 101: must be from 0 to 100", "retention.ranges[0].priority");
  ExpectError(with({{"ranges", {{{"start", -1}, {"priority", 50}}}}}),
              "retention.ranges[0].start -1: must be from 0 to 2147483647", "retention.ranges[0].start");
  ExpectError(with({{"ranges", {{{"start", 8}, {"end", 8}, {"priority", 50}}}}}),
              "retention.ranges[0].end 8: must be more than start (8)", "retention.ranges[0].end");
  ExpectError(with({{"ranges", {{{"start", 0}, {"priority", 50}, {"duration_s", -5}}}}}),
              "retention.ranges[0].duration_s -5: must be more than 0 and at most 31536000 seconds (leave it out to "
              "keep the priority until eviction)",
              "retention.ranges[0].duration_s");
  ExpectError(with({{"decode_priority", "low"}}), "retention.decode_priority must be an integer",
              "retention.decode_priority");
  ExpectError(with({{"decode_duration_s", 0}}),
              "retention.decode_duration_s 0: must be more than 0 and at most 31536000 seconds (leave it out to keep "
              "the priority until eviction)",
              "retention.decode_duration_s");
}

TEST(KvControls, RangesMustLieInThePrompt) {
  KvControls kv;
  kv.ranges.push_back({.start = 0, .end = 700, .priority = 90});
  auto r = MakeRetention(kv, 12);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "retention.ranges[0].end 700: past the end of the prompt (12 tokens)");
  EXPECT_EQ(r.error().param, "retention.ranges[0].end");
  kv.ranges[0] = {.start = 12, .priority = 90};
  auto s = MakeRetention(kv, 12);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "retention.ranges[0].start 12: past the end of the prompt (12 tokens)");
}

TEST(BuildGeneration, AppliesLimitsAndDefaults) {
  auto body = ParseCompletionBody({{"prompt", "x"}, {"cache_salt", "t"}, {"priority", 60}, {"ignore_eos", true}},
                                  Endpoint::kCompletions, kLimits);
  ASSERT_TRUE(body.ok());
  auto g = BuildGeneration(*body, {1, 2, 3}, kLimits, {"<|im_end|>"}, 99);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->sampling.max_tokens, 16);  // OpenAI's default for completions
  EXPECT_EQ(g->sampling.seed, 99u);       // none given: the server's draw
  EXPECT_TRUE(g->sampling.stop_strings.empty());  // chat stops are for chat only
  EXPECT_EQ(g->cache_salt, "t");
  EXPECT_EQ(g->priority, 60);
  EXPECT_TRUE(g->ignore_eos);
  EXPECT_THAT(g->prompt, ::testing::ElementsAre(1, 2, 3));

  auto chat = ParseCompletionBody({{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"seed", 5}, {"stop", "x"}},
                                  Endpoint::kChat, kLimits);
  ASSERT_TRUE(chat.ok());
  auto c = BuildGeneration(*chat, std::vector<Token>(500, 7), kLimits, {"<|im_end|>"}, 99);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sampling.max_tokens, 12);  // what the context leaves (512 - 500)
  EXPECT_EQ(c->sampling.seed, 5u);
  EXPECT_THAT(c->sampling.stop_strings, ::testing::ElementsAre("x", "<|im_end|>"));
}

TEST(BuildGeneration, PromptMustLeaveRoomInTheContext) {
  auto body = ParseCompletionBody({{"prompt", "x"}}, Endpoint::kCompletions, kLimits);
  ASSERT_TRUE(body.ok());
  auto g = BuildGeneration(*body, std::vector<Token>(512, 7), kLimits, {}, 0);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().message, "prompt: 512 tokens leave no room in the context of 512 tokens");
  EXPECT_EQ(g.error().param, "prompt");
}

TEST(ParsePinBody, Forms) {
  auto p = ParsePinBody({{"prompt", "system prompt"}, {"cache_salt", "a"}, {"ttl_s", 1.5}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->prompt.text, "system prompt");
  EXPECT_EQ(p->cache_salt, "a");
  EXPECT_EQ(p->ttl, 1'500'000);
  auto ids = ParsePinBody({{"token_ids", {1, 2}}});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->prompt.field, "token_ids");
  EXPECT_FALSE(ids->ttl.has_value());
  auto chat = ParsePinBody({{"messages", {{{"role", "system"}, {"content", "rules"}}}}});
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->prompt.messages->size(), 1u);
}

TEST(ParsePinBody, Errors) {
  auto none = ParsePinBody({{"cache_salt", "a"}});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message, "give exactly one of prompt, messages or token_ids: the prefix to pin");
  auto two = ParsePinBody({{"prompt", "a"}, {"token_ids", {1}}});
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.error().message, "give exactly one of prompt, messages or token_ids: the prefix to pin");
  auto ids = ParsePinBody({{"token_ids", "abc"}});
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.error().message, "token_ids must be an array of token ids");
  auto ttl = ParsePinBody({{"prompt", "a"}, {"ttl_s", 0}});
  ASSERT_FALSE(ttl.ok());
  EXPECT_EQ(ttl.error().message,
            "ttl_s 0: must be more than 0 and at most a year (leave it out to keep the pin until DELETE "
            "/v1/cache/pin/{id})");
  EXPECT_EQ(ttl.error().param, "ttl_s");
}

}  // namespace
}  // namespace kvstack::server
