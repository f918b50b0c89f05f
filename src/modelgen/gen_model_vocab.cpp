// The generated models' vocabulary: SentencePiece-style ("llama" tokenizer
// model) with byte fallback, so any UTF-8 text tokenizes, plus enough English
// pieces that ordinary text takes far fewer tokens than bytes.
#include <set>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "kvstack/model_gen.h"

namespace kvstack {
namespace {

// llama.cpp's token types.
constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6;

// SentencePiece's word-start marker (U+2581), which stands for the space.
constexpr std::string_view kSpace = "\xE2\x96\x81";

// Frequent English words (TinyStories and chat flavoured), most frequent
// first: earlier pieces get higher scores.
constexpr std::string_view kWords[] = {
    "the", "and", "to", "a", "was", "he", "she", "it", "of", "in", "you", "that", "is", "her", "his", "they",
    "with", "for", "on", "said", "I", "be", "at", "as", "had", "have", "not", "but", "this", "from", "one",
    "all", "we", "what", "so", "can", "day", "were", "there", "when", "up", "do", "out", "them", "then", "very",
    "big", "little", "happy", "play", "played", "wanted", "saw", "went", "friend", "friends", "mom", "dad", "time",
    "Once", "upon", "The", "He", "She", "They", "It", "One", "Lily", "Tim", "Ben", "Sue", "park", "tree", "dog",
    "cat", "ball", "toy", "loved", "asked", "smiled", "together", "sun", "sky", "bird", "fun", "sad", "help",
    "home", "good", "new", "old", "too", "just", "back", "over", "know", "thank", "yes", "no", "hello", "Hello",
    "an", "by", "or", "if", "will", "would", "could", "about", "into", "like", "him", "my", "your", "me", "are",
    "how", "who", "which", "their", "some", "more", "other", "make", "made", "see", "look", "go", "get", "come",
    "people", "way", "first", "been", "now", "did", "because", "after", "before", "again", "away", "found",
    "girl", "boy", "named", "name", "mother", "father", "house", "water", "every", "thing", "want", "think",
    "where", "why", "small", "great", "world", "looked", "ran", "jump", "tried", "felt", "learned", "lesson",
    "user", "assistant", "system", "answer", "question", "model", "cache", "token",
};

// Word pieces that are not word starts: frequent pairs and endings.
constexpr std::string_view kInner[] = {
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it",
    "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri",
    "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om", "ur", "ing", "ion", "ly",
    "ter", "ent", "ver", "ers", "ies", "ight", "ould", "ome",
};

constexpr std::string_view kChatMlTemplate =
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

class VocabBuilder {
 public:
  void Add(std::string piece, float score, int32_t type) {
    if (!seen_.insert(piece).second) return;
    vocab_.tokens.push_back(std::move(piece));
    vocab_.scores.push_back(score);
    vocab_.token_types.push_back(type);
  }
  // A normal piece; its score ranks it below every earlier one.
  void Piece(std::string piece) {
    const float score = -static_cast<float>(pieces_++);
    Add(std::move(piece), score, kNormal);
  }
  int32_t size() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  GenModelVocab& vocab() { return vocab_; }

 private:
  GenModelVocab vocab_;
  std::set<std::string, std::less<>> seen_;
  int pieces_ = 1;
};

GenModelVocab Build() {
  VocabBuilder b;
  b.Add("<unk>", 0.0f, kUnknown);
  b.Add("<s>", 0.0f, kControl);
  b.Add("</s>", 0.0f, kControl);
  for (int byte = 0; byte < 256; ++byte) b.Add(fmt::format("<0x{:02X}>", byte), 0.0f, kByte);

  // Every printable ASCII character stands as a piece of its own (a space is
  // the marker), so only other characters fall back to bytes.
  b.Piece(std::string(kSpace));
  for (char c = '!'; c <= '~'; ++c) b.Piece(std::string(1, c));
  // Each word and every prefix of it: SentencePiece merges adjacent pieces
  // whose concatenation is a piece, and the leftmost piece of a partly merged
  // word is always such a prefix, so every word here merges all the way.
  for (std::string_view word : kWords) {
    const std::string full = std::string(kSpace) + std::string(word);
    for (size_t len = kSpace.size() + 1; len <= full.size(); ++len) b.Piece(full.substr(0, len));
  }
  for (std::string_view inner : kInner) {
    for (size_t len = 2; len <= inner.size(); ++len) b.Piece(std::string(inner.substr(0, len)));
  }

  GenModelVocab& vocab = b.vocab();
  vocab.im_start_id = b.size();
  b.Add("<|im_start|>", 0.0f, kControl);
  vocab.im_end_id = b.size();
  b.Add("<|im_end|>", 0.0f, kControl);
  vocab.chat_template = std::string(kChatMlTemplate);
  return std::move(vocab);
}

}  // namespace

const GenModelVocab& GetGenModelVocab() {
  static const GenModelVocab vocab = Build();
  return vocab;
}

}  // namespace kvstack
