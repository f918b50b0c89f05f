// The preset file format of ModelSpec and GpuSpec, shared by the preset
// loaders, the catalog and the JSON report.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "kvstack/sizing.h"

namespace kvstack::sizing {

// `where` names the file in error messages. Missing parameter counts are
// estimated from the shape. The result is validated.
Result<ModelSpec> ModelSpecFromPresetJson(const nlohmann::json& object, std::string_view where);
Result<GpuSpec> GpuSpecFromPresetJson(const nlohmann::json& object, std::string_view where);

nlohmann::json ModelSpecAsJson(const ModelSpec& model);
nlohmann::json GpuSpecAsJson(const GpuSpec& gpu);

}  // namespace kvstack::sizing
