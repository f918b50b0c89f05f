// Tokenizer::FromGguf: reads the tokenizer.ggml.* keys, applies llama.cpp's
// defaults for what the file leaves out, and builds the tables.
#include <algorithm>
#include <array>
#include <climits>

#include <fmt/format.h>

#include "kvstack/gguf.h"
#include "kvstack/tokenizer.h"
#include "tokenizer/bpe_encoder.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm_encoder.h"
#include "tokenizer/tokenizer_parts.h"

namespace kvstack {
namespace {

using tokenizer_impl::VocabularyTables;

// Texts llama.cpp treats as end of generation whatever the file's type for
// them says (it forces them to control): end of turn, end of message, and the
// fill-in-the-middle pad/repo/file separators that end a FIM completion.
constexpr std::array<std::string_view, 7> kEotTexts = {"<|eot_id|>",    "<|im_end|>",    "<|end|>", "<end_of_turn>",
                                                       "<|endoftext|>", "<EOT>", "<｜end▁of▁sentence｜>"};
constexpr std::array<std::string_view, 9> kOtherEogTexts = {
    "<|eom_id|>", "<|fim_pad|>", "<fim-pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
    "<|file_sep|>"};

template <size_t N>
bool Contains(const std::array<std::string_view, N>& set, std::string_view text) {
  return std::find(set.begin(), set.end(), text) != set.end();
}

TokenKind KindFromGguf(int32_t type) {
  if (type >= 1 && type <= 6) return static_cast<TokenKind>(type);
  return TokenKind::kUndefined;
}

std::optional<Token> AsToken(std::optional<uint32_t> id) {
  if (!id) return std::nullopt;
  return static_cast<Token>(*id);
}

// "<0x0A>" -> 0x0A.
std::optional<uint8_t> ParseByteToken(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(text[3]);
  const int lo = hex(text[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

std::string SpmUnescape(std::string_view text) {
  constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    if (text.substr(pos, kEscapedSpace.size()) == kEscapedSpace) {
      out.push_back(' ');
      pos += kEscapedSpace.size();
    } else {
      out.push_back(text[pos++]);
    }
  }
  return out;
}

// What the token decodes to (llama.cpp's token_to_piece with special = true).
std::string PieceOf(Tokenizer::Model model, std::string_view text, TokenKind kind) {
  switch (kind) {
    case TokenKind::kControl:
    case TokenKind::kUnknown:
    case TokenKind::kUserDefined:
      return std::string(text);
    case TokenKind::kNormal:
      return model == Tokenizer::Model::kSentencePiece ? SpmUnescape(text) : tokenizer_impl::ByteLevelDecode(text);
    case TokenKind::kByte:
      if (auto byte = ParseByteToken(text)) return std::string(1, static_cast<char>(*byte));
      return std::string();
    case TokenKind::kUnused:
    case TokenKind::kUndefined:
      return std::string();
  }
  return std::string();
}

// Texts, scores and kinds as the file gives them (pieces come later, once
// the kinds are final).
VocabularyTables ReadTables(const GgufTokenizerMetadata& meta) {
  const size_t n = meta.tokens.size();
  VocabularyTables tables;
  tables.texts.assign(meta.tokens.begin(), meta.tokens.end());
  tables.scores.assign(n, 0.0f);
  if (!meta.scores.empty()) tables.scores.assign(meta.scores.begin(), meta.scores.end());
  tables.kinds.assign(n, TokenKind::kNormal);
  for (size_t i = 0; i < meta.token_types.size(); ++i) tables.kinds[i] = KindFromGguf(meta.token_types[i]);
  return tables;
}

// The tokens that end generation by their text; makes them control tokens and
// takes the first end-of-turn text as EOT when the file names none.
std::vector<Token> MarkEndOfGeneration(VocabularyTables* tables, std::optional<Token>* eot) {
  std::vector<Token> eog;
  for (size_t i = 0; i < tables->texts.size(); ++i) {
    const std::string_view text = tables->texts[i];
    const bool eot_text = Contains(kEotTexts, text);
    if (!eot_text && !Contains(kOtherEogTexts, text)) continue;
    const auto id = static_cast<Token>(i);
    if (eot_text && !*eot) *eot = id;
    eog.push_back(id);
    tables->kinds[i] = TokenKind::kControl;
  }
  return eog;
}

Result<Tokenizer::Model> ParseModel(std::string_view name) {
  if (name == "llama") return Tokenizer::Model::kSentencePiece;
  if (name == "gpt2") return Tokenizer::Model::kBytePairEncoding;
  return InvalidArgument(fmt::format(
      "metadata key 'tokenizer.ggml.model' is '{}': unsupported; kvstack reads 'llama' (SentencePiece) and 'gpt2' "
      "(byte-level BPE)",
      name));
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  auto meta_or = ReadTokenizerMetadata(file);
  if (!meta_or.ok()) return meta_or.status();
  const GgufTokenizerMetadata& meta = *meta_or;
  auto model = ParseModel(meta.model);
  if (!model.ok()) return model.status();
  const bool spm = *model == Model::kSentencePiece;
  const size_t n = meta.tokens.size();
  if (n > static_cast<size_t>(INT32_MAX)) {
    return InvalidArgument(fmt::format("metadata key 'tokenizer.ggml.tokens' holds {} tokens; at most {} are supported",
                                       n, INT32_MAX));
  }

  Parts parts;
  parts.model = *model;
  parts.model_name = std::string(meta.model);
  parts.pre_name = std::string(meta.pre);

  std::optional<tokenizer_impl::PreTokenizerSpec> pre;
  if (!spm) {
    pre = tokenizer_impl::LookupPreTokenizer(meta.pre);
    if (!pre) {
      return InvalidArgument(fmt::format("metadata key 'tokenizer.ggml.pre' is '{}': unsupported pre-tokenizer; "
                                         "kvstack supports {}",
                                         meta.pre, tokenizer_impl::SupportedPreTokenizerNames()));
    }
    if (!file.Has("tokenizer.ggml.merges")) {
      return NotFound("metadata key 'tokenizer.ggml.merges' not found: a 'gpt2' (BPE) vocabulary needs its merges");
    }
  }

  VocabularyTables tables = ReadTables(meta);
  // SentencePiece files that leave the ids out use Llama's; BPE ones have none
  // (llama.cpp's BPE default, id 11, names a token only in GPT-2's vocabulary).
  auto spm_default = [&](Token id) -> std::optional<Token> {
    if (spm && static_cast<size_t>(id) < n) return id;
    return std::nullopt;
  };
  parts.bos = meta.bos_id ? AsToken(meta.bos_id) : spm_default(1);
  parts.eos = meta.eos_id ? AsToken(meta.eos_id) : spm_default(2);
  parts.unk = meta.unk_id ? AsToken(meta.unk_id) : spm_default(0);
  parts.eot = AsToken(meta.eot_id);
  parts.pad = AsToken(meta.pad_id);

  parts.eog = MarkEndOfGeneration(&tables, &parts.eot);
  for (const std::optional<Token>& id : {parts.eos, parts.eot}) {
    if (id) parts.eog.push_back(*id);
  }
  std::sort(parts.eog.begin(), parts.eog.end());
  parts.eog.erase(std::unique(parts.eog.begin(), parts.eog.end()), parts.eog.end());

  parts.add_bos = meta.add_bos.value_or(spm || pre->add_bos);
  parts.add_eos = meta.add_eos.value_or(false);
  parts.add_space_prefix = meta.add_space_prefix.value_or(spm);
  if (parts.add_bos && !parts.bos) {
    return InvalidArgument(
        "metadata key 'tokenizer.ggml.add_bos_token' asks for a BOS token, but 'tokenizer.ggml.bos_token_id' names "
        "none");
  }
  if (parts.add_eos && !parts.eos) {
    return InvalidArgument(
        "metadata key 'tokenizer.ggml.add_eos_token' asks for an EOS token, but 'tokenizer.ggml.eos_token_id' names "
        "none");
  }

  tables.pieces.reserve(n);
  for (size_t i = 0; i < n; ++i) tables.pieces.push_back(PieceOf(parts.model, tables.texts[i], tables.kinds[i]));
  tables.unk = parts.unk;
  auto vocab = std::make_unique<const tokenizer_impl::Vocabulary>(std::move(tables));

  if (spm) {
    parts.encoder = std::make_unique<tokenizer_impl::SpmEncoder>(*vocab, parts.add_space_prefix);
  } else {
    auto ranks = tokenizer_impl::BpeRanks::Build(meta.merges);
    if (!ranks.ok()) return ranks.status();
    auto pre_tokenizer = tokenizer_impl::PreTokenizer::Compile(pre->patterns);
    if (!pre_tokenizer.ok()) return Internal(pre_tokenizer.status().message());
    parts.encoder = std::make_unique<tokenizer_impl::BpeEncoder>(*vocab, std::move(ranks).value(),
                                                                  std::move(pre_tokenizer).value(), pre->ignore_merges);
  }
  parts.specials = std::make_unique<tokenizer_impl::SpecialTokenSplitter>(*vocab);
  parts.vocab = std::move(vocab);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(parts)));
}

}  // namespace kvstack
