// Tokenizer: text to token ids and back, as llama.cpp does it for a GGUF file.
//
// Two vocabularies are supported, chosen by `tokenizer.ggml.model`:
//   "llama"  SentencePiece (Llama 1/2, TinyLlama, stories260K): spaces become
//            U+2581, a space is put in front of the text, adjacent pieces are
//            merged highest score first, and bytes with no piece of their own
//            fall back to the `<0xXX>` byte tokens.
//   "gpt2"   byte-level BPE (GPT-2, Llama 3, Qwen2): the text is split by the
//            pre-tokenizer that `tokenizer.ggml.pre` names, each byte is mapped
//            to GPT-2's printable alphabet, and pieces are merged in the order
//            of `tokenizer.ggml.merges`.
// Before either runs, text that spells a special token (control tokens such
// as "<s>" or "<|im_end|>" when parse_special is set; user-defined tokens
// always) is cut out and becomes that token, longest special token first.
//
// Decoding concatenates each token's Piece(): the bytes it stands for. Pieces
// of byte tokens may be parts of a UTF-8 character, so Decode's output is
// valid UTF-8 only when the whole sequence is; StreamDecoder releases text
// only in whole characters, for streaming.
//
// Invalid UTF-8 input never fails: SentencePiece tokenizes bytes, so invalid
// bytes become byte tokens and decode back unchanged; byte-level BPE (which
// needs characters to pre-tokenize) replaces each byte that is not part of a
// well-formed UTF-8 sequence with U+FFFD, as llama.cpp does.
//
// Not supported (FromGguf fails naming the key): WordPiece, Unigram and RWKV
// vocabularies; pre-tokenizers other than the GPT-2, Llama-3 and Qwen2
// families and "default". Per-token lstrip/rstrip attributes, which llama.cpp
// sets by model name for Phi-3 and Jina, are not applied.
//
// Callers: the engine (prompts in, generated text out), the server
// (/tokenize, /detokenize) and CLI commands.
// Thread safety: a Tokenizer never changes after FromGguf returns it; any
// number of threads may call its const methods at once. A StreamDecoder is
// used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"  // Token
#include "kvstack/status.h"

namespace kvstack {

class GgufFile;

namespace tokenizer_impl {
class Vocabulary;
class TextEncoder;
class SpecialTokenSplitter;
}  // namespace tokenizer_impl

// What a token is, from `tokenizer.ggml.token_type` (the numbers are GGUF's).
// A file without that key makes every token kNormal.
enum class TokenKind : uint8_t {
  kUndefined = 0,    // a type number GGUF does not define; renders as nothing
  kNormal = 1,       // ordinary text
  kUnknown = 2,      // <unk>: special, renders as its text only when asked
  kControl = 3,      // <s>, </s>, <|im_end|>: special, as above
  kUserDefined = 4,  // added tokens that are text: always matched, always rendered
  kUnused = 5,       // reserved slots; render as nothing
  kByte = 6,         // <0xXX>: one raw byte
};

class Tokenizer {
 public:
  enum class Model : uint8_t { kSentencePiece, kBytePairEncoding };

  struct EncodeOptions {
    // Prepend BOS / append EOS; nullopt means as the file says (add_bos(),
    // add_eos()).
    std::optional<bool> add_bos;
    std::optional<bool> add_eos;
    // Text spelling a control or unknown token ("<s>", "<|im_start|>")
    // becomes that token. Turn it off for text from users that must not be
    // able to inject control tokens; user-defined tokens are matched anyway.
    bool parse_special = true;
  };

  struct DecodeOptions {
    // Control and unknown tokens render as nothing (true) or as their text.
    bool skip_special = true;
    // The tokens begin a text that Encode produced: drop the one space that a
    // SentencePiece vocabulary with add_space_prefix() put in front of it,
    // from the first token that is not control or unknown (so after a leading
    // BOS too). Leave it false for tokens that continue a text, such as a
    // completion after its prompt, where the space is real; that is also
    // llama.cpp's /detokenize. No effect for BPE vocabularies.
    bool strip_prefix_space = false;
  };

