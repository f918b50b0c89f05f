// Turning what a user typed for --model / --gpu into a spec: a preset name or
// a file (preset JSON, Hugging Face config.json, GGUF).
#include <string>
#include <system_error>

#include "kvstack/sizing.h"
#include "sizing/json_fields.h"
#include "sizing/spec_json.h"

namespace kvstack::sizing {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool LooksLikePath(std::string_view text) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(text), ec) || text.find('/') != std::string_view::npos ||
         EndsWith(text, ".json") || EndsWith(text, ".gguf");
}

// A Hugging Face snapshot names the model by its folder.
std::string NameFromPath(const std::filesystem::path& file) {
  if (file.filename() == "config.json" && file.has_parent_path()) {
    const std::string parent = file.parent_path().filename().string();
    if (!parent.empty() && parent != ".") return parent;
  }
  return file.stem().string();
}

Result<ModelSpec> LoadModelFile(std::filesystem::path file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) file /= "config.json";
  if (!std::filesystem::exists(file, ec)) {
    return NotFound("model file " + file.string() +
                    " does not exist (give a preset name, a preset .json, a config.json or a .gguf)");
  }
  if (file.extension() == ".gguf") return LoadGgufModel(file);
  auto text = ReadTextFile(file.string());
  if (!text.ok()) return text.status();
  auto object = ParseJsonObject(*text, file.string());
  if (!object.ok()) return object.status();
  // kvstack presets say "layers"; Hugging Face configs "num_hidden_layers".
  if (object->contains("layers")) return ModelSpecFromPresetJson(*object, file.string());
  auto model = ModelSpecFromHfConfig(*text, NameFromPath(file));
  if (model.ok()) model->source = file.string();
  return model;
}

}  // namespace

Result<ModelSpec> ResolveModel(const PresetCatalog& catalog, std::string_view name_or_path) {
  if (name_or_path.empty()) return InvalidArgument("--model is empty: give a preset name or a file path");
  if (LooksLikePath(name_or_path)) return LoadModelFile(std::filesystem::path(name_or_path));
  return catalog.FindModel(name_or_path);
}

Result<GpuSpec> ResolveGpu(const PresetCatalog& catalog, std::string_view name_or_path) {
  if (name_or_path.empty()) return InvalidArgument("--gpu is empty: give a preset name or a file path");
  if (LooksLikePath(name_or_path)) return LoadGpuPreset(std::filesystem::path(name_or_path));
  return catalog.FindGpu(name_or_path);
}

}  // namespace kvstack::sizing
