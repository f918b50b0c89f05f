// Tenant isolation against the other tenants, on the real `kvstack serve`:
// two tenants' traffic, then every endpoint (with a client key, the admin
// key, no key), the log and the recorded trace must show neither salt, while
// the per-tenant figures are still there under the tenants' labels; a client
// that knows another tenant's prompt but not its salt gets cached_tokens 0
// and cannot reach the salt; 401 on every operator endpoint without the admin
// key and on every client endpoint without a client key; pins are seen and
// released by their tenant only; /metrics caps its tenant labels and still
// passes `promtool check metrics`.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include "kvstack/sim.h"
#include "kvstack/trace.h"
#include "common/requirement.h"
#include "server/serve_process.h"
#include "server/tenant_label.h"

namespace kvstack::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kSkip[] = "needs ../shared/models/stories260K.gguf";
constexpr char kKeyA[] = "client-key-alpha-51c2e8";
constexpr char kKeyB[] = "client-key-beta-9e07aa";
constexpr char kAdmin[] = "admin-key-0d4b7aa1f3";
const std::string kSaltA = "salt-A-6f1d93b0c4e27a58";
const std::string kSaltB = "salt-B-e2a07c5d91b84f36";
const std::string kPromptA =
    "Once upon a time there was a little cat named Tom. He liked to play in the big green garden behind the house "
    "with his best friend, a small brown dog.";
const std::string kPromptB = "Lily and her mom went to the park on a sunny day. They saw a big red ball near the tree.";

int Cached(const JsonReply& r) { return r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(); }

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

JsonReply Reply(const httplib::Result& r) {
  JsonReply out;
  if (!r) return out;
  out.status = r->status;
  out.raw = r->body;
  out.body = json::parse(r->body, nullptr, false);
  if (out.body.is_discarded()) out.body = nullptr;
  return out;
}

// A GET that names a tenant the way the pin listing takes it.
JsonReply GetWithSalt(httplib::Client& c, const std::string& path, const std::string& salt) {
  return Reply(c.Get(path.c_str(), httplib::Headers{{"X-Cache-Salt", salt}}));
}

JsonReply DeleteWithBody(httplib::Client& c, const std::string& path, const json& body) {
  return Reply(c.Delete(path.c_str(), body.dump(), "application/json"));
}

// Where a secret must never show up.
void ExpectNoSecret(const std::string& where, const std::string& text) {
  for (const std::string& secret : {kSaltA, kSaltB, std::string(kKeyA), std::string(kKeyB), std::string(kAdmin)}) {
    EXPECT_EQ(text.find(secret), std::string::npos) << where << " shows '" << secret << "':\n" << text;
  }
}

class ServeTenantTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (Stories260KPath().empty()) return;
    trace_path_ = fs::temp_directory_path() / ("kvstack_tenant_trace_" + std::to_string(::getpid()) + ".jsonl");
    server_ = new ServeProcess({"--model", Stories260KPath(), "--threads", "1", "--api-key", kKeyA, "--api-key",
                                kKeyB, "--admin-key", kAdmin, "--tenant-label-key", kTestTenantLabelKey,
                                "--record-trace", trace_path_.string(), "--host-tier", "8MiB"});
    if (!server_->ok()) return;
    auto a = server_->Client(kKeyA);
    auto b = server_->Client(kKeyB);
    auto complete = [](httplib::Client& c, const std::string& prompt, const std::string& salt) {
      return PostJson(c, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 3}, {"cache_salt", salt}});
    };
    replies_.push_back(complete(*a, kPromptA, kSaltA));
    replies_.push_back(complete(*a, kPromptA, kSaltA));  // [1] hits
    replies_.push_back(complete(*b, kPromptB, kSaltB));
    replies_.push_back(complete(*b, kPromptB, kSaltB));  // [3] hits
    replies_.push_back(PostJson(*b, "/v1/chat/completions",
                                {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                                 {"max_tokens", 3},
                                 {"cache_salt", kSaltB}}));
    // B knows A's prompt, not A's salt.
    replies_.push_back(complete(*b, kPromptA, kSaltB));  // [5]
    replies_.push_back(PostJson(*b, "/v1/completions", {{"prompt", kPromptA}, {"max_tokens", 3}}));  // [6] no salt
    replies_.push_back(complete(*b, kPromptA, TestTenantLabel(kSaltA)));  // [7] A's label, seen nowhere by B anyway
    replies_.push_back(complete(*b, kPromptA, "tenant-a"));  // [8] a guess
    pin_ = PostJson(*a, "/v1/cache/pin", {{"prompt", kPromptA}, {"cache_salt", kSaltA}});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    replies_.clear();
    fs::remove(trace_path_);
  }
  void SetUp() override {
    if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
    ASSERT_TRUE(server_->ok()) << server_->error();
    for (const JsonReply& r : replies_) ASSERT_EQ(r.status, 200) << r.raw;
    ASSERT_EQ(pin_.status, 200) << pin_.raw;
  }
  static ServeProcess* server_;
  static std::vector<JsonReply> replies_;
  static JsonReply pin_;
  static fs::path trace_path_;
};
ServeProcess* ServeTenantTest::server_ = nullptr;
std::vector<JsonReply> ServeTenantTest::replies_;
JsonReply ServeTenantTest::pin_;
fs::path ServeTenantTest::trace_path_;

