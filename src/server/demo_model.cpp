#include "server/demo_model.h"

#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "kvstack/model_gen.h"
#include "kvstack/server.h"

namespace kvstack {

std::string DefaultModelCacheDir(const char* xdg_cache_home, const char* home) {
  if (xdg_cache_home && *xdg_cache_home) return (std::filesystem::path(xdg_cache_home) / "kvstack").string();
  if (home && *home) return (std::filesystem::path(home) / ".cache" / "kvstack").string();
  return ".kvstack-cache";
}

namespace server {

Result<std::string> EnsureDemoModel(const std::string& cache_dir, const Log& log) {
  auto spec = GenModelPreset("stories");
  if (!spec.ok()) return spec.status();
  spec->weight_type = GgmlType::kF16;  // half the file of F32; the kernels read it as fast
  spec->seed = 0;
  spec->name = kDemoModelName;
  const std::filesystem::path path = std::filesystem::path(cache_dir) / "kvstack-demo-stories-f16.gguf";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::filesystem::create_directories(cache_dir, ec);
    if (ec) {
      return Unavailable(fmt::format("--model-cache-dir {}: cannot create it: {}; pass --model PATH or another "
                                     "--model-cache-dir",
                                     cache_dir, ec.message()));
    }
    log(fmt::format("no --model given: generating the demo model into {} (once; later starts reuse it)",
                    path.string()));
    Status written = WriteGenModel(*spec, path.string());
    if (!written.ok()) return written;
  }
  log(fmt::format("serving the DEMO model {}: the 'stories' shape with RANDOM weights, so its text is gibberish. "
                  "Pass --model PATH to serve a real GGUF model.",
                  path.string()));
  return path.string();
}

}  // namespace server
}  // namespace kvstack
