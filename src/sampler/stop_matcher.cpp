// StopMatcher: stop strings over streamed text, holding back what could still
// turn into one (or finish a UTF-8 character).
#include <algorithm>

#include "kvstack/sampler.h"

namespace kvstack {
namespace {

// Bytes in the UTF-8 sequence that `lead` starts; 0 for a continuation or
// invalid byte.
size_t Utf8SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

// Length of an incomplete UTF-8 sequence at the end of `text` (0 when the text
// ends on a character boundary or on bytes that are not UTF-8 anyway: waiting
// would not make those valid).
size_t IncompleteUtf8Tail(std::string_view text) {
  const size_t look = std::min<size_t>(text.size(), 3);
  for (size_t back = 1; back <= look; ++back) {
    const auto byte = static_cast<unsigned char>(text[text.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: the lead is further back
    const size_t need = Utf8SequenceLength(byte);
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

StopMatcher::StopMatcher(std::vector<std::string> stop_strings) : stop_strings_(std::move(stop_strings)) {
  std::erase_if(stop_strings_, [](const std::string& s) { return s.empty(); });
}

size_t StopMatcher::HoldBack() const {
  const std::string_view text = held_;
  size_t hold = IncompleteUtf8Tail(text);
  // The longest tail that is a proper prefix of a stop string. Only tails
  // shorter than the stop string can be one, so this is O(total stop length^2)
  // per piece at worst, independent of how much text has streamed.
  for (const std::string& stop : stop_strings_) {
    const size_t longest = std::min(text.size(), stop.size() - 1);
    for (size_t len = longest; len > hold; --len) {
      if (text.substr(text.size() - len) == std::string_view(stop).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  return hold;
}

StopMatcher::Output StopMatcher::Feed(std::string_view piece) {
  if (stop_index_) return {std::string(), stop_index_};
  held_.append(piece);

  // The earliest occurrence wins: the text before it is all the client may
  // see. Everything emitted earlier cannot start an occurrence (it would have
  // been a held-back prefix), so searching held_ is enough.
  size_t first = std::string::npos;
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    const size_t at = held_.find(stop_strings_[i]);
    if (at < first) {
      first = at;
      stop_index_ = i;
    }
  }
  if (stop_index_) {
    Output out{held_.substr(0, first), stop_index_};
    held_.clear();
    return out;
  }

  const size_t emit = held_.size() - HoldBack();
  Output out{held_.substr(0, emit), std::nullopt};
  held_.erase(0, emit);
  return out;
}

std::string StopMatcher::Flush() {
  std::string rest = std::move(held_);
  held_.clear();
  return rest;
}

}  // namespace kvstack