const std::vector<std::string> kOperatorGets = {"/metrics", "/v1/memory", "/v1/cache/stats"};
const std::vector<std::string> kClientGets = {"/v1/models", "/v1/cache/pin"};

TEST_F(ServeTenantTest, NoSaltInAnyEndpointLogOrTraceButFiguresUnderLabels) {
  const std::string label_a = TestTenantLabel(kSaltA), label_b = TestTenantLabel(kSaltB);
  ASSERT_NE(label_a, label_b);
  for (const JsonReply& r : replies_) ExpectNoSecret("a completion reply", r.raw);
  ExpectNoSecret("the pin reply", pin_.raw);
  EXPECT_EQ(pin_.body["tenant"], label_a);

  std::map<std::string, std::string> admin_bodies;
  for (const char* key : {"", kKeyA, kKeyB, kAdmin}) {
    auto c = server_->Client(key);
    for (const char* path : {"/", "/health", "/v1/models", "/metrics", "/v1/memory", "/v1/cache/stats",
                                    "/v1/cache/pin"}) {
      auto res = c->Get(path);
      ASSERT_TRUE(res) << path;
      ExpectNoSecret(std::string("GET ") + path + " with key '" + key + "'", res->body);
      if (std::string(key) == kAdmin) admin_bodies[path] = res->body;
    }
    for (const std::string& salt : {kSaltA, kSaltB}) {
      ExpectNoSecret("GET /v1/cache/pin naming a salt", GetWithSalt(*c, "/v1/cache/pin", salt).raw);
    }
  }

  // The per-tenant figures are there, under the labels.
  const json memory = json::parse(admin_bodies["/v1/memory"]);
  std::map<std::string, json> tenants;
  for (const json& t : memory["prefix_cache"]["by_tenant"]) tenants[t["tenant"]] = t;
  ASSERT_TRUE(tenants.count(label_a)) << memory["prefix_cache"].dump();
  ASSERT_TRUE(tenants.count(label_b)) << memory["prefix_cache"].dump();
  EXPECT_GE(tenants[label_a]["hit_tokens"].get<int>(), Cached(replies_[1]));
  EXPECT_GT(Cached(replies_[1]), 0);
  EXPECT_GT(tenants[label_b]["hit_tokens"].get<int>(), 0);
  bool hot_a = false;
  for (const json& h : memory["hot_prefixes"]) hot_a |= h["tenant"] == label_a;
  EXPECT_TRUE(hot_a) << memory["hot_prefixes"].dump();

  const json stats = json::parse(admin_bodies["/v1/cache/stats"]);
  EXPECT_EQ(stats["by_tenant"][label_a]["hit_tokens"], tenants[label_a]["hit_tokens"]);
  ASSERT_EQ(stats["pins"].size(), 1u);
  EXPECT_EQ(stats["pins"][0]["tenant"], label_a);

  const std::string& metrics = admin_bodies["/metrics"];
  EXPECT_NE(metrics.find("kvstack_prefix_cache_hits_by_tenant_total{tenant=\"" + label_a + "\"} " +
                         std::to_string(tenants[label_a]["hit_tokens"].get<int>()) + "\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("kvstack_prefix_cache_queries_by_tenant_total{tenant=\"" + label_b + "\"}"),
            std::string::npos);

  // The log names tenants by label, never by salt (nor any key).
  const std::string log = server_->Output();
  ExpectNoSecret("the server log", log);
  EXPECT_NE(log.find("tenant " + label_a), std::string::npos) << log;
  EXPECT_NE(log.find("pinned"), std::string::npos);

  // The trace keeps the labels.
  const std::string trace_text = ReadAll(trace_path_);
  ExpectNoSecret("the recorded trace", trace_text);
  EXPECT_NE(trace_text.find("\"tenant\": \"" + label_a + "\""), std::string::npos) << trace_text;
}

TEST_F(ServeTenantTest, TheRecordedTraceStillSeparatesTenantsInTheSimulator) {
  auto trace = sim::ReadTrace(trace_path_.string(), sim::TraceFormat::kKvstack);
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  std::set<std::string> names(trace->tenants.begin(), trace->tenants.end());
  EXPECT_TRUE(names.count(TestTenantLabel(kSaltA)));
  EXPECT_TRUE(names.count(TestTenantLabel(kSaltB)));
  // The simulator keys blocks by tenant as the server does: A's prompt under
  // A's label and again under B's holds its blocks twice; one tenant for
  // both would hold them once.
  sim::Trace a_then_b = *trace;
  a_then_b.requests.clear();
  std::map<std::string, uint32_t> index;
  for (uint32_t t = 0; t < trace->tenants.size(); ++t) index[trace->tenants[t]] = t;
  for (const sim::TraceRequest& r : trace->requests) {
    if (r.input_tokens == replies_[5].body["usage"]["prompt_tokens"].get<int>() &&
        (r.tenant == index[TestTenantLabel(kSaltA)] || r.tenant == index[TestTenantLabel(kSaltB)])) {
      a_then_b.requests.push_back(r);
    }
  }
  ASSERT_GE(a_then_b.requests.size(), 3u) << "A's prompt twice under A, once under B";
  const int64_t separate = sim::DistinctPromptTokens(a_then_b, 16);
  for (sim::TraceRequest& r : a_then_b.requests) r.tenant = index[TestTenantLabel(kSaltA)];
  EXPECT_EQ(separate, 2 * sim::DistinctPromptTokens(a_then_b, 16));
}

TEST_F(ServeTenantTest, AClientThatKnowsAPromptButNotItsSaltGetsNoHit) {
  ASSERT_GT(Cached(replies_[1]), 0) << "the control: under A's salt the prompt hits";
  EXPECT_EQ(Cached(replies_[5]), 0) << "under B's own salt";
  EXPECT_EQ(Cached(replies_[6]), 0) << "under no salt";
  EXPECT_EQ(Cached(replies_[7]), 0) << "under A's label (a label is not a salt)";
  EXPECT_EQ(Cached(replies_[8]), 0) << "under a guessed salt";
  // ...and the same request with A's salt still hits: the test above could fail.
  auto a = server_->Client(kKeyA);
  EXPECT_GT(Cached(PostJson(*a, "/v1/completions", {{"prompt", kPromptA}, {"max_tokens", 1}, {"cache_salt", kSaltA}})),
            0);

  // Every endpoint B's key reaches: the operator views refuse it, the rest
  // never show A's salt (checked for every body above); A's pin is invisible.
  auto b = server_->Client(kKeyB);
  for (const std::string& path : kOperatorGets) EXPECT_EQ(GetJson(*b, path).status, 401) << path;
  for (const std::string& salt : {std::string(""), kSaltB, std::string("tenant-a")}) {
    const JsonReply pins = GetWithSalt(*b, "/v1/cache/pin", salt);
    ASSERT_EQ(pins.status, 200) << pins.raw;
    EXPECT_TRUE(pins.body["data"].empty()) << pins.raw;
  }
}

TEST_F(ServeTenantTest, PinsAreSeenAndReleasedByTheirTenantOnly) {
  const std::string id = pin_.body["id"];
  auto a = server_->Client(kKeyA);
  auto b = server_->Client(kKeyB);
  const JsonReply mine = GetWithSalt(*a, "/v1/cache/pin", kSaltA);
  ASSERT_EQ(mine.status, 200) << mine.raw;
  ASSERT_EQ(mine.body["data"].size(), 1u);
  EXPECT_EQ(mine.body["data"][0]["id"], id);
  EXPECT_EQ(mine.body["data"][0]["tenant"], TestTenantLabel(kSaltA));
  EXPECT_TRUE(GetJson(*a, "/v1/cache/pin").body["data"].empty()) << "without its salt, A sees no pin either";

  // Another tenant's pin answers as a missing one, and stays.
  const JsonReply theirs = DeleteWithBody(*b, "/v1/cache/pin/" + id, {{"cache_salt", kSaltB}});
  EXPECT_EQ(theirs.status, 404) << theirs.raw;
  ExpectNoSecret("a refused DELETE", theirs.raw);
  EXPECT_EQ(DeleteJson(*b, "/v1/cache/pin/" + id).status, 404);
  std::string message = theirs.body["error"]["message"];
  message.replace(message.find(id), id.size(), "pin-999");
  EXPECT_EQ(message, DeleteJson(*b, "/v1/cache/pin/pin-999").body["error"]["message"])
      << "another tenant's pin answers exactly as a missing one";
  auto admin = server_->Client(kAdmin);
  EXPECT_EQ(GetJson(*admin, "/v1/cache/pin").body["data"].size(), 1u) << "the operator sees every pin";
  EXPECT_EQ(DeleteWithBody(*a, "/v1/cache/pin/" + id, {{"cache_salt", 5}}).status, 400);

  // The owner releases it (here through the header).
  const JsonReply released = Reply(a->Delete(("/v1/cache/pin/" + id).c_str(), httplib::Headers{{"X-Cache-Salt", kSaltA}}));
  EXPECT_EQ(released.status, 200) << released.raw;
  EXPECT_TRUE(GetJson(*admin, "/v1/cache/pin").body["data"].empty());
  // Put it back for the other tests of the suite, whatever their order.
  pin_ = PostJson(*a, "/v1/cache/pin", {{"prompt", kPromptA}, {"cache_salt", kSaltA}});
}

// A session is its tenant's: another tenant naming the same session id
// cannot prefetch it, nor learn that it exists.
TEST_F(ServeTenantTest, SessionsAreScopedByTenant) {
  auto a = server_->Client(kKeyA);
  auto b = server_->Client(kKeyB);
  const JsonReply turn = PostJson(
      *a, "/v1/completions", {{"prompt", kPromptA}, {"max_tokens", 2}, {"cache_salt", kSaltA}, {"session_id", "chat-7"}});
  ASSERT_EQ(turn.status, 200) << turn.raw;
  for (const json& body : {json{{"session_id", "chat-7"}}, json{{"session_id", "chat-7"}, {"cache_salt", kSaltB}}}) {
    const JsonReply r = PostJson(*b, "/v1/cache/prefetch", body);
    EXPECT_EQ(r.status, 404) << r.raw;
    EXPECT_EQ(r.body["error"]["message"],
              "session 'chat-7' is not remembered for this cache_salt (send the cache_salt its requests used)");
    ExpectNoSecret("a refused prefetch", r.raw);
  }
  const JsonReply mine = PostJson(*a, "/v1/cache/prefetch", {{"session_id", "chat-7"}, {"cache_salt", kSaltA}});
  EXPECT_EQ(mine.status, 200) << mine.raw;
  EXPECT_EQ(mine.body["session_id"], "chat-7");
  EXPECT_EQ(PostJson(*a, "/v1/cache/prefetch", {{"session_id", "chat-7"}, {"cache_salt", 1}}).status, 400);
  ExpectNoSecret("the server log", server_->Output());
}

TEST_F(ServeTenantTest, EveryEndpointRefusesTheWrongKind) {
  auto none = server_->Client();
  auto wrong = server_->Client("not-a-key");
  auto client = server_->Client(kKeyA);
  auto admin = server_->Client(kAdmin);
  for (const std::string& path : kOperatorGets) {
    for (auto* c : {none.get(), wrong.get(), client.get()}) {
      const JsonReply r = GetJson(*c, path);
      EXPECT_EQ(r.status, 401) << path << ": " << r.raw;
      EXPECT_EQ(r.body["error"]["type"], "authentication_error") << path;
      ExpectNoSecret("a 401", r.raw);
    }
    EXPECT_EQ(GetJson(*admin, path).status, 200) << path;
  }
  const json completion = {{"prompt", "x"}, {"max_tokens", 1}};
  const json chat = {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_tokens", 1}};
  for (auto* c : {none.get(), wrong.get()}) {
    for (const std::string& path : kClientGets) EXPECT_EQ(GetJson(*c, path).status, 401) << path;
    EXPECT_EQ(PostJson(*c, "/v1/completions", completion).status, 401);
    EXPECT_EQ(PostJson(*c, "/v1/chat/completions", chat).status, 401);
    EXPECT_EQ(PostJson(*c, "/v1/cache/pin", {{"prompt", kPromptA}}).status, 401);
    EXPECT_EQ(PostJson(*c, "/v1/cache/prefetch", {{"session_id", "s"}}).status, 401);
    EXPECT_EQ(DeleteJson(*c, "/v1/cache/pin/pin-1").status, 401);
    EXPECT_EQ(PostJson(*c, "/tokenize", {{"prompt", "x"}}).status, 401);
    EXPECT_EQ(PostJson(*c, "/detokenize", {{"tokens", {1}}}).status, 401);
  }
  for (auto* c : {client.get(), admin.get()}) {
    for (const std::string& path : kClientGets) EXPECT_EQ(GetJson(*c, path).status, 200) << path;
    EXPECT_EQ(PostJson(*c, "/v1/completions", completion).status, 200);
    EXPECT_EQ(PostJson(*c, "/tokenize", {{"prompt", "x"}}).status, 200);
    EXPECT_EQ(PostJson(*c, "/detokenize", {{"tokens", {1}}}).status, 200);
  }
  EXPECT_EQ(GetJson(*none, "/health").status, 200);
  EXPECT_EQ(GetJson(*none, "/").status, 200) << "the dashboard page holds no data; its /v1/memory needs the key";
}

// Client keys from a file and no admin key: no key opens the operator views,
// but --public-metrics opens /metrics alone.
TEST(ServeTenantAccess, ClientKeysWithoutAnAdminKeyCloseTheOperatorViews) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  const fs::path keys = fs::temp_directory_path() / ("kvstack_keys_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(keys) << "# clients\nfile-key-one\n\n  file-key-two  \n";
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1", "--api-keys-file", keys.string(),
                       "--public-metrics"});
  fs::remove(keys);
  ASSERT_TRUE(server.ok()) << server.error();
  auto one = server.Client("file-key-one");
  auto two = server.Client("file-key-two");
  EXPECT_EQ(GetJson(*one, "/v1/models").status, 200);
  EXPECT_EQ(GetJson(*two, "/v1/models").status, 200);
  EXPECT_EQ(GetJson(*server.Client("# clients"), "/v1/models").status, 401);
  for (const char* path : {"/v1/memory", "/v1/cache/stats"}) {
    const JsonReply r = GetJson(*one, path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.body["error"]["code"], "admin_key_required") << r.raw;
  }
  EXPECT_EQ(GetJson(*server.Client(), "/metrics").status, 200) << "--public-metrics";
  EXPECT_EQ(server.Output().find("file-key"), std::string::npos) << server.Output();
}

