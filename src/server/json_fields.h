// FieldReader: typed reads of a request's JSON object, failing with an
// OpenAI-style 400 that names the field ("temperature must be a number").
//
// A field that is absent or null leaves the output as it was: every field of
// OpenAI's API is optional and null means "the default". Nested objects read
// through a reader whose prefix makes names like "retention.ranges[0].end".
// Thread safety: a reader only reads the object it was given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace kvstack::server {

using OptError = std::optional<ApiError>;

class FieldReader {
 public:
  // REQUIRES: object.is_object(); it outlives the reader.
  explicit FieldReader(const nlohmann::json& object, std::string prefix = "")
      : object_(object), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool Has(std::string_view key) const;
  // REQUIRES: Has(key).
  const nlohmann::json& Get(std::string_view key) const { return object_.at(std::string(key)); }
  // The name an error uses: prefix + key.
  std::string Name(std::string_view key) const { return prefix_ + std::string(key); }

  OptError Number(std::string_view key, double* out) const;
  OptError Float(std::string_view key, float* out) const;
  // Integers only (a JSON number with a fraction is refused).
  OptError Integer(std::string_view key, int64_t* out) const;
  // An integer in [lo, hi]: "priority 120: must be from 0 to 100".
  OptError IntegerIn(std::string_view key, int64_t lo, int64_t hi, int64_t* out) const;
  OptError Bool(std::string_view key, bool* out) const;
  OptError String(std::string_view key, std::string* out) const;

 private:
  const nlohmann::json& object_;
  std::string prefix_;
};

}  // namespace kvstack::server
