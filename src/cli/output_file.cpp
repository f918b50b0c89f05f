#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "cli/commands.h"

namespace kvstack::cli {

Status WriteOutputFile(std::string_view flag, const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();  // a full disk shows at the flush, not at the write
  if (!out) return Unavailable(fmt::format("{} {}: cannot write the file", flag, path));
  std::fprintf(stderr, "wrote %s\n", path.c_str());
  return Status::Ok();
}

Result<sim::Trace> ReadTraceOption(const std::string& file, const std::string& format) {
  Result<sim::TraceFormat> f = format.empty() ? sim::DetectTraceFormat(file) : sim::ParseTraceFormat(format);
  if (!f.ok()) {
    return format.empty() ? f.status() : InvalidArgument("--format: " + f.status().message());
  }
  return sim::ReadTrace(file, *f);
}

}  // namespace kvstack::cli
