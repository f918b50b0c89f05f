// TraceWriter: kvstack's own JSONL trace, one served request a line.
#include <cerrno>
#include <cstring>
#include <algorithm>

#include <fmt/format.h>

#include "kvstack/trace.h"

namespace kvstack::sim {
namespace {

// JSON string escaping for the few free-text fields (session, tenant).
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

std::string KvstackTraceLine(const RecordedRequest& r, Micros origin_us) {
  // An arrival before the origin (threads racing to record) is written as 0.
  const Micros t = std::max<Micros>(0, r.arrival_us - origin_us);
  std::string line = fmt::format("{{\"t_ms\": {:.3f}", static_cast<double>(t) / 1000.0);
  if (!r.session.empty()) line += ", \"session\": " + Quote(r.session);
  if (!r.tenant.empty()) line += ", \"tenant\": " + Quote(r.tenant);
  line += fmt::format(", \"input_length\": {}, \"output_length\": {}", r.prompt.size(), r.output_tokens);
  if (r.request_priority != kDefaultPriority) line += fmt::format(", \"priority\": {}", r.request_priority);
  if (!r.ranges.empty()) {
    line += ", \"ranges\": [";
    for (size_t i = 0; i < r.ranges.size(); ++i) {
      line += fmt::format("{}{{\"start\": {}, \"end\": {}, \"priority\": {}}}", i ? ", " : "", r.ranges[i].begin,
                          r.ranges[i].end, r.ranges[i].priority);
    }
    line += "]";
  }
  if (r.measured_ttft_us) line += fmt::format(", \"measured_ttft_ms\": {:.3f}", double(*r.measured_ttft_us) / 1000.0);
  if (r.measured_cached_tokens) line += fmt::format(", \"measured_cached_tokens\": {}", *r.measured_cached_tokens);
  line += ", \"tokens\": [";
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (i) line += ',';
    line += std::to_string(r.prompt[i]);
  }
  line += "]}";
  return line;
}

Result<std::unique_ptr<TraceWriter>> TraceWriter::Open(const std::filesystem::path& file,
                                                       std::optional<Micros> origin_us) {
  std::FILE* f = std::fopen(file.c_str(), "wb");
  if (f == nullptr) {
    return Unavailable(fmt::format("--record-trace {}: cannot create the file: {}", file.string(), std::strerror(errno)));
  }
  const std::string header =
      origin_us ? fmt::format("{{\"kvstack_trace\": 1, \"time_unit\": \"ms\", \"origin_us\": {}}}\n", *origin_us)
                : std::string("{\"kvstack_trace\": 1, \"time_unit\": \"ms\"}\n");
  if (std::fputs(header.c_str(), f) < 0 || std::fflush(f) != 0) {
    std::fclose(f);
    return Unavailable(fmt::format("--record-trace {}: cannot write: {}", file.string(), std::strerror(errno)));
  }
  auto writer = std::unique_ptr<TraceWriter>(new TraceWriter(f));
  if (origin_us) {
    writer->origin_ = *origin_us;
    writer->have_origin_ = true;
  }
  return writer;
}

TraceWriter::~TraceWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

Status TraceWriter::Append(const RecordedRequest& request) {
  if (file_ == nullptr) return Unavailable("trace writer: an earlier write failed");
  if (!have_origin_) {
    origin_ = request.arrival_us;
    have_origin_ = true;
  }
  // Arrivals recorded slightly out of order (threads) are kept as they come;
  // the reader sorts by arrival.
  const std::string line = KvstackTraceLine(request, origin_) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    std::fclose(file_);
    file_ = nullptr;
    return Unavailable(fmt::format("trace writer: write failed: {}", std::strerror(errno)));
  }
  ++lines_;
  return Status::Ok();
}

}  // namespace kvstack::sim