TEST(ServeTenantAccess, BadAccessOptionsAreClearStartErrors) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  ServeProcess short_key({"--model", Stories260KPath(), "--tenant-label-key", "short"});
  EXPECT_FALSE(short_key.ok());
  EXPECT_NE(short_key.error().find("--tenant-label-key: 5 bytes is too short"), std::string::npos) << short_key.error();
  ServeProcess same({"--model", Stories260KPath(), "--api-key", "same-key-1234", "--admin-key", "same-key-1234"});
  EXPECT_FALSE(same.ok());
  EXPECT_NE(same.error().find("--admin-key: must differ from every --api-key"), std::string::npos) << same.error();
  EXPECT_EQ(same.error().find("same-key-1234", same.error().find("kvstack serve:")), std::string::npos)
      << "the message quotes the key: " << same.error();
  const fs::path empty = fs::temp_directory_path() / ("kvstack_empty_key_" + std::to_string(::getpid()));
  std::ofstream(empty) << "\n";
  ServeProcess empty_admin({"--model", Stories260KPath(), "--admin-key-file", empty.string()});
  fs::remove(empty);
  EXPECT_FALSE(empty_admin.ok());
  EXPECT_NE(empty_admin.error().find("--admin-key-file " + empty.string() + ": the file is empty"), std::string::npos)
      << empty_admin.error();
  ServeProcess no_names({"--model", Stories260KPath(), "--tenant-names", "/nonexistent/names.txt"});
  EXPECT_FALSE(no_names.ok());
  EXPECT_NE(no_names.error().find("--tenant-names /nonexistent/names.txt: cannot read the file"), std::string::npos)
      << no_names.error();
}

