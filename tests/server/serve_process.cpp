#include "server/serve_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>

#include "kvstack/gguf.h"
#include "kvstack/tokenizer.h"
#include "server/tenant_label.h"

namespace kvstack::testing {

std::string Stories260KPath() {
  const std::string path = std::string(KVSTACK_SHARED_DIR) + "/models/stories260K.gguf";
  return std::filesystem::exists(path) ? path : "";
}

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every sanitizer ends its report with "SUMMARY: <Name>Sanitizer: ...".
bool HasSanitizerSummary(const std::string& out) {
  const std::string tag = "SUMMARY: ";
  for (size_t at = out.find(tag); at != std::string::npos; at = out.find(tag, at + 1)) {
    const size_t name = at + tag.size();
    const size_t colon = out.find(':', name);
    if (colon == std::string::npos) return false;
    const std::string_view word(out.data() + name, colon - name);
    if (word.size() > 9 && word.substr(word.size() - 9) == "Sanitizer") return true;
  }
  return false;
}

}  // namespace

ServeProcess::ServeProcess(const std::vector<std::string>& args)
    : ServeProcess("serve", [&] {
        std::vector<std::string> all = {"--host", "127.0.0.1", "--port", "0"};
        all.insert(all.end(), args.begin(), args.end());
        return all;
      }()) {}

ServeProcess::ServeProcess(const std::string& command, const std::vector<std::string>& args) {
  static int counter = 0;
  log_path_ = (std::filesystem::temp_directory_path() /
               ("kvstack_serve_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".log"))
                  .string();
  std::vector<std::string> argv_s = {KVSTACK_BINARY, command};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ == 0) {
    const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    ::_exit(127);
  }
  // Startup includes loading the model: generous, as this only bounds a hang.
  const std::regex listening("kvstack " + command + R"(: listening on http://127\.0\.0\.1:(\d+))");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    const std::string out = ReadFile(log_path_);
    if (std::regex_search(out, m, listening)) {
      port_ = std::stoi(m[1]);
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      error_ = "kvstack " + command + " exited before listening:\n" + ReadFile(log_path_);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  error_ = "kvstack " + command + " did not print its listening line in 120 s:\n" + ReadFile(log_path_);
}

ServeProcess::~ServeProcess() {
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  // A sanitizer finding in the child (a race under TSan, a bad access under
  // ASan) fails the test that started it, even when every reply the test saw
  // was right: the report is in the child's output, not the test's.
  const std::string out = ReadFile(log_path_);
  if (HasSanitizerSummary(out)) {
    ADD_FAILURE() << "kvstack (pid " << pid_ << ") reported a sanitizer finding:\n" << out;
  }
  std::filesystem::remove(log_path_);
}

std::string ServeProcess::Output() const { return ReadFile(log_path_); }

std::unique_ptr<httplib::Client> ServeProcess::Client(const std::string& api_key) const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  c->set_read_timeout(120, 0);
  c->set_write_timeout(30, 0);
  if (!api_key.empty()) c->set_bearer_token_auth(api_key);
  return c;
}

void ServeProcess::Signal(int signal) const { ::kill(pid_, signal); }

std::optional<int> ServeProcess::WaitExit(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

namespace {

JsonReply FromResult(const httplib::Result& r) {
  JsonReply reply;
  if (!r) return reply;
  reply.status = r->status;
  reply.raw = r->body;
  reply.body = nlohmann::json::parse(r->body, nullptr, false);
  if (reply.body.is_discarded()) reply.body = nullptr;
  return reply;
}

}  // namespace

JsonReply PostJson(httplib::Client& client, const std::string& path, const nlohmann::json& body) {
  return PostRaw(client, path, body.dump());
}

JsonReply PostRaw(httplib::Client& client, const std::string& path, const std::string& body) {
  return FromResult(client.Post(path.c_str(), body, "application/json"));
}

JsonReply GetJson(httplib::Client& client, const std::string& path) { return FromResult(client.Get(path.c_str())); }

JsonReply DeleteJson(httplib::Client& client, const std::string& path) {
  return FromResult(client.Delete(path.c_str()));
}

StreamReply PostStream(httplib::Client& client, const std::string& path, const nlohmann::json& body,
                       const std::function<void()>& on_first_chunk) {
  StreamReply reply;
  std::string buffer;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buffer.append(data, n);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      reply.data.push_back(payload);
      if (reply.data.size() == 1 && on_first_chunk) on_first_chunk();
      if (payload != "[DONE]") reply.chunks.push_back(nlohmann::json::parse(payload, nullptr, false));
    }
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  if (client.send(req, res, error)) reply.status = res.status;
  return reply;
}

std::vector<int32_t> EncodeStories(const std::string& text) {
  auto file = GgufFile::Open(Stories260KPath());
  if (!file.ok()) return {};
  auto tok = Tokenizer::FromGguf(*file);
  if (!tok.ok()) return {};
  return (*tok)->Encode(text);
}

std::string TestTenantLabel(const std::string& salt) {
  static const server::TenantLabeler labeler = server::TenantLabeler::Create(kTestTenantLabelKey, {}).value();
  return labeler.Label(salt);
}

}  // namespace kvstack::testing
