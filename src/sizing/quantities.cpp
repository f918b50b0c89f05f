// Sizes, fractions and token counts as users type them, and as reports show them.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kvstack/sizing.h"

namespace kvstack::sizing {
namespace {

constexpr std::string_view kSizeForms = "a size like 4GiB, 4GB, 512MiB, 4G (= 4 GiB) or 1073741824B";

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits "4.5GiB" into 4.5 and "gib". Fails on anything but digits, one dot
// and a trailing unit.
bool SplitNumber(std::string_view text, double* value, std::string* unit) {
  size_t i = 0;
  bool digits = false;
  bool dot = false;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || (text[i] == '.' && !dot))) {
    dot = dot || text[i] == '.';
    digits = digits || text[i] != '.';
    ++i;
  }
  if (!digits) return false;
  *value = std::strtod(std::string(text.substr(0, i)).c_str(), nullptr);
  *unit = Lower(text.substr(i));
  return std::isfinite(*value);
}

// Bytes per unit; 0 when the unit is unknown.
double UnitBytes(const std::string& unit) {
  struct Unit {
    std::string_view names[3];
    double bytes;
  };
  static const Unit kUnits[] = {
      {{"b", "", ""}, 1},
      {{"k", "kib", "ki"}, 1024.0},
      {{"m", "mib", "mi"}, 1024.0 * 1024},
      {{"g", "gib", "gi"}, 1024.0 * 1024 * 1024},
      {{"t", "tib", "ti"}, 1024.0 * 1024 * 1024 * 1024},
      {{"kb", "", ""}, 1e3},
      {{"mb", "", ""}, 1e6},
      {{"gb", "", ""}, 1e9},
      {{"tb", "", ""}, 1e12},
  };
  for (const Unit& u : kUnits) {
    for (std::string_view name : u.names) {
      if (!name.empty() && name == unit) return u.bytes;
    }
  }
  return 0;
}

}  // namespace

int64_t WorkspaceReserve::BytesOn(int64_t hbm_bytes) const {
  if (is_bytes_) return bytes_;
  return static_cast<int64_t>(std::floor(static_cast<double>(hbm_bytes) * fraction_));
}

Result<int64_t> ParseByteSize(std::string_view text) {
  double value = 0;
  std::string unit;
  if (!SplitNumber(text, &value, &unit)) {
    return InvalidArgument("size \"" + std::string(text) + "\": expected " + std::string(kSizeForms));
  }
  // A bare number is a count of bytes.
  const double per_unit = unit.empty() ? 1 : UnitBytes(unit);
  if (per_unit == 0) {
    return InvalidArgument("size \"" + std::string(text) + "\": unknown unit \"" + unit + "\"; expected " +
                           std::string(kSizeForms));
  }
  const double bytes = std::round(value * per_unit);
  if (bytes > 4.0e18) return InvalidArgument("size \"" + std::string(text) + "\": too large");
  return static_cast<int64_t>(bytes);
}

Result<WorkspaceReserve> ParseWorkspace(std::string_view text) {
  const std::string forms = "a fraction of HBM below 1 like 0.1, a percentage like 10%, or " + std::string(kSizeForms);
  double value = 0;
  std::string unit;
  if (!SplitNumber(text, &value, &unit)) {
    return InvalidArgument("--workspace \"" + std::string(text) + "\": expected " + forms);
  }
  if (unit == "%") {
    if (value >= 100) return InvalidArgument("--workspace \"" + std::string(text) + "\": must be below 100%");
    return WorkspaceReserve::Fraction(value / 100);
  }
  if (unit.empty()) {
    // A bare 4 could mean 4 bytes or 400%: neither is what anyone wants.
    if (value >= 1) {
      return InvalidArgument("--workspace \"" + std::string(text) + "\": a bare number must be a fraction below 1; " +
                             "for a size add a unit (" + std::string(kSizeForms) + ")");
    }
    return WorkspaceReserve::Fraction(value);
  }
  auto bytes = ParseByteSize(text);
  if (!bytes.ok()) return InvalidArgument("--workspace \"" + std::string(text) + "\": expected " + forms);
  return WorkspaceReserve::Bytes(*bytes);
}

Result<int64_t> ParseTokenCount(std::string_view text) {
  const std::string bad = "token count \"" + std::string(text) + "\": expected a positive integer like 8192, 32k or 1M";
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 12) return InvalidArgument(bad);
  int64_t count = std::stoll(std::string(text.substr(0, i)));
  const std::string unit = Lower(text.substr(i));
  // "128k context" means 131072 tokens in every model card.
  if (unit == "k") count *= 1024;
  else if (unit == "m") count *= 1024 * 1024;
  else if (!unit.empty()) return InvalidArgument(bad);
  if (count <= 0) return InvalidArgument(bad);
  return count;
}

std::string FormatBytes(int64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  const char* sign = bytes < 0 ? "-" : "";
  double v = std::fabs(static_cast<double>(bytes));
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char out[64];
  if (u == 0) std::snprintf(out, sizeof out, "%s%.0f B", sign, v);
  else if (v < 10) std::snprintf(out, sizeof out, "%s%.2f %s", sign, v, kUnits[u]);
  else if (v < 100) std::snprintf(out, sizeof out, "%s%.1f %s", sign, v, kUnits[u]);
  else std::snprintf(out, sizeof out, "%s%.0f %s", sign, v, kUnits[u]);
  return out;
}

std::string FormatCount(int64_t count) {
  const std::string digits = std::to_string(count < 0 ? -count : count);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return count < 0 ? "-" + out : out;
}

}  // namespace kvstack::sizing
