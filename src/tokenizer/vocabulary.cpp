#include "tokenizer/vocabulary.h"

#include <cassert>

#include <fmt/format.h>

namespace kvstack::tokenizer_impl {

Vocabulary::Vocabulary(VocabularyTables tables)
    : texts_(std::move(tables.texts)),
      pieces_(std::move(tables.pieces)),
      scores_(std::move(tables.scores)),
      kinds_(std::move(tables.kinds)),
      unk_(tables.unk) {
  assert(pieces_.size() == texts_.size() && scores_.size() == texts_.size() && kinds_.size() == texts_.size());
  index_.reserve(texts_.size());
  for (size_t id = 0; id < texts_.size(); ++id) {
    if (!texts_[id].empty()) index_.insert_or_assign(std::string_view(texts_[id]), static_cast<Token>(id));
  }
  for (int b = 0; b < 256; ++b) {
    std::optional<Token> token = Find(fmt::format("<0x{:02X}>", b));
    if (!token) token = Find(std::string(1, static_cast<char>(b)));
    if (!token) token = unk_;
    byte_fallback_[b] = token;
  }
}

std::optional<Token> Vocabulary::Find(std::string_view text) const {
  auto it = index_.find(text);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

}  // namespace kvstack::tokenizer_impl
