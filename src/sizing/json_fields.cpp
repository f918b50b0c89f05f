// Typed access to JSON fields without exceptions.
#include "sizing/json_fields.h"

#include <cmath>
#include <fstream>
#include <sstream>

namespace kvstack::sizing {

Result<nlohmann::json> ParseJsonObject(std::string_view text, std::string_view where) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return DataLoss(std::string(where) + ": not valid JSON");
  if (!j.is_object()) return DataLoss(std::string(where) + ": expected a JSON object at the top level");
  return j;
}

Result<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return DataLoss(path + ": read failed");
  return text.str();
}

const nlohmann::json* JsonFields::Find(std::string_view key) const {
  auto it = object_.find(std::string(key));
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonFields::Has(std::string_view key) const { return Find(key) != nullptr; }

void JsonFields::Fail(Status status) {
  if (status_.ok()) status_ = std::move(status);
}

void JsonFields::WrongType(std::string_view key, std::string_view want) {
  const nlohmann::json* v = Find(key);
  Fail(InvalidArgument(where_ + ": \"" + std::string(key) + "\" is " + (v ? v->dump() : "missing") +
                       ", expected " + std::string(want)));
}

std::optional<int64_t> JsonFields::OptionalInt(std::string_view key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::floor(d) == d && std::fabs(d) < 9.0e18) return static_cast<int64_t>(d);
  }
  WrongType(key, "an integer");
  return std::nullopt;
}

int64_t JsonFields::Int(std::string_view key) {
  if (!Has(key)) {
    Fail(InvalidArgument(where_ + ": missing \"" + std::string(key) + "\" (an integer)"));
    return 0;
  }
  return OptionalInt(key).value_or(0);
}

std::optional<double> JsonFields::OptionalNumber(std::string_view key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number()) return v->get<double>();
  WrongType(key, "a number");
  return std::nullopt;
}

double JsonFields::Number(std::string_view key) {
  if (!Has(key)) {
    Fail(InvalidArgument(where_ + ": missing \"" + std::string(key) + "\" (a number)"));
    return 0;
  }
  return OptionalNumber(key).value_or(0);
}

std::string JsonFields::String(std::string_view key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) {
    Fail(InvalidArgument(where_ + ": missing \"" + std::string(key) + "\" (a string)"));
    return {};
  }
  if (!v->is_string()) {
    WrongType(key, "a string");
    return {};
  }
  return v->get<std::string>();
}

std::string JsonFields::StringOr(std::string_view key, std::string fallback) {
  if (!Has(key)) return fallback;
  return String(key);
}

bool JsonFields::BoolOr(std::string_view key, bool fallback) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) {
    WrongType(key, "true or false");
    return fallback;
  }
  return v->get<bool>();
}

const nlohmann::json* JsonFields::OptionalObject(std::string_view key) {
  const nlohmann::json* v = Find(key);
  if (v != nullptr && !v->is_object()) {
    WrongType(key, "an object");
    return nullptr;
  }
  return v;
}

void JsonFields::RejectUnknownKeys(std::initializer_list<std::string_view> known) {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    bool found = false;
    for (std::string_view k : known) found = found || it.key() == k;
    if (!found) {
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      Fail(InvalidArgument(where_ + ": unknown key \"" + it.key() + "\"; known keys: " + list));
      return;
    }
  }
}

}  // namespace kvstack::sizing
