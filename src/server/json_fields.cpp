#include "server/json_fields.h"

#include <fmt/format.h>

namespace kvstack::server {

bool FieldReader::Has(std::string_view key) const {
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

OptError FieldReader::Number(std::string_view key, double* out) const {
  if (!Has(key)) return std::nullopt;
  const nlohmann::json& v = Get(key);
  if (!v.is_number()) return BadRequest(Name(key) + " must be a number", Name(key));
  *out = v.get<double>();
  return std::nullopt;
}

OptError FieldReader::Float(std::string_view key, float* out) const {
  double d = *out;
  if (OptError e = Number(key, &d)) return e;
  *out = static_cast<float>(d);
  return std::nullopt;
}

OptError FieldReader::Integer(std::string_view key, int64_t* out) const {
  if (!Has(key)) return std::nullopt;
  const nlohmann::json& v = Get(key);
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return BadRequest(fmt::format("{} {}: too large", Name(key), v.get<uint64_t>()), Name(key));
    }
    *out = static_cast<int64_t>(v.get<uint64_t>());
    return std::nullopt;
  }
  if (!v.is_number_integer()) return BadRequest(Name(key) + " must be an integer", Name(key));
  *out = v.get<int64_t>();
  return std::nullopt;
}

OptError FieldReader::IntegerIn(std::string_view key, int64_t lo, int64_t hi, int64_t* out) const {
  int64_t v = *out;
  if (OptError e = Integer(key, &v)) return e;
  if (Has(key) && (v < lo || v > hi)) {
    return BadRequest(fmt::format("{} {}: must be from {} to {}", Name(key), v, lo, hi), Name(key));
  }
  *out = v;
  return std::nullopt;
}

OptError FieldReader::Bool(std::string_view key, bool* out) const {
  if (!Has(key)) return std::nullopt;
  const nlohmann::json& v = Get(key);
  if (!v.is_boolean()) return BadRequest(Name(key) + " must be a boolean", Name(key));
  *out = v.get<bool>();
  return std::nullopt;
}

OptError FieldReader::String(std::string_view key, std::string* out) const {
  if (!Has(key)) return std::nullopt;
  const nlohmann::json& v = Get(key);
  if (!v.is_string()) return BadRequest(Name(key) + " must be a string", Name(key));
  *out = v.get<std::string>();
  return std::nullopt;
}

}  // namespace kvstack::server
