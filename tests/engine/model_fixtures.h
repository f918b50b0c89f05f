// Models the engine tests run on: the real stories260K and the tiny random
// llama from ../shared (skipped with a message when absent), and generated
// models of several shapes (grouped-query attention, qwen2 biases, tied and
// untied embeddings) written on first use into the test's temp folder.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/llama_model.h"

namespace kvstack::engine {

std::vector<std::string> FixtureNames();
// True for the models written by the test itself (never absent: a failure to
// load one is a bug, not a reason to skip).
bool IsGeneratedFixture(const std::string& name);
// NotFound (a reason to skip) when the fixture's file is not available.
Result<std::unique_ptr<LlamaModel>> LoadFixture(const std::string& name);

}  // namespace kvstack::engine
