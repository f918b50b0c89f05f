// A file that lives as long as the test process: for a fixture every test of
// a binary reads (a generated model), made once per process, since ctest runs
// each test as a process of its own. Removed at exit (static destruction), so
// a thousand test processes leave nothing behind in the temp folder.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace kvstack::testing {

class ProcessTempFile {
 public:
  // <temp>/<stem>-<pid><extension>
  ProcessTempFile(const std::string& stem, const std::string& extension)
      : path_((std::filesystem::temp_directory_path() / (stem + "-" + std::to_string(::getpid()) + extension))
                  .string()) {}
  ~ProcessTempFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  ProcessTempFile(const ProcessTempFile&) = delete;
  ProcessTempFile& operator=(const ProcessTempFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kvstack::testing
