// A model's identity for prefix-cache keys: the architecture and shape plus a
// digest of every tensor's name, type, size and first bytes, enough to keep
// two different models' cached KV apart. The engine puts it in the root of
// every block key; a router computes it from the same GGUF to key requests
// exactly as the workers do, and to refuse workers that serve another model.
//
// Thread safety: pure.
#pragma once

#include <string>

#include "kvstack/gguf.h"

namespace kvstack {

// "llama-5x64-0123456789abcdef" (architecture-layers x embedding-digest).
std::string ModelIdentity(const GgufFile& file, const LlamaHParams& hparams);

// Opens the file and reads its hyperparameters first; the loader's errors.
Result<std::string> ModelIdentityOf(const std::string& gguf_path);

}  // namespace kvstack
