#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace kvstack::tokenizer_impl {

SpecialTokenSplitter::SpecialTokenSplitter(const Vocabulary& vocab) {
  for (Token id = 0; id < vocab.size(); ++id) {
    const TokenKind kind = vocab.Kind(id);
    if (kind != TokenKind::kControl && kind != TokenKind::kUnknown && kind != TokenKind::kUserDefined) continue;
    if (vocab.Text(id).empty()) continue;  // would match everywhere
    candidates_.push_back({id, vocab.Text(id), kind == TokenKind::kUserDefined});
  }
  std::stable_sort(candidates_.begin(), candidates_.end(),
                   [](const Candidate& a, const Candidate& b) { return a.text.size() > b.text.size(); });
}

std::vector<Fragment> SpecialTokenSplitter::Split(std::string_view text, bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({text, std::nullopt});
  std::vector<Fragment> next;
  for (const Candidate& candidate : candidates_) {
    if (!parse_special && !candidate.user_defined) continue;
    const bool present = std::any_of(fragments.begin(), fragments.end(), [&](const Fragment& f) {
      return !f.token && f.text.find(candidate.text) != std::string_view::npos;
    });
    if (!present) continue;
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token) {
        next.push_back(fragment);
        continue;
      }
      std::string_view rest = fragment.text;
      for (size_t at = rest.find(candidate.text); at != std::string_view::npos; at = rest.find(candidate.text)) {
        if (at > 0) next.push_back({rest.substr(0, at), std::nullopt});
        next.push_back({candidate.text, candidate.token});
        rest.remove_prefix(at + candidate.text.size());
      }
      if (!rest.empty()) next.push_back({rest, std::nullopt});
    }
    fragments.swap(next);
  }
  return fragments;
}

}  // namespace kvstack::tokenizer_impl
