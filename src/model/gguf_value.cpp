// GgufValue: type names and typed conversions of metadata values.
#include <cmath>
#include <limits>
#include <type_traits>

#include <fmt/format.h>

#include "kvstack/gguf.h"

namespace kvstack {
namespace {

// Storage alternatives 0..11 are the scalars in GgufValueType order with
// kArray (9) skipped; 12..23 are arrays of the same element types.
constexpr size_t kScalarAlternatives = 12;

GgufValueType TypeOfAlternative(size_t scalar_index) {
  const size_t raw = scalar_index < 9 ? scalar_index : scalar_index + 1;
  return static_cast<GgufValueType>(raw);
}

template <typename T>
constexpr bool kIsInteger = std::is_integral_v<T> && !std::is_same_v<T, bool>;

Status WrongType(std::string_view expected, const GgufValue& value) {
  return InvalidArgument(fmt::format("expected {}, found {}", expected, value.TypeName()));
}

}  // namespace

GgufValueType GgufValue::type() const {
  return is_array() ? GgufValueType::kArray : TypeOfAlternative(storage_.index());
}

bool GgufValue::is_array() const { return storage_.index() >= kScalarAlternatives; }

GgufValueType GgufValue::element_type() const {
  return TypeOfAlternative(storage_.index() - kScalarAlternatives);
}

uint64_t GgufValue::array_size() const {
  return std::visit(
      [](const auto& v) -> uint64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (requires { v.size(); } && !std::is_same_v<T, std::string>) {
          return v.size();
        } else {
          return 0;
        }
      },
      storage_);
}

std::string GgufValue::TypeName() const {
  if (!is_array()) return std::string(GgufValueTypeName(type()));
  return fmt::format("array of {} {}", array_size(), GgufValueTypeName(element_type()));
}

Result<uint64_t> GgufValue::AsUint64() const {
  return std::visit(
      [this](const auto& v) -> Result<uint64_t> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (kIsInteger<T>) {
          if constexpr (std::is_signed_v<T>) {
            if (v < 0) return InvalidArgument(fmt::format("expected an unsigned integer, found {} {}", TypeName(), v));
          }
          return static_cast<uint64_t>(v);
        } else {
          return WrongType("an unsigned integer", *this);
        }
      },
      storage_);
}

Result<uint32_t> GgufValue::AsUint32() const {
  auto wide = AsUint64();
  if (!wide.ok()) return wide.status();
  if (*wide > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument(fmt::format("{} {} does not fit in uint32", TypeName(), *wide));
  }
  return static_cast<uint32_t>(*wide);
}

Result<int64_t> GgufValue::AsInt64() const {
  return std::visit(
      [this](const auto& v) -> Result<int64_t> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (kIsInteger<T>) {
          if constexpr (std::is_same_v<T, uint64_t>) {
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
              return InvalidArgument(fmt::format("uint64 {} does not fit in int64", v));
            }
          }
          return static_cast<int64_t>(v);
        } else {
          return WrongType("an integer", *this);
        }
      },
      storage_);
}

Result<float> GgufValue::AsFloat32() const {
  if (const auto* f = std::get_if<float>(&storage_)) return *f;
  if (const auto* d = std::get_if<double>(&storage_)) {
    if (std::isfinite(*d) && std::fabs(*d) > std::numeric_limits<float>::max()) {
      return InvalidArgument(fmt::format("float64 {} does not fit in float32", *d));
    }
    return static_cast<float>(*d);
  }
  return WrongType("float32", *this);
}

Result<bool> GgufValue::AsBool() const {
  if (const auto* b = std::get_if<bool>(&storage_)) return *b;
  return WrongType("bool", *this);
}

Result<std::string_view> GgufValue::AsString() const {
  if (const auto* s = std::get_if<std::string>(&storage_)) return std::string_view(*s);
  return WrongType("string", *this);
}

Result<std::span<const std::string>> GgufValue::AsStringArray() const {
  if (const auto* a = std::get_if<std::vector<std::string>>(&storage_)) return std::span<const std::string>(*a);
  return WrongType("array of string", *this);
}

Result<std::span<const float>> GgufValue::AsFloat32Array() const {
  if (const auto* a = std::get_if<std::vector<float>>(&storage_)) return std::span<const float>(*a);
  return WrongType("array of float32", *this);
}

Result<std::span<const int32_t>> GgufValue::AsInt32Array() const {
  if (const auto* a = std::get_if<std::vector<int32_t>>(&storage_)) return std::span<const int32_t>(*a);
  return WrongType("array of int32", *this);
}

}  // namespace kvstack
