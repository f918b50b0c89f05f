// Trace readers: Mooncake JSONL, Azure CSV and kvstack JSONL.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvstack/trace.h"

namespace kvstack::sim {
namespace {

using nlohmann::json;

Status LineError(const std::filesystem::path& file, int64_t line, std::string_view what) {
  return InvalidArgument(fmt::format("{}:{}: {}", file.string(), line, what));
}

// A non-negative integer field no larger than INT32_MAX.
Result<int32_t> LengthField(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgument(fmt::format("missing \"{}\"", key));
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX) {
    return InvalidArgument(fmt::format("\"{}\" must be an integer from 0 to {}, got {}", key, INT32_MAX, it->dump()));
  }
  return static_cast<int32_t>(it->get<int64_t>());
}

Result<Micros> TimeFieldMs(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgument(fmt::format("missing \"{}\"", key));
  if (!it->is_number() || it->get<double>() < 0 || !std::isfinite(it->get<double>())) {
    return InvalidArgument(fmt::format("\"{}\" must be a non-negative number of milliseconds, got {}", key, it->dump()));
  }
  return static_cast<Micros>(std::llround(it->get<double>() * 1000.0));
}

Status ReadIds(const json& j, const char* key, std::vector<uint64_t>* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Ok();
  if (!it->is_array()) return InvalidArgument(fmt::format("\"{}\" must be an array of non-negative integers", key));
  out->reserve(it->size());
  for (const json& v : *it) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
      return InvalidArgument(fmt::format("\"{}\" holds {}: ids must be non-negative integers", key, v.dump()));
    }
    out->push_back(v.get<uint64_t>());
  }
  return Status::Ok();
}

Status CheckBlockCount(const TraceRequest& r, int32_t block_tokens) {
  if (r.block_ids.empty()) return Status::Ok();
  const int64_t need = (int64_t{r.input_tokens} + block_tokens - 1) / block_tokens;
  if (static_cast<int64_t>(r.block_ids.size()) < need) {
    return InvalidArgument(fmt::format("{} block ids cover {} tokens, fewer than input_length {} ({} tokens a block)",
                                       r.block_ids.size(), r.block_ids.size() * block_tokens, r.input_tokens,
                                       block_tokens));
  }
  return Status::Ok();
}

// The fields both JSONL formats share: the arrival (in ms, under
// `time_field`), input_length and output_length.
Result<TraceRequest> ParseTimedLengths(const json& j, const char* time_field) {
  TraceRequest r;
  auto t = TimeFieldMs(j, time_field);
  if (!t.ok()) return t.status();
  r.arrival_us = *t;
  auto in = LengthField(j, "input_length");
  if (!in.ok()) return in.status();
  auto out = LengthField(j, "output_length");
  if (!out.ok()) return out.status();
  r.input_tokens = *in;
  r.output_tokens = *out;
  return r;
}

Result<TraceRequest> ParseMooncake(const json& j) {
  auto parsed = ParseTimedLengths(j, "timestamp");
  if (!parsed.ok()) return parsed.status();
  TraceRequest r = std::move(parsed).value();
  if (!j.contains("hash_ids")) return InvalidArgument("missing \"hash_ids\"");
  KVSTACK_RETURN_IF_ERROR(ReadIds(j, "hash_ids", &r.block_ids));
  return r;
}

