#include "kvstack/model_identity.h"

#include <algorithm>

#include <fmt/format.h>

namespace kvstack {

std::string ModelIdentity(const GgufFile& file, const LlamaHParams& h) {
  // FNV-1a over each tensor's name, type, size and a sample of its bytes
  // (files of equal shape but other weights differ).
  uint64_t digest = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) digest = (digest ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  for (const GgufTensorInfo& t : file.tensors()) {
    mix(t.name.data(), t.name.size());
    mix(&t.type, sizeof t.type);
    mix(&t.size_bytes, sizeof t.size_bytes);
    mix(t.data.data(), std::min<size_t>(t.data.size(), 64));
  }
  return fmt::format("{}-{}x{}-{:016x}", h.architecture, h.n_layer, h.n_embd, digest);
}

Result<std::string> ModelIdentityOf(const std::string& gguf_path) {
  auto file = GgufFile::Open(gguf_path);
  if (!file.ok()) return file.status();
  auto hp = ReadLlamaHParams(*file);
  if (!hp.ok()) return Status(hp.status().code(), gguf_path + ": " + hp.status().message());
  return ModelIdentity(*file, *hp);
}

}  // namespace kvstack
