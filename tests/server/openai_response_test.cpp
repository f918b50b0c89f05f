// Response JSON, SSE framing, error objects and the edge checks (no network).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/cache_stats_json.h"
#include "server/http_guard.h"
#include "server/openai_response.h"
#include "server/sse.h"

namespace kvstack::server {
namespace {

using nlohmann::json;

RequestMetrics Metrics() {
  RequestMetrics m;
  m.prompt_tokens = 40;
  m.cached_tokens = 32;
  m.generated_tokens = 5;
  return m;
}

ResponseMeta Meta(Endpoint e) {
  return ResponseMeta{.endpoint = e, .id = "cmpl-1", .model = "m", .created = 1700000000, .session_id = ""};
}

TEST(OpenAiResponse, Completion) {
  const json j = CompletionResponse(Meta(Endpoint::kCompletions), "hello", FinishReason::kLength, Metrics());
  EXPECT_EQ(j, json::parse(R"({
    "id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "m",
    "choices": [{"index": 0, "text": "hello", "logprobs": null, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45,
              "prompt_tokens_details": {"cached_tokens": 32}}})"));
}

TEST(OpenAiResponse, ChatEchoesSession) {
  ResponseMeta meta = Meta(Endpoint::kChat);
  meta.session_id = "s-9";
  const json j = CompletionResponse(meta, "hi", FinishReason::kStop, Metrics());
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["session_id"], "s-9");
  EXPECT_EQ(j["choices"][0], json::parse(R"({"index": 0, "message": {"role": "assistant", "content": "hi"},
                                             "logprobs": null, "finish_reason": "stop"})"));
}

TEST(OpenAiResponse, ChatChunksCarryTheRoleFirst) {
  const ResponseMeta meta = Meta(Endpoint::kChat);
  const json first = StreamChunk(meta, "Hel", true, std::nullopt);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json::parse(R"({"role": "assistant", "content": "Hel"})"));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = StreamChunk(meta, "", false, FinishReason::kStop);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
}

TEST(OpenAiResponse, FinishReasons) {
  EXPECT_EQ(OpenAiFinishReason(FinishReason::kStop), "stop");
  EXPECT_EQ(OpenAiFinishReason(FinishReason::kLength), "length");
  EXPECT_FALSE(OpenAiFinishReason(FinishReason::kCancelled).has_value());
  EXPECT_FALSE(OpenAiFinishReason(FinishReason::kNone).has_value());
}

TEST(OpenAiResponse, Models) {
  EXPECT_EQ(ModelsResponse("m", 5, 512), json::parse(R"({"object": "list", "data": [{"id": "m", "object": "model",
            "created": 5, "owned_by": "kvstack", "max_model_len": 512}]})"));
}

TEST(Sse, FramesTextFinishUsageAndDone) {
  SseStream s(Meta(Endpoint::kCompletions), /*include_usage=*/true);
  EXPECT_EQ(s.Frames(GenerationEvent{.id = 1, .tokens = {5}, .text = "a"}),
            "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"logprobs\":null,\"text\":\"a\"}],\"created\":"
            "1700000000,\"id\":\"cmpl-1\",\"model\":\"m\",\"object\":\"text_completion\"}\n\n");
  // A token that completes no text yet (half a UTF-8 character) sends nothing.
  EXPECT_EQ(s.Frames(GenerationEvent{.id = 1, .tokens = {6}, .text = ""}), "");
  EXPECT_FALSE(s.done());
  const std::string last = s.Frames(
      GenerationEvent{.id = 1, .text = "b", .finish = FinishReason::kLength, .metrics = Metrics(), .request_finished = true});
  EXPECT_TRUE(s.done());
  const std::vector<std::string> frames = [&] {
    std::vector<std::string> out;
    size_t at = 0, end;
    while ((end = last.find("\n\n", at)) != std::string::npos) {
      out.push_back(last.substr(at, end - at));
      at = end + 2;
    }
    return out;
  }();
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(json::parse(frames[0].substr(6))["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(json::parse(frames[1].substr(6))["usage"]["prompt_tokens_details"]["cached_tokens"], 32);
  EXPECT_EQ(json::parse(frames[1].substr(6))["choices"], json::array());
  EXPECT_EQ(frames[2], "data: [DONE]");
}

TEST(Sse, CancelledStreamEndsWithAnError) {
  SseStream s(Meta(Endpoint::kChat), false);
  const std::string out = s.Frames(GenerationEvent{.id = 1, .finish = FinishReason::kCancelled});
  EXPECT_EQ(out,
            "data: {\"error\":{\"code\":\"cancelled\",\"message\":\"the request was cancelled: the server is shutting "
            "down\",\"param\":null,\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n");
  EXPECT_TRUE(s.done());
}

TEST(Sse, InvalidUtf8IsReplacedNotThrown) {
  EXPECT_EQ(SseFrame(json{{"t", std::string("\xff")}}), "data: {\"t\":\"\xEF\xBF\xBD\"}\n\n");
}

TEST(ApiErrors, OpenAiShape) {
  EXPECT_EQ(BadRequest("temperature must be a number", "temperature").ToJson(),
            json::parse(R"({"error": {"message": "temperature must be a number", "type": "invalid_request_error",
                            "param": "temperature", "code": null}})"));
}

TEST(ApiErrors, FromStatus) {
  const ApiError bad = FromStatus(InvalidArgument("top_p 1.5: must be in (0, 1]"));
  EXPECT_EQ(bad.http_status, 400);
  EXPECT_EQ(bad.param, "top_p");
  EXPECT_EQ(FromStatus(InvalidArgument("prompt[3]: bad")).param, "prompt");
  EXPECT_EQ(FromStatus(InvalidArgument("no field here")).param, "");
  EXPECT_EQ(FromStatus(NotFound("x")).http_status, 404);
  EXPECT_EQ(FromStatus(Unavailable("x")).http_status, 503);
  EXPECT_EQ(FromStatus(ResourceExhausted("x")).http_status, 507);
  const ApiError internal = FromStatus(Internal("boom"));
  EXPECT_EQ(internal.http_status, 500);
  EXPECT_EQ(internal.type, "server_error");
}

TEST(HttpGuard, ApiKey) {
  httplib::Request req;
  EXPECT_FALSE(CheckApiKey(req, "").has_value());
  auto missing = CheckApiKey(req, "k1");
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->http_status, 401);
  EXPECT_EQ(missing->type, "authentication_error");
  EXPECT_EQ(missing->message, "missing API key: send the header 'Authorization: Bearer <key>'");
  req.set_header("Authorization", "Bearer k2");
  auto wrong = CheckApiKey(req, "k1");
  ASSERT_TRUE(wrong.has_value());
  EXPECT_EQ(wrong->message, "invalid API key: the Authorization header does not carry this server's --api-key");
  httplib::Request good;
  good.set_header("Authorization", "Bearer k1");
  EXPECT_FALSE(CheckApiKey(good, "k1").has_value());
}

