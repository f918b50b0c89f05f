// Parsing and validation of /v1/completions and /v1/chat/completions bodies
// (see openai_request.h for what is supported, ignored and refused).
#include "server/openai_request.h"

#include <fmt/format.h>

#include "server/json_fields.h"

namespace kvstack::server {
namespace {

constexpr size_t kMaxStops = 16;

OptError ParseStop(const FieldReader& r, std::vector<std::string>* out) {
  if (!r.Has("stop")) return std::nullopt;
  const nlohmann::json& v = r.Get("stop");
  constexpr const char* kWhat = "stop must be a string or an array of strings";
  if (v.is_string()) {
    if (v.get<std::string>().empty()) return BadRequest("stop must not be an empty string", "stop");
    out->push_back(v.get<std::string>());
    return std::nullopt;
  }
  if (!v.is_array()) return BadRequest(kWhat, "stop");
  if (v.size() > kMaxStops) {
    return BadRequest(fmt::format("stop: {} stop strings; at most {}", v.size(), kMaxStops), "stop");
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) return BadRequest(kWhat, "stop");
    if (v[i].get<std::string>().empty()) {
      return BadRequest(fmt::format("stop[{}] must not be an empty string", i), "stop");
    }
    out->push_back(v[i].get<std::string>());
  }
  return std::nullopt;
}

// Fields of OpenAI's API that this server does not implement: refused when
// they ask for something other than the default, so a client never gets a
// silently different answer.
OptError RefuseUnsupported(const FieldReader& r) {
  std::string suffix;
  if (OptError e = r.String("suffix", &suffix)) return e;
  if (!suffix.empty()) return BadRequest("suffix is not supported by this server", "suffix");
  if (r.Has("tools") && !(r.Get("tools").is_array() && r.Get("tools").empty())) {
    return BadRequest("tools are not supported by this server", "tools");
  }
  // Type-checked so a typo in a client shows, then ignored.
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    double v = 0;
    if (OptError e = r.Number(key, &v)) return e;
    if (v < -2 || v > 2) return BadRequest(fmt::format("{} {}: must be from -2 to 2", key, v), key);
  }
  return std::nullopt;
}

OptError ParseSampling(const FieldReader& r, CompletionBody* b) {
  SamplingParams& s = b->sampling;
  if (OptError e = r.Float("temperature", &s.temperature)) return e;
  if (OptError e = r.Float("top_p", &s.top_p)) return e;
  if (OptError e = r.Float("min_p", &s.min_p)) return e;
  if (OptError e = r.Float("repetition_penalty", &s.repetition_penalty)) return e;
  int64_t top_k = 0;
  if (OptError e = r.Integer("top_k", &top_k)) return e;
  // vLLM and llama.cpp spell "off" as -1 too.
  s.top_k = top_k < 0 ? 0 : static_cast<int>(std::min<int64_t>(top_k, INT32_MAX));
  if (r.Has("seed")) {
    int64_t seed = 0;
    if (OptError e = r.Integer("seed", &seed)) return e;
    b->seed = static_cast<uint64_t>(seed);
  }
  if (OptError e = ParseStop(r, &s.stop_strings)) return e;
  Status valid = s.Validate();
  if (!valid.ok()) return FromStatus(valid);
  return std::nullopt;
}

// n, best_of, logprobs, top_logprobs and echo: what the client sees of the
// sampling beyond the text.
OptError ParseChoices(const FieldReader& r, const RequestLimits& limits, CompletionBody* b) {
  const bool chat = b->endpoint == Endpoint::kChat;
  int64_t n = 1;
  if (OptError e = r.Integer("n", &n)) return e;
  if (n < 1 || n > limits.max_n) {
    return BadRequest(fmt::format("n {}: must be from 1 to {} (this server's --max-n)", n, limits.max_n), "n");
  }
  b->n = static_cast<int32_t>(n);
  if (r.Has("best_of")) {
    int64_t best_of = n;
    if (OptError e = r.Integer("best_of", &best_of)) return e;
    if (best_of != n) {
      return BadRequest(fmt::format("best_of {}: must equal n ({}): this server returns every choice it samples",
                                    best_of, n),
                        "best_of");
    }
  }
  constexpr int64_t kMax = kMaxLogprobs;
  if (chat) {
    bool want = false;
    if (r.Has("logprobs") && !r.Get("logprobs").is_boolean()) {
      return BadRequest("logprobs must be true or false on /v1/chat/completions (top_logprobs says how many "
                        "alternatives)",
                        "logprobs");
    }
    if (OptError e = r.Bool("logprobs", &want)) return e;
    int64_t top = 0;
    if (OptError e = r.IntegerIn("top_logprobs", 0, kMax, &top)) return e;
    if (r.Has("top_logprobs") && !want) return BadRequest("top_logprobs needs logprobs: true", "top_logprobs");
    b->logprobs = want ? static_cast<int32_t>(top) : -1;
    if (r.Has("echo")) {
      bool echo = false;
      if (OptError e = r.Bool("echo", &echo)) return e;
      if (echo) return BadRequest("echo is only for /v1/completions", "echo");
    }
    return std::nullopt;
  }
  if (r.Has("logprobs")) {
    const nlohmann::json& v = r.Get("logprobs");
    if (v.is_boolean() && !v.get<bool>()) {
      b->logprobs = -1;  // some clients send false for "off"
    } else {
      if (v.is_boolean()) {
        return BadRequest(fmt::format("logprobs must be an integer from 0 to {} on /v1/completions: how many "
                                      "alternatives to return per token",
                                      kMax),
                          "logprobs");
      }
      int64_t k = 0;
      if (OptError e = r.IntegerIn("logprobs", 0, kMax, &k)) return e;
      b->logprobs = static_cast<int32_t>(k);
    }
  }
  if (r.Has("top_logprobs")) {
    return BadRequest("top_logprobs is for /v1/chat/completions; on /v1/completions logprobs is the count",
                      "top_logprobs");
  }
  if (OptError e = r.Bool("echo", &b->echo)) return e;
  return std::nullopt;
}