  // Builds the tokenizer of a GGUF file; the result does not refer to `file`.
  // Fails with the errors of ReadTokenizerMetadata, and with InvalidArgument
  // naming the key when the model or pre-tokenizer is not supported, a merge
  // is not two tokens separated by a space, the vocabulary has more than
  // 2^31-1 tokens, or add_bos/add_eos is set but the file has no such token;
  // NotFound when a "gpt2" vocabulary has no tokenizer.ggml.merges.
  static Result<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // The token ids of `text`. Empty text gives no ids but BOS/EOS if asked.
  std::vector<Token> Encode(std::string_view text) const;  // default options
  std::vector<Token> Encode(std::string_view text, const EncodeOptions& options) const;

  // The text of `tokens`: their Piece()s concatenated, less what `options`
  // leave out. Ids outside [0, vocab_size()) render as nothing; callers that
  // take ids from users check them with CheckTokens first.
  std::string Decode(std::span<const Token> tokens) const;  // default options
  std::string Decode(std::span<const Token> tokens, const DecodeOptions& options) const;

  // InvalidArgument naming the first id outside [0, vocab_size()) and its
  // position; OK otherwise.
  Status CheckTokens(std::span<const Token> tokens) const;

  int32_t vocab_size() const;
  bool IsValid(Token token) const { return token >= 0 && token < vocab_size(); }

  // REQUIRES for the three below: IsValid(token).
  // The bytes the token stands for: " Hello" for "▁Hello", "\n" for "<0x0A>"
  // or "Ċ", the text itself for control, unknown and user-defined tokens, ""
  // for unused ones. Valid until the Tokenizer is destroyed.
  std::string_view Piece(Token token) const;
  // The vocabulary's own spelling ("▁Hello", "Ġworld", "<0x0A>").
  std::string_view Text(Token token) const;
  TokenKind Kind(Token token) const;
  // Control or unknown: what parse_special matches and skip_special drops.
  bool IsSpecial(Token token) const;

  // The id whose Text() is exactly `text`, if any (for chat templates and stop
  // tokens: Find("<|im_end|>")).
  std::optional<Token> Find(std::string_view text) const;

  // Special ids. When the file does not name BOS/EOS/UNK, a SentencePiece
  // vocabulary uses llama.cpp's defaults 1, 2 and 0; a BPE one has none.
  std::optional<Token> bos() const { return bos_; }
  std::optional<Token> eos() const { return eos_; }
  std::optional<Token> eot() const { return eot_; }  // end of turn: key, else by text
  std::optional<Token> unk() const { return unk_; }
  std::optional<Token> pad() const { return pad_; }
  // End of generation: EOS, EOT, and tokens llama.cpp treats so by their text
  // (<|eot_id|>, <|im_end|>, <|endoftext|>, <|eom_id|>, <end_of_turn>, ...).
  bool IsEog(Token token) const;
  std::span<const Token> eog_tokens() const { return eog_; }  // ascending

  // From the file, else llama.cpp's default for the model and pre-tokenizer.
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }

  Model model() const { return model_; }
  std::string_view model_name() const { return model_name_; }  // "llama", "gpt2"
  std::string_view pre_name() const { return pre_name_; }      // "gpt-2", "llama-bpe", ""

 private:
  struct Parts;
  explicit Tokenizer(Parts parts);

  Model model_;
  std::string model_name_;
  std::string pre_name_;
  std::unique_ptr<const tokenizer_impl::Vocabulary> vocab_;
  std::unique_ptr<const tokenizer_impl::TextEncoder> encoder_;
  std::unique_ptr<const tokenizer_impl::SpecialTokenSplitter> specials_;
  std::vector<Token> eog_;
  std::optional<Token> bos_, eos_, eot_, unk_, pad_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
};

// Turns a stream of generated tokens into text that is safe to print: Push
// returns only whole UTF-8 characters and holds back the bytes of one that is
// not complete yet. The concatenation of every Push and a final Flush equals
// Decode of all the tokens with the same options. Bytes that cannot be part of
// a well-formed character (a stray continuation byte, a lead byte followed by
// a non-continuation) are released as they are: they never complete.
//
// Thread safety: one thread at a time; the Tokenizer must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, Tokenizer::DecodeOptions options = {});

  // The text that `token` completes; often empty while a character is split
  // across byte tokens.
  std::string Push(Token token);
  // Whatever is held back (an incomplete character at the end of the stream),
  // as it is. The decoder may keep being used; it continues mid-text.
  std::string Flush();
  // Bytes held back now (at most 3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  Tokenizer::DecodeOptions options_;
  bool strip_next_;  // the next text token still owes the prefix space
  std::string pending_;
};

}  // namespace kvstack