Result<TraceRequest> ParseKvstack(const json& j, Trace* trace) {
  auto parsed = ParseTimedLengths(j, "t_ms");
  if (!parsed.ok()) return parsed.status();
  TraceRequest r = std::move(parsed).value();
  if (auto it = j.find("tenant"); it != j.end()) {
    if (!it->is_string()) return InvalidArgument("\"tenant\" must be a string");
    r.tenant = trace->InternTenant(it->get_ref<const std::string&>());
  }
  if (auto it = j.find("session"); it != j.end()) {
    if (!it->is_string()) return InvalidArgument("\"session\" must be a string");
    r.session = trace->InternSession(it->get_ref<const std::string&>());
  }
  if (auto it = j.find("priority"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > kMaxPriority) {
      return InvalidArgument(fmt::format("\"priority\" must be an integer from 0 to 100, got {}", it->dump()));
    }
    r.request_priority = static_cast<Priority>(it->get<int64_t>());
  }
  if (auto it = j.find("tokens"); it != j.end()) {
    if (!it->is_array()) return InvalidArgument("\"tokens\" must be an array of token ids");
    r.tokens.reserve(it->size());
    for (const json& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
        return InvalidArgument(fmt::format("\"tokens\" holds {}: token ids are integers from 0 to {}", v.dump(), INT32_MAX));
      }
      r.tokens.push_back(static_cast<Token>(v.get<int64_t>()));
    }
    if (static_cast<int64_t>(r.tokens.size()) != r.input_tokens) {
      return InvalidArgument(fmt::format("{} tokens but input_length {}", r.tokens.size(), r.input_tokens));
    }
  }
  KVSTACK_RETURN_IF_ERROR(ReadIds(j, "block_ids", &r.block_ids));
  if (auto it = j.find("block_tokens"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > (1 << 20)) {
      return InvalidArgument(fmt::format("\"block_tokens\" must be an integer from 1 to 1048576, got {}", it->dump()));
    }
    const int32_t bt = static_cast<int32_t>(it->get<int64_t>());
    if (!trace->requests.empty() && bt != trace->block_tokens) {
      return InvalidArgument(fmt::format("\"block_tokens\" {} differs from earlier lines' {}", bt, trace->block_tokens));
    }
    trace->block_tokens = bt;
  }
  if (j.contains("measured_ttft_ms")) {
    auto ttft = TimeFieldMs(j, "measured_ttft_ms");
    if (!ttft.ok()) return ttft.status();
    r.measured_ttft_us = *ttft;
  }
  if (j.contains("measured_cached_tokens")) {
    auto cached = LengthField(j, "measured_cached_tokens");
    if (!cached.ok()) return cached.status();
    if (*cached > r.input_tokens) {
      return InvalidArgument(fmt::format("\"measured_cached_tokens\" {} exceeds input_length {}", *cached,
                                         r.input_tokens));
    }
    r.measured_cached_tokens = *cached;
  }
  if (auto it = j.find("ranges"); it != j.end()) {
    if (!it->is_array()) return InvalidArgument("\"ranges\" must be an array of {start, end, priority}");
    for (const json& v : *it) {
      if (!v.is_object()) return InvalidArgument("\"ranges\" entries must be objects {start, end, priority}");
      TracePriorityRange range;
      auto s = LengthField(v, "start");
      if (!s.ok()) return InvalidArgument("ranges: " + s.status().message());
      auto e = LengthField(v, "end");
      if (!e.ok()) return InvalidArgument("ranges: " + e.status().message());
      auto p = LengthField(v, "priority");
      if (!p.ok()) return InvalidArgument("ranges: " + p.status().message());
      if (*s > *e || *e > r.input_tokens || *p > kMaxPriority) {
        return InvalidArgument(fmt::format("ranges: [{}, {}) priority {} must lie within the {} prompt tokens, "
                                           "priority 0-100", *s, *e, *p, r.input_tokens));
      }
      range.begin = *s;
      range.end = *e;
      range.priority = static_cast<Priority>(*p);
      r.ranges.push_back(range);
    }
    if (!r.ranges.empty()) trace->has_priorities = true;
  }
  return r;
}

