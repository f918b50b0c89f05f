#include "server/logprobs_json.h"

#include <string>

namespace kvstack::server {
namespace {

std::string TokenString(const Tokenizer& tokenizer, Token t) {
  return tokenizer.IsValid(t) ? std::string(tokenizer.Piece(t)) : std::string();
}

nlohmann::json Bytes(const std::string& s) {
  nlohmann::json b = nlohmann::json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// {"token": logprob} of the alternatives and the chosen token.
nlohmann::json TopDict(const Tokenizer& tokenizer, const PositionLogprobs& p) {
  nlohmann::json top = nlohmann::json::object();
  for (const TokenLogprob& t : p.top) {
    const std::string s = TokenString(tokenizer, t.token);
    if (!top.contains(s)) top[s] = t.logprob;  // two tokens may share a string: the likelier stays
  }
  const std::string chosen = TokenString(tokenizer, p.token);
  if (!top.contains(chosen)) top[chosen] = p.logprob;
  return top;
}

}  // namespace

nlohmann::json CompletionLogprobsJson(const Tokenizer& tokenizer, std::span<const Token> echo_prompt,
                                      std::span<const PositionLogprobs> prompt_scores,
                                      std::span<const PositionLogprobs> generated, int64_t* text_offset) {
  nlohmann::json tokens = nlohmann::json::array(), lps = nlohmann::json::array(), tops = nlohmann::json::array(),
                 offsets = nlohmann::json::array();
  auto add = [&](Token t, const PositionLogprobs* p) {
    const std::string s = TokenString(tokenizer, t);
    tokens.push_back(s);
    lps.push_back(p ? nlohmann::json(p->logprob) : nlohmann::json(nullptr));
    tops.push_back(p ? TopDict(tokenizer, *p) : nlohmann::json(nullptr));
    offsets.push_back(*text_offset);
    *text_offset += static_cast<int64_t>(s.size());
  };
  for (size_t i = 0; i < echo_prompt.size(); ++i) {
    const bool scored = i > 0 && i - 1 < prompt_scores.size();
    add(echo_prompt[i], scored ? &prompt_scores[i - 1] : nullptr);
  }
  for (const PositionLogprobs& p : generated) add(p.token, &p);
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(lps)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offsets)}};
}

nlohmann::json ChatLogprobsJson(const Tokenizer& tokenizer, std::span<const PositionLogprobs> generated) {
  nlohmann::json content = nlohmann::json::array();
  for (const PositionLogprobs& p : generated) {
    const std::string s = TokenString(tokenizer, p.token);
    nlohmann::json top = nlohmann::json::array();
    for (const TokenLogprob& t : p.top) {
      const std::string ts = TokenString(tokenizer, t.token);
      top.push_back({{"token", ts}, {"logprob", t.logprob}, {"bytes", Bytes(ts)}});
    }
    content.push_back({{"token", s}, {"logprob", p.logprob}, {"bytes", Bytes(s)}, {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

}  // namespace kvstack::server