const char* MaxTokensField(const CompletionBody& b, const FieldReader& r) {
  return b.endpoint == Endpoint::kChat && r.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
}

}  // namespace

ApiResult<nlohmann::json> ParseJsonObject(std::string_view body) {
  nlohmann::json j;
  try {
    // The parser reports where and why only through its exception; it stays
    // in this function.
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double
    // ("1e999"; found by fuzz/request_fuzz.cpp).
    std::string what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag.
    if (const size_t close = what.find("] "); what.rfind("[json.exception", 0) == 0 && close != std::string::npos) {
      what = what.substr(close + 2);
    }
    return BadRequest("invalid JSON: " + what);
  }
  if (!j.is_object()) return BadRequest("request body must be a JSON object");
  return j;
}

ApiResult<CompletionBody> ParseCompletionBody(const nlohmann::json& body, Endpoint endpoint,
                                              const RequestLimits& limits) {
  CompletionBody b;
  b.endpoint = endpoint;
  const FieldReader r(body);
  auto prompt = ParsePrompt(body, endpoint);
  if (!prompt.ok()) return prompt.error();
  b.prompt = std::move(prompt).value();
  if (OptError e = r.String("model", &b.model)) return *e;
  if (OptError e = RefuseUnsupported(r)) return *e;
  if (OptError e = ParseChoices(r, limits, &b)) return *e;

  const char* mt = MaxTokensField(b, r);
  if (r.Has(mt)) {
    int64_t n = 0;
    if (OptError e = r.Integer(mt, &n)) return *e;
    if (n < 1 && !(n == 0 && b.echo)) {
      return BadRequest(fmt::format("{} {}: must be at least 1 (0 only with echo: it scores the prompt)", mt, n), mt);
    }
    if (n > limits.max_tokens_limit) {
      return BadRequest(fmt::format("{} {} exceeds this server's limit of {} (--max-tokens-limit)", mt, n,
                                    limits.max_tokens_limit),
                        mt);
    }
    b.max_tokens = n;
  }
  if (OptError e = ParseSampling(r, &b)) return *e;
  if (OptError e = r.Bool("stream", &b.stream)) return *e;
  if (r.Has("stream_options")) {
    const nlohmann::json& so = r.Get("stream_options");
    if (!so.is_object()) return BadRequest("stream_options must be an object", "stream_options");
    if (OptError e = FieldReader(so, "stream_options.").Bool("include_usage", &b.include_usage)) return *e;
  }
  if (OptError e = r.Bool("ignore_eos", &b.ignore_eos)) return *e;
  auto kv = ParseKvControls(body);
  if (!kv.ok()) return kv.error();
  b.kv = std::move(kv).value();
  return b;
}

ApiResult<GenerationRequest> BuildGeneration(const CompletionBody& body, std::vector<Token> prompt,
                                             const RequestLimits& limits, const std::vector<std::string>& chat_stops,
                                             uint64_t fallback_seed) {
  const int32_t n = static_cast<int32_t>(prompt.size());
  if (n >= limits.context_tokens) {
    return BadRequest(fmt::format("{}: {} tokens leave no room in the context of {} tokens", body.prompt.field, n,
                                  limits.context_tokens),
                      body.prompt.field);
  }
  GenerationRequest g;
  g.sampling = body.sampling;
  if (body.max_tokens) {
    g.sampling.max_tokens = static_cast<int>(*body.max_tokens);
  } else if (body.endpoint == Endpoint::kCompletions) {
    g.sampling.max_tokens = std::min(limits.default_max_tokens, limits.max_tokens_limit);
  } else {
    // Chat: until the model ends its turn or the context is full.
    g.sampling.max_tokens = std::min(limits.max_tokens_limit, limits.context_tokens - n);
  }
  g.sampling.seed = body.seed.value_or(fallback_seed);
  if (body.endpoint == Endpoint::kChat) {
    g.sampling.stop_strings.insert(g.sampling.stop_strings.end(), chat_stops.begin(), chat_stops.end());
  }
  auto retention = MakeRetention(body.kv, n);
  if (!retention.ok()) return retention.error();
  g.retention = std::move(retention).value();
  g.cache_salt = body.kv.cache_salt;
  g.priority = body.kv.priority;
  g.ignore_eos = body.ignore_eos;
  g.n = body.n;
  g.logprobs = body.logprobs;
  // Echo shows the prompt's logprobs when logprobs are asked; scoring
  // (max_tokens 0) always computes them: it is what it is for.
  if (body.echo && (body.logprobs >= 0 || g.sampling.max_tokens == 0)) g.prompt_logprobs = std::max(body.logprobs, 0);
  g.prompt = std::move(prompt);
  return g;
}

}  // namespace kvstack::server