// "2023-11-16 18:17:03.9799600" -> microseconds since 1970-01-01 (UTC or
// not: only differences matter). Whole calendar dates, so a trace may cross
// a month or a year; a date that does not exist (2023-02-29) is an error.
Result<Micros> ParseAzureTime(std::string_view s) {
  int y, mo, d, h, mi;
  double sec;
  std::string copy(s);
  if (std::sscanf(copy.c_str(), "%d-%d-%d %d:%d:%lf", &y, &mo, &d, &h, &mi, &sec) != 6) {
    return InvalidArgument(fmt::format("TIMESTAMP \"{}\": expected YYYY-MM-DD HH:MM:SS.fraction", s));
  }
  // Out-of-range fields would make arrival times overflow (found by
  // fuzz/trace_fuzz.cpp: seconds of 28 digits).
  if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
      !(sec >= 0 && sec < 61)) {
    return InvalidArgument(fmt::format("TIMESTAMP \"{}\": a field is out of range", s));
  }
  const std::chrono::year_month_day date{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mo)},
                                         std::chrono::day{static_cast<unsigned>(d)}};
  if (!date.ok()) return InvalidArgument(fmt::format("TIMESTAMP \"{}\": no such date", s));
  const double days = static_cast<double>(std::chrono::sys_days{date}.time_since_epoch().count());
  const double total = ((days * 24.0 + h) * 60.0 + mi) * 60.0 + sec;
  return static_cast<Micros>(std::llround(total * 1e6));
}

Result<int32_t> ParseCount(std::string_view field, const char* name) {
  int64_t v = 0;
  while (!field.empty() && (field.back() == '\r' || field.back() == ' ')) field.remove_suffix(1);
  const auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
  if (ec != std::errc() || p != field.data() + field.size() || v < 0 || v > INT32_MAX) {
    return InvalidArgument(fmt::format("{} \"{}\": expected a non-negative integer", name, field));
  }
  return static_cast<int32_t>(v);
}

Result<Trace> ReadAzure(const std::filesystem::path& file, std::ifstream& in) {
  Trace trace;
  trace.source = file.string();
  std::string line;
  int64_t number = 0;
  Micros first = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line == "\r") continue;
    if (number == 1 && line.rfind("TIMESTAMP", 0) == 0) continue;
    const size_t c1 = line.find(',');
    const size_t c2 = c1 == std::string::npos ? c1 : line.find(',', c1 + 1);
    if (c2 == std::string::npos) {
      return LineError(file, number, "expected TIMESTAMP,ContextTokens,GeneratedTokens");
    }
    auto t = ParseAzureTime(std::string_view(line).substr(0, c1));
    if (!t.ok()) return LineError(file, number, t.status().message());
    auto in_tokens = ParseCount(std::string_view(line).substr(c1 + 1, c2 - c1 - 1), "ContextTokens");
    if (!in_tokens.ok()) return LineError(file, number, in_tokens.status().message());
    auto out_tokens = ParseCount(std::string_view(line).substr(c2 + 1), "GeneratedTokens");
    if (!out_tokens.ok()) return LineError(file, number, out_tokens.status().message());
    if (trace.requests.empty()) first = *t;
    TraceRequest r;
    r.arrival_us = std::max<Micros>(0, *t - first);
    r.input_tokens = *in_tokens;
    r.output_tokens = *out_tokens;
    trace.requests.push_back(std::move(r));
  }
  return trace;
}

}  // namespace

uint32_t Trace::InternTenant(std::string_view name) {
  if (name.empty()) return 0;
  for (size_t i = 1; i < tenants.size(); ++i) {
    if (tenants[i] == name) return static_cast<uint32_t>(i);
  }
  tenants.emplace_back(name);
  return static_cast<uint32_t>(tenants.size() - 1);
}

uint32_t Trace::InternSession(std::string_view name) {
  if (name.empty()) return 0;
  // Sessions are many; the recent one is the likely match (turns arrive close).
  for (size_t i = sessions.size(); i-- > 1 && i + 64 > sessions.size();) {
    if (sessions[i] == name) return static_cast<uint32_t>(i);
  }
  sessions.emplace_back(name);
  return static_cast<uint32_t>(sessions.size() - 1);
}

