// The acceptance cases: llama.cpp's own tokenizer test files (../shared/vocab)
// and llama-server's tokenizations of stories260K (../shared/golden). Skipped
// with a message when ../shared is absent.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvstack/gguf.h"
#include "kvstack/tokenizer.h"
#include "common/requirement.h"

namespace kvstack {
namespace {

using ::testing::ElementsAreArray;

std::filesystem::path SharedDir() { return std::filesystem::path(KVSTACK_SHARED_DIR); }

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct VocabCase {
  std::string text;
  std::vector<Token> ids;
};

// NAME.inp holds the texts, each followed by a line reading exactly
// "__ggml_vocab_test__"; NAME.out one line of space-separated ids per text.
std::vector<VocabCase> ReadCases(const std::filesystem::path& inp, const std::filesystem::path& out) {
  constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";
  const std::string texts = ReadFile(inp);
  std::vector<VocabCase> cases;
  for (size_t pos = 0; pos < texts.size();) {
    size_t end = texts.find(kSeparator, pos);
    if (end == std::string::npos) end = texts.size();
    cases.push_back({texts.substr(pos, end - pos), {}});
    pos = end + kSeparator.size();
  }
  std::istringstream lines(ReadFile(out));
  std::string line;
  for (VocabCase& c : cases) {
    if (!std::getline(lines, line)) break;
    std::istringstream ids(line);
    for (Token id; ids >> id;) c.ids.push_back(id);
  }
  return cases;
}

std::unique_ptr<Tokenizer> Open(const std::filesystem::path& path) {
  auto file = GgufFile::Open(path.string());
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) return nullptr;
  auto tokenizer = Tokenizer::FromGguf(*file);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  if (!tokenizer.ok()) return nullptr;
  return std::move(tokenizer).value();
}

// Every case tokenizes as llama.cpp did (no BOS, special-token text as plain
// text) and decodes back to its text.
void CheckVocabFile(const std::string& name, size_t expected_cases) {
  const auto gguf = SharedDir() / "vocab" / name;
  if (!std::filesystem::exists(gguf)) KVSTACK_SKIP_MISSING() << gguf << " not found: shared vocabulary files are absent";
  std::unique_ptr<Tokenizer> tokenizer = Open(gguf);
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<VocabCase> cases = ReadCases(gguf.string() + ".inp", gguf.string() + ".out");
  ASSERT_EQ(cases.size(), expected_cases);
  int encoded = 0;
  int decoded = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const VocabCase& c = cases[i];
    const std::vector<Token> ids =
        tokenizer->Encode(c.text, {.add_bos = false, .add_eos = false, .parse_special = false});
    EXPECT_THAT(ids, ElementsAreArray(c.ids)) << name << " case " << i << ": '" << c.text << "'";
    encoded += ids == c.ids;
    const std::string text = tokenizer->Decode(c.ids, {.skip_special = false, .strip_prefix_space = true});
    EXPECT_EQ(text, c.text) << name << " case " << i;
    decoded += text == c.text;
  }
  std::cout << name << ": " << encoded << "/" << cases.size() << " cases tokenize as llama.cpp, " << decoded << "/"
            << cases.size() << " decode back\n";
}

TEST(VocabFilesTest, LlamaSentencePiece) { CheckVocabFile("ggml-vocab-llama-spm.gguf", 46); }

TEST(VocabFilesTest, Gpt2BytePairEncoding) { CheckVocabFile("ggml-vocab-gpt-2.gguf", 46); }

// A golden piece is a string, or an array of byte values when it is not UTF-8.
std::string GoldenPiece(const nlohmann::json& piece) {
  if (piece.is_string()) return piece.get<std::string>();
  std::string bytes;
  for (const auto& b : piece) bytes.push_back(static_cast<char>(b.get<int>()));
  return bytes;
}