// Many tenants, --max-tenant-labels 2 and one named tenant: /metrics shows
// the name, two labels and "other", every figure summed, and promtool
// accepts it.
TEST(ServeTenantMetrics, CappedTenantLabelsPassPromtool) {
  if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << kSkip;
  const fs::path names = fs::temp_directory_path() / ("kvstack_names_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(names) << "# name  sha256(salt)\nacme " << server::Sha256Hex("named-salt-0001") << "\n";
  const fs::path label_key = fs::temp_directory_path() / ("kvstack_label_key_" + std::to_string(::getpid()));
  std::ofstream(label_key) << kTestTenantLabelKey << "\n";  // the newline is not part of the key
  ServeProcess server({"--model", Stories260KPath(), "--threads", "1", "--max-tenant-labels", "2", "--tenant-names",
                       names.string(), "--tenant-label-key-file", label_key.string()});
  fs::remove(names);
  fs::remove(label_key);
  ASSERT_TRUE(server.ok()) << server.error();
  auto c = server.Client();
  std::vector<std::string> salts = {"named-salt-0001"};
  for (int i = 0; i < 5; ++i) salts.push_back("unnamed-salt-" + std::to_string(i));
  for (const std::string& salt : salts) {
    const JsonReply r = PostJson(*c, "/v1/completions", {{"prompt", kPromptB}, {"max_tokens", 1}, {"cache_salt", salt}});
    ASSERT_EQ(r.status, 200) << r.raw;
  }
  auto res = c->Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::string body = res->body;
  for (const std::string& salt : salts) EXPECT_EQ(body.find(salt), std::string::npos) << salt;
  std::set<std::string> values;
  double by_tenant_sum = 0, total = 0;
  const std::regex sample(R"re(kvstack_prefix_cache_queries_by_tenant_total\{tenant="([^"]*)"\} (\S+))re");
  for (auto it = std::sregex_iterator(body.begin(), body.end(), sample); it != std::sregex_iterator(); ++it) {
    values.insert((*it)[1]);
    by_tenant_sum += std::stod((*it)[2]);
  }
  std::smatch m;
  ASSERT_TRUE(std::regex_search(body, m, std::regex(R"(\nkvstack_prefix_cache_queries_total (\S+))")));
  total = std::stod(m[1]);
  EXPECT_EQ(values.size(), 4u) << body;
  EXPECT_TRUE(values.count("acme"));
  EXPECT_TRUE(values.count("other"));
  EXPECT_EQ(by_tenant_sum, total) << "the capped tenants are summed, not dropped";
  // The names file and the labels reach /v1/memory too (uncapped).
  const JsonReply memory = GetJson(*c, "/v1/memory");
  std::set<std::string> memory_tenants;
  for (const json& t : memory.body["prefix_cache"]["by_tenant"]) memory_tenants.insert(t["tenant"]);
  EXPECT_TRUE(memory_tenants.count("acme"));
  EXPECT_TRUE(memory_tenants.count(TestTenantLabel("unnamed-salt-4")));

  if (!fs::exists("/usr/bin/promtool")) {
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::string(ci) == "true") FAIL() << "CI=true but /usr/bin/promtool is absent";
    KVSTACK_SKIP_MISSING() << "promtool check: /usr/bin/promtool is absent (apt-get install prometheus)";
  }
  const std::string path = (fs::temp_directory_path() / ("kvstack_capped_metrics_" + std::to_string(::getpid()) + ".txt")).string();
  std::ofstream(path) << body;
  FILE* pipe = ::popen(("/usr/bin/promtool check metrics < " + path + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  fs::remove(path);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool check metrics:\n" << out;
}

}  // namespace
}  // namespace kvstack::testing
