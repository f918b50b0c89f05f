// A real `kvstack serve` child process for integration tests: started on
// 127.0.0.1 with --port 0, its output (stdout and stderr) captured in a file,
// the chosen port read from its "listening on" line. The destructor kills it
// if it still runs, so no test leaves a server behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace kvstack::testing {

// ../shared/models/stories260K.gguf, or "" when absent (tests skip then).
std::string Stories260KPath();

class ServeProcess {
 public:
  // Starts `kvstack serve --host 127.0.0.1 --port 0 <args>` and waits for its
  // listening line. On failure, error() says why (and includes its output).
  explicit ServeProcess(const std::vector<std::string>& args);
  // Another kvstack command that prints "kvstack COMMAND: listening on
  // http://127.0.0.1:PORT" (e.g. "router"), started with `args` only.
  ServeProcess(const std::string& command, const std::vector<std::string>& args);
  ~ServeProcess();
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  bool ok() const { return port_ > 0; }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Everything the server printed so far.
  std::string Output() const;

  std::unique_ptr<httplib::Client> Client(const std::string& api_key = "") const;

  // Sends `signal` to the server.
  void Signal(int signal) const;
  // Waits for the process to exit: its exit code, or nullopt (a signal
  // killed it, or it still ran after `timeout`).
  std::optional<int> WaitExit(std::chrono::seconds timeout);

 private:
  pid_t pid_ = -1;
  int port_ = -1;
  bool exited_ = false;
  std::string log_path_;
  std::string error_;
};

// POST `body` as JSON; the status (-1 when no response) and the parsed body
// (null when it is not JSON).
struct JsonReply {
  int status = -1;
  nlohmann::json body;
  std::string raw;
};
JsonReply PostJson(httplib::Client& client, const std::string& path, const nlohmann::json& body);
JsonReply PostRaw(httplib::Client& client, const std::string& path, const std::string& body);
JsonReply GetJson(httplib::Client& client, const std::string& path);
JsonReply DeleteJson(httplib::Client& client, const std::string& path);

// A streamed request read to the end: every "data:" payload in order
// ("[DONE]" included as the string).
struct StreamReply {
  int status = -1;
  std::vector<std::string> data;
  std::vector<nlohmann::json> chunks;  // the JSON payloads
};
// `on_first_chunk`, when set, runs once as the first data payload arrives.
StreamReply PostStream(httplib::Client& client, const std::string& path, const nlohmann::json& body,
                       const std::function<void()>& on_first_chunk = {});

// The --tenant-label-key of tests that check tenant labels, and the label a
// server started with it shows for `salt` ("" for none).
inline constexpr char kTestTenantLabelKey[] = "kvstack-tests-tenant-label-key";
std::string TestTenantLabel(const std::string& salt);

// stories260K's token ids for `text` (BOS first, as the server encodes).
std::vector<int32_t> EncodeStories(const std::string& text);

}  // namespace kvstack::testing
