#include "server/kv_controls.h"

#include <cmath>

#include <fmt/format.h>

#include "server/json_fields.h"

namespace kvstack::server {
namespace {

constexpr double kMaxDurationS = 365.0 * 24 * 3600;  // a year: beyond that, leave the duration out

// A duration in seconds, > 0, as microseconds.
OptError ReadDuration(const FieldReader& r, std::string_view key, std::optional<Micros>* out) {
  if (!r.Has(key)) return std::nullopt;
  double s = 0;
  if (OptError e = r.Number(key, &s)) return e;
  if (!(s > 0) || s > kMaxDurationS) {
    return BadRequest(fmt::format("{} {}: must be more than 0 and at most {} seconds (leave it out to keep the "
                                  "priority until eviction)",
                                  r.Name(key), s, kMaxDurationS),
                      r.Name(key));
  }
  *out = static_cast<Micros>(std::llround(s * 1e6));
  return std::nullopt;
}

OptError ReadPriority(const FieldReader& r, std::string_view key, std::optional<Priority>* out) {
  if (!r.Has(key)) return std::nullopt;
  int64_t p = 0;
  if (OptError e = r.IntegerIn(key, kMinPriority, kMaxPriority, &p)) return e;
  *out = static_cast<Priority>(p);
  return std::nullopt;
}

OptError ParseRange(const nlohmann::json& j, const std::string& name, KvControls::Range* out) {
  if (!j.is_object()) return BadRequest(name + " must be an object with start, end, priority and duration_s", name);
  const FieldReader r(j, name + ".");
  int64_t start = 0;
  if (OptError e = r.IntegerIn("start", 0, INT32_MAX, &start)) return e;
  out->start = static_cast<int32_t>(start);
  if (r.Has("end")) {
    int64_t end = 0;
    if (OptError e = r.IntegerIn("end", 1, INT32_MAX, &end)) return e;
    if (end <= start) {
      return BadRequest(fmt::format("{}end {}: must be more than start ({})", name + ".", end, start), name + ".end");
    }
    out->end = static_cast<int32_t>(end);
  }
  if (!r.Has("priority")) return BadRequest(name + ".priority is required (0-100)", name + ".priority");
  std::optional<Priority> p;
  if (OptError e = ReadPriority(r, "priority", &p)) return e;
  out->priority = *p;
  return ReadDuration(r, "duration_s", &out->duration);
}

}  // namespace

ApiResult<KvControls> ParseKvControls(const nlohmann::json& body) {
  KvControls kv;
  const FieldReader r(body);
  if (OptError e = r.String("cache_salt", &kv.cache_salt)) return *e;
  if (OptError e = r.String("session_id", &kv.session_id)) return *e;
  std::optional<Priority> priority;
  if (OptError e = ReadPriority(r, "priority", &priority)) return *e;
  if (priority) kv.priority = *priority;

  if (!r.Has("retention")) return kv;
  const nlohmann::json& ret = r.Get("retention");
  if (!ret.is_object()) {
    return BadRequest("retention must be an object: {\"ranges\": [...], \"decode_priority\": N, \"decode_duration_s\": S}",
                      "retention");
  }
  const FieldReader rr(ret, "retention.");
  if (rr.Has("ranges")) {
    const nlohmann::json& ranges = rr.Get("ranges");
    if (!ranges.is_array()) return BadRequest("retention.ranges must be an array", "retention.ranges");
    for (size_t i = 0; i < ranges.size(); ++i) {
      KvControls::Range range;
      if (OptError e = ParseRange(ranges[i], fmt::format("retention.ranges[{}]", i), &range)) return *e;
      kv.ranges.push_back(range);
    }
  }
  if (OptError e = ReadPriority(rr, "decode_priority", &kv.decode_priority)) return *e;
  if (OptError e = ReadDuration(rr, "decode_duration_s", &kv.decode_duration)) return *e;
  return kv;
}

ApiResult<RetentionSpec> MakeRetention(const KvControls& kv, int32_t prompt_tokens) {
  RetentionSpec spec;
  for (size_t i = 0; i < kv.ranges.size(); ++i) {
    const KvControls::Range& r = kv.ranges[i];
    const int32_t end = r.end.value_or(prompt_tokens);
    if (r.start >= prompt_tokens) {
      return BadRequest(fmt::format("retention.ranges[{}].start {}: past the end of the prompt ({} tokens)", i,
                                    r.start, prompt_tokens),
                        fmt::format("retention.ranges[{}].start", i));
    }
    if (end > prompt_tokens) {
      return BadRequest(fmt::format("retention.ranges[{}].end {}: past the end of the prompt ({} tokens)", i, end,
                                    prompt_tokens),
                        fmt::format("retention.ranges[{}].end", i));
    }
    spec.ranges.push_back(RetentionRange{.tokens = {r.start, end}, .priority = r.priority, .duration = r.duration});
  }
  spec.decode_priority = kv.decode_priority;
  spec.decode_duration = kv.decode_duration;
  return spec;
}

}  // namespace kvstack::server