TEST(VocabFilesTest, Stories260KMatchesLlamaServer) {
  const auto model = SharedDir() / "models" / "stories260K.gguf";
  const auto golden_path = SharedDir() / "golden" / "stories260K_tokenize.json";
  if (!std::filesystem::exists(model) || !std::filesystem::exists(golden_path)) {
    KVSTACK_SKIP_MISSING() << model << " or " << golden_path << " not found: shared model files are absent";
  }
  std::unique_ptr<Tokenizer> tokenizer = Open(model);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  EXPECT_EQ(tokenizer->bos(), 1);
  EXPECT_EQ(tokenizer->eos(), 2);
  EXPECT_EQ(tokenizer->unk(), 0);
  EXPECT_TRUE(tokenizer->add_bos());
  EXPECT_FALSE(tokenizer->add_eos());
  EXPECT_TRUE(tokenizer->IsEog(2));
  EXPECT_FALSE(tokenizer->IsEog(1));  // stories260K emits BOS between stories; only EOS ends generation

  const nlohmann::json golden = nlohmann::json::parse(ReadFile(golden_path));
  int matched = 0;
  for (const auto& entry : golden.at("entries")) {
    const std::string text = entry.at("text").get<std::string>();
    const auto no_bos = entry.at("ids_no_bos").get<std::vector<Token>>();
    const auto with_bos = entry.at("ids_with_bos").get<std::vector<Token>>();
    // The server parses special-token text, so "<s>" is BOS.
    EXPECT_THAT(tokenizer->Encode(text, {.add_bos = false}), ElementsAreArray(no_bos)) << "'" << text << "'";
    EXPECT_THAT(tokenizer->Encode(text), ElementsAreArray(with_bos)) << "'" << text << "'";
    for (const auto& piece : entry.at("pieces_no_bos")) {
      EXPECT_EQ(tokenizer->Piece(piece.at("id").get<Token>()), GoldenPiece(piece.at("piece")));
    }
    EXPECT_EQ(tokenizer->Decode(with_bos, {.skip_special = true, .strip_prefix_space = true}),
              text == "<s>" ? "" : text);
    matched += tokenizer->Encode(text) == with_bos && tokenizer->Encode(text, {.add_bos = false}) == no_bos;
  }
  std::cout << "stories260K: " << matched << "/" << golden.at("entries").size() << " texts tokenize as llama-server\n";
}

// llama-server's /detokenize and completion text concatenate pieces as they
// are: the completion after "The little dog" starts with " was".
TEST(VocabFilesTest, Stories260KCompletionTextMatchesLlamaServer) {
  const auto model = SharedDir() / "models" / "stories260K.gguf";
  const auto golden_path = SharedDir() / "golden" / "stories260K_greedy.json";
  if (!std::filesystem::exists(model) || !std::filesystem::exists(golden_path)) {
    KVSTACK_SKIP_MISSING() << model << " or " << golden_path << " not found: shared model files are absent";
  }
  std::unique_ptr<Tokenizer> tokenizer = Open(model);
  ASSERT_NE(tokenizer, nullptr);
  const nlohmann::json golden = nlohmann::json::parse(ReadFile(golden_path));
  for (const auto& prompt : golden.at("prompts")) {
    const auto ids = prompt.at("completion_token_ids").get<std::vector<Token>>();
    EXPECT_EQ(tokenizer->Decode(ids), prompt.at("completion_text").get<std::string>());
    StreamDecoder stream(*tokenizer);
    std::string streamed;
    for (Token id : ids) streamed += stream.Push(id);
    streamed += stream.Flush();
    EXPECT_EQ(streamed, prompt.at("detokenized_completion_ids").get<std::string>());
    EXPECT_THAT(tokenizer->Encode(prompt.at("prompt").get<std::string>()),
                ElementsAreArray(prompt.at("prompt_token_ids_with_bos").get<std::vector<Token>>()));
  }
}

}  // namespace
}  // namespace kvstack
