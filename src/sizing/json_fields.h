// Typed, non-throwing access to the fields of a JSON object, for the preset
// and config.json readers. The first problem found is kept; later reads return
// fallbacks, so a reader reads every field and checks status() once.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kvstack/status.h"

namespace kvstack::sizing {

// Parses `text` without exceptions. On failure: kDataLoss naming `where`.
Result<nlohmann::json> ParseJsonObject(std::string_view text, std::string_view where);
// Reads a whole file. On failure: kNotFound naming the path.
Result<std::string> ReadTextFile(const std::string& path);

class JsonFields {
 public:
  // REQUIRES: `object` outlives this and is a JSON object.
  JsonFields(const nlohmann::json& object, std::string where) : object_(object), where_(std::move(where)) {}

  // A missing key (or null) is an error for the required getters and the
  // fallback for the others. Integers written as 4096.0 are accepted.
  int64_t Int(std::string_view key);
  std::optional<int64_t> OptionalInt(std::string_view key);
  int64_t IntOr(std::string_view key, int64_t fallback) { return OptionalInt(key).value_or(fallback); }
  double Number(std::string_view key);
  std::optional<double> OptionalNumber(std::string_view key);
  std::string String(std::string_view key);
  std::string StringOr(std::string_view key, std::string fallback);
  bool BoolOr(std::string_view key, bool fallback);
  // The sub-object at `key`, or nullptr when absent (an error when not an object).
  const nlohmann::json* OptionalObject(std::string_view key);
  bool Has(std::string_view key) const;

  // Records an error for the first key of the object not in `known`.
  void RejectUnknownKeys(std::initializer_list<std::string_view> known);
  // Records `status` unless an earlier problem was recorded.
  void Fail(Status status);

  const Status& status() const { return status_; }
  const std::string& where() const { return where_; }

 private:
  const nlohmann::json* Find(std::string_view key) const;
  void WrongType(std::string_view key, std::string_view want);

  const nlohmann::json& object_;
  std::string where_;
  Status status_;
};

}  // namespace kvstack::sizing
