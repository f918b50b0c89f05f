// The bundled presets: one JSON file per model and per GPU.
#include <algorithm>
#include <cctype>
#include <string>
#include <system_error>

#include "kvstack/sizing.h"

namespace kvstack::sizing {
namespace {

bool SameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// The *.json files of a folder, sorted so that load errors are reproducible.
Result<std::vector<std::filesystem::path>> JsonFiles(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return NotFound("preset folder " + dir.string() + " does not exist (pass --preset-dir)");
  }
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  if (ec) return Unavailable("preset folder " + dir.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

template <typename Spec>
Result<Spec> Find(const std::vector<Spec>& specs, std::string_view name, std::string_view kind,
                  const std::filesystem::path& dir) {
  for (const Spec& s : specs) {
    if (SameName(s.name, name)) return s;
  }
  std::string names;
  for (const Spec& s : specs) names += (names.empty() ? "" : ", ") + s.name;
  return NotFound("unknown " + std::string(kind) + " preset \"" + std::string(name) + "\"; available in " +
                  dir.string() + ": " + names);
}

template <typename Spec>
Status CheckUnique(const std::vector<Spec>& specs, std::string_view kind) {
  for (size_t i = 1; i < specs.size(); ++i) {
    if (SameName(specs[i - 1].name, specs[i].name)) {
      return AlreadyExists(std::string(kind) + " preset name \"" + specs[i].name + "\" appears in two files");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<PresetCatalog> PresetCatalog::Load(const std::filesystem::path& dir) {
  PresetCatalog catalog;
  catalog.dir_ = dir;
  auto model_files = JsonFiles(dir / "models");
  if (!model_files.ok()) return model_files.status();
  for (const auto& file : *model_files) {
    auto model = LoadModelPreset(file);
    if (!model.ok()) return model.status();
    catalog.models_.push_back(std::move(model).value());
  }
  auto gpu_files = JsonFiles(dir / "gpus");
  if (!gpu_files.ok()) return gpu_files.status();
  for (const auto& file : *gpu_files) {
    auto gpu = LoadGpuPreset(file);
    if (!gpu.ok()) return gpu.status();
    catalog.gpus_.push_back(std::move(gpu).value());
  }
  auto by_name = [](const auto& a, const auto& b) { return a.name < b.name; };
  std::sort(catalog.models_.begin(), catalog.models_.end(), by_name);
  std::sort(catalog.gpus_.begin(), catalog.gpus_.end(), by_name);
  KVSTACK_RETURN_IF_ERROR(CheckUnique(catalog.models_, "model"));
  KVSTACK_RETURN_IF_ERROR(CheckUnique(catalog.gpus_, "gpu"));
  return catalog;
}

Result<ModelSpec> PresetCatalog::FindModel(std::string_view name) const {
  return Find(models_, name, "model", dir_);
}

Result<GpuSpec> PresetCatalog::FindGpu(std::string_view name) const { return Find(gpus_, name, "gpu", dir_); }

}  // namespace kvstack::sizing
