#include "tokenizer/bpe_ranks.h"

#include <fmt/format.h>

namespace kvstack::tokenizer_impl {

Result<BpeRanks> BpeRanks::Build(std::span<const std::string> merges) {
  if (merges.size() > static_cast<size_t>(INT32_MAX)) {
    return InvalidArgument(fmt::format("metadata key 'tokenizer.ggml.merges' holds {} merges; at most {} are supported",
                                       merges.size(), INT32_MAX));
  }
  BpeRanks ranks;
  ranks.ranks_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& merge = merges[i];
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos || space + 1 == merge.size()) {
      return InvalidArgument(fmt::format(
          "metadata key 'tokenizer.ggml.merges' entry {} is '{}': expected two tokens separated by a space", i, merge));
    }
    ranks.ranks_.try_emplace(merge, Entry{static_cast<int32_t>(i), static_cast<uint32_t>(space)});
  }
  return ranks;
}

std::optional<int32_t> BpeRanks::Rank(std::string_view left, std::string_view right) const {
  // One key buffer per thread: the lookup runs for every candidate pair.
  thread_local std::string key;
  key.assign(left);
  key.push_back(' ');
  key.append(right);
  auto it = ranks_.find(std::string_view(key));
  if (it == ranks_.end() || it->second.left_size != left.size()) return std::nullopt;
  return it->second.rank;
}

}  // namespace kvstack::tokenizer_impl
