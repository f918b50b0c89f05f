// BpeRanks: `tokenizer.ggml.merges` as a lookup from an adjacent pair of
// symbols to the rank of their merge (its index in the list; lower merges
// first).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "kvstack/status.h"

namespace kvstack::tokenizer_impl {

class BpeRanks {
 public:
  // Each merge is "left right", split at the first space after its first
  // byte (as llama.cpp splits it, so a left side may begin with a space).
  // Fails with InvalidArgument naming the index and text of a merge without
  // such a space or with an empty right side. A pair listed twice keeps its
  // first (lowest) rank.
  static Result<BpeRanks> Build(std::span<const std::string> merges);

  std::optional<int32_t> Rank(std::string_view left, std::string_view right) const;
  size_t size() const { return ranks_.size(); }

 private:
  struct Entry {
    int32_t rank;
    uint32_t left_size;  // where the key splits, so that "a b"+"c" never matches "a"+"b c"
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  // Keyed by "left right".
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> ranks_;
};

}  // namespace kvstack::tokenizer_impl