Result<TraceFormat> ParseTraceFormat(std::string_view text) {
  if (text == "mooncake") return TraceFormat::kMooncake;
  if (text == "azure") return TraceFormat::kAzure;
  if (text == "kvstack") return TraceFormat::kKvstack;
  return InvalidArgument(fmt::format("trace format \"{}\": expected mooncake, azure or kvstack", text));
}

std::string_view TraceFormatName(TraceFormat format) {
  switch (format) {
    case TraceFormat::kMooncake: return "mooncake";
    case TraceFormat::kAzure: return "azure";
    case TraceFormat::kKvstack: return "kvstack";
  }
  return "?";
}

Result<TraceFormat> DetectTraceFormat(const std::filesystem::path& file) {
  if (file.extension() == ".csv") return TraceFormat::kAzure;
  std::ifstream in(file);
  if (!in) return NotFound(fmt::format("trace {}: cannot open the file", file.string()));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("TIMESTAMP", 0) == 0) return TraceFormat::kAzure;
    if (line.find("\"hash_ids\"") != std::string::npos) return TraceFormat::kMooncake;
    return TraceFormat::kKvstack;
  }
  return TraceFormat::kKvstack;
}

Result<Trace> ReadTrace(const std::filesystem::path& file, TraceFormat format) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return NotFound(fmt::format("trace {}: cannot open the file", file.string()));
  Result<Trace> result = Trace{};
  if (format == TraceFormat::kAzure) {
    result = ReadAzure(file, in);
    if (!result.ok()) return result;
  } else {
    Trace& trace = result.value();
    trace.source = file.string();
    std::string line;
    int64_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) return LineError(file, number, "not a JSON object");
      if (format == TraceFormat::kKvstack && j.contains("kvstack_trace")) continue;
      Result<TraceRequest> r = format == TraceFormat::kMooncake ? ParseMooncake(j) : ParseKvstack(j, &trace);
      if (!r.ok()) return LineError(file, number, r.status().message());
      Status blocks = CheckBlockCount(*r, trace.block_tokens);
      if (!blocks.ok()) return LineError(file, number, blocks.message());
      trace.requests.push_back(std::move(r).value());
    }
  }
  Trace& trace = result.value();
  std::stable_sort(trace.requests.begin(), trace.requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.arrival_us < b.arrival_us; });
  return result;
}

namespace {
// splitmix64: a block id's content seed, so that ids 1 and 2 give unrelated
// tokens (the cache would not care, but the hash index spreads better).
inline uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

void ContentTokens(const Trace& trace, const TraceRequest& r, uint64_t request_index, std::vector<Token>* out) {
  out->clear();
  if (!r.tokens.empty()) {
    out->assign(r.tokens.begin(), r.tokens.end());
    return;
  }
  out->resize(static_cast<size_t>(r.input_tokens));
  Token* t = out->data();
  const int32_t n = r.input_tokens;
  if (r.block_ids.empty()) {
    // Unique content: a seed no block id produces (top bit set).
    const uint32_t base = static_cast<uint32_t>(Mix(request_index | (1ULL << 63)));
    for (int32_t i = 0; i < n; ++i) t[i] = static_cast<Token>((base + static_cast<uint32_t>(i)) & 0x7fffffff);
    return;
  }
  const int32_t bt = trace.block_tokens;
  for (int32_t b = 0, pos = 0; pos < n; ++b) {
    // Two 32-bit halves of the mixed id: a start and an odd stride, so two
    // ids give equal blocks only if all 64 bits agree.
    const uint64_t m = Mix(r.block_ids[static_cast<size_t>(b)]);
    uint32_t v = static_cast<uint32_t>(m);
    const uint32_t stride = static_cast<uint32_t>(m >> 32) | 1u;
    const int32_t end = std::min(n, pos + bt);
    for (; pos < end; ++pos, v += stride) t[pos] = static_cast<Token>(v & 0x7fffffff);
  }
}

}  // namespace kvstack::sim
