// libFuzzer target for the GGUF reader: any byte string must parse or fail
// cleanly, and everything a successful parse hands out must be readable.
// Run through scripts/fuzz-gguf.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "kvstack/gguf.h"

namespace {

// Reads every byte through a volatile sink so that AddressSanitizer checks
// the whole range and the compiler cannot drop the loop.
void Touch(std::span<const std::byte> bytes) {
  volatile uint8_t sink = 0;
  for (std::byte b : bytes) sink = static_cast<uint8_t>(sink ^ static_cast<uint8_t>(b));
  (void)sink;
}

void Touch(std::string_view text) { Touch(std::as_bytes(std::span(text.data(), text.size()))); }

// Every getter on every key: conversions must fail cleanly on the wrong type.
void ExerciseGetters(const kvstack::GgufFile& file, const std::string& key) {
  file.GetUint32(key).status().IgnoreError();
  file.GetUint64(key).status().IgnoreError();
  file.GetFloat32(key).status().IgnoreError();
  file.GetBool(key).status().IgnoreError();
  if (auto s = file.GetString(key); s.ok()) Touch(*s);
  if (auto a = file.GetStringArray(key); a.ok()) {
    for (const std::string& s : *a) Touch(s);
  }
  if (auto a = file.GetFloat32Array(key); a.ok()) Touch(std::as_bytes(*a));
  if (auto a = file.GetInt32Array(key); a.ok()) Touch(std::as_bytes(*a));
  if (auto v = file.Find(key); v.ok()) {
    Touch((*v)->TypeName());
    (*v)->AsInt64().status().IgnoreError();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = kvstack::GgufFile::Parse(std::as_bytes(std::span(data, size)));
  if (!file.ok()) {
    Touch(file.status().message());
    return 0;
  }
  for (const kvstack::GgufKeyValue& kv : file->metadata()) ExerciseGetters(*file, kv.key);
  for (const kvstack::GgufTensorInfo& t : file->tensors()) {
    Touch(t.data);
    if (!file->FindTensor(t.name).ok()) __builtin_trap();  // every listed tensor must be found by name
  }
  if (auto hp = kvstack::ReadLlamaHParams(*file); !hp.ok()) Touch(hp.status().message());
  if (auto tok = kvstack::ReadTokenizerMetadata(*file); tok.ok()) {
    for (const std::string& s : tok->tokens) Touch(s);
    Touch(std::as_bytes(tok->scores));
    Touch(std::as_bytes(tok->token_types));
  }
  return 0;
}