TEST(HttpGuard, AdmissionGateHoldsPlacesUntilTicketsGo) {
  AdmissionGate gate(2);
  auto a = gate.TryEnter();
  auto b = gate.TryEnter();
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(gate.TryEnter().has_value());
  EXPECT_EQ(gate.in_flight(), 2);
  a->Release();
  EXPECT_EQ(gate.in_flight(), 1);
  auto c = gate.TryEnter();
  EXPECT_TRUE(c.has_value());
  AdmissionGate::Ticket moved = std::move(*c);
  c.reset();  // the moved-from ticket holds nothing
  EXPECT_EQ(gate.in_flight(), 2);
  b.reset();
  moved.Release();
  EXPECT_EQ(gate.in_flight(), 0);
  gate.WaitIdle();  // returns at once
}

TEST(HttpGuard, Messages) {
  EXPECT_EQ(QueueFull(1, 2).message,
            "server busy: 3 requests in flight already (--max-running 1 plus --max-queue 2); retry later");
  EXPECT_EQ(QueueFull(1, 2).http_status, 429);
  EXPECT_EQ(BodyTooLarge(4096).message, "request body too large: the limit is 4096 bytes (--max-body-bytes)");
  EXPECT_EQ(UnknownRoute("GET", "/x").message, "no route GET /x: see the endpoints in `kvstack serve --help`");
  EXPECT_EQ(Draining().http_status, 503);
}

TEST(CacheStatsJson, CountsTenantsClassesAndPins) {
  CacheMetrics m;
  m.block_size = 16;
  m.total_blocks = 64;
  m.in_use_blocks = 3;
  m.pinned_blocks = 4;
  m.prefix.query_tokens = 100;
  m.prefix.hit_tokens = 25;
  m.by_tenant["a"].hit_tokens = 25;
  m.by_priority_class[static_cast<int>(PriorityClass::kDurable)].query_blocks = 7;
  m.evictions = 9;
  m.evictions_by_priority[35] = 9;
  const std::vector<PinInfo> pins = {{.id = "pin-1", .tenant = "5bdcc146bf60", .tokens = 70, .blocks = 4, .expires_at = 3'500'000},
                                     {.id = "pin-2", .tokens = 16, .blocks = 1}};
  const json j = CacheStatsJson(m, pins, 1'000'000);
  EXPECT_EQ(j["in_use_blocks"], 3);
  EXPECT_EQ(j["pinned_blocks"], 4);
  EXPECT_DOUBLE_EQ(j["prefix"]["token_hit_rate"].get<double>(), 0.25);
  EXPECT_EQ(j["by_tenant"]["a"]["hit_tokens"], 25);
  EXPECT_EQ(j["by_priority_class"]["durable"]["query_blocks"], 7);
  EXPECT_EQ(j["evictions_by_priority"], json::parse(R"({"35": 9})"));
  EXPECT_EQ(j["pins"][0],
            json::parse(R"({"id": "pin-1", "tenant": "5bdcc146bf60", "tokens": 70, "blocks": 4, "expires_in_s": 2.5})"));
  EXPECT_TRUE(j["pins"][1]["expires_in_s"].is_null());
  EXPECT_TRUE(j["histograms"]["reuse_gap_us"].contains("p99"));
}

}  // namespace
}  // namespace kvstack::server
