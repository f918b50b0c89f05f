#include "engine/model_fixtures.h"

#include <filesystem>
#include <map>
#include <unistd.h>

#include "kvstack/model_gen.h"

namespace kvstack::engine {
namespace {

// Generated shapes: grouped-query attention with tied embeddings; qwen2 with
// q/k/v biases and NeoX RoPE; multi-query attention with an explicit head
// dimension wider than n_embd / n_head and Llama-3 RoPE scaling.
const std::map<std::string, GenModelSpec>& GeneratedSpecs() {
  static const auto* specs = new std::map<std::string, GenModelSpec>{
      {"gen-llama-gqa", GenModelSpec{.n_layer = 2, .n_embd = 64, .n_head = 8, .n_head_kv = 2, .n_ff = 96,
                                     .tied_embeddings = true, .seed = 11}},
      {"gen-qwen2-bias", GenModelSpec{.architecture = "qwen2", .n_layer = 2, .n_embd = 96, .n_head = 6, .n_head_kv = 3,
                                      .n_ff = 160, .rope_freq_base = 1e6f, .seed = 12}},
      {"gen-llama-mqa-rope3", GenModelSpec{.n_layer = 3, .n_embd = 64, .n_head = 4, .n_head_kv = 1, .head_dim = 32,
                                           .n_ff = 128, .rope_freq_base = 500000.0f,
                                           .rope_scaling = Llama3RopeScaling{}, .seed = 13}},
  };
  return *specs;
}

}  // namespace

std::vector<std::string> FixtureNames() {
  std::vector<std::string> names = {"stories260K", "tinyq-a-f32"};
  for (const auto& [name, spec] : GeneratedSpecs()) names.push_back(name);
  return names;
}

bool IsGeneratedFixture(const std::string& name) { return GeneratedSpecs().count(name) > 0; }

Result<std::unique_ptr<LlamaModel>> LoadFixture(const std::string& name) {
  auto gen = GeneratedSpecs().find(name);
  if (gen != GeneratedSpecs().end()) {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("kvstack-fixtures-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / (name + ".gguf")).string();
    KVSTACK_RETURN_IF_ERROR(WriteGenModel(gen->second, path));
    auto model = LlamaModel::Load(path);
    // The mapping keeps the bytes alive; the test leaves nothing behind.
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return model;
  }
  const std::string path = std::string(KVSTACK_SHARED_DIR) + "/models/" + name + ".gguf";
  if (!std::filesystem::exists(path)) return NotFound(path + " is absent (../shared not available): skipping");
  return LlamaModel::Load(path);
}

}  // namespace kvstack::engine
