// AccessControl: client keys, the admin key, --public-metrics, and messages
// that never quote a key.
#include "server/access.h"

#include <gtest/gtest.h>

namespace kvstack::server {
namespace {

httplib::Request With(const std::string& authorization) {
  httplib::Request r;
  if (!authorization.empty()) r.set_header("Authorization", authorization);
  return r;
}

// The status to send (200: let it through) and the error code.
std::pair<int, std::string> Answer(const AccessControl& a, const std::string& auth, Access kind) {
  auto e = a.Check(With(auth), kind);
  if (!e) return {200, ""};
  EXPECT_EQ(e->message.find("k-"), std::string::npos) << "a message quotes a key: " << e->message;
  EXPECT_EQ(e->type, "authentication_error");
  return {e->http_status, e->code};
}

using P = std::pair<int, std::string>;

TEST(Access, NoKeysOpensEverything) {
  const AccessControl a({}, "", false);
  for (Access k : {Access::kClient, Access::kOperator, Access::kMetrics}) EXPECT_EQ(Answer(a, "", k), P(200, ""));
}

TEST(Access, ClientKeysWithoutAnAdminKeyCloseTheOperatorViews) {
  const AccessControl a({"k-one", "k-two"}, "", false);
  EXPECT_EQ(Answer(a, "", Access::kClient), P(401, "missing_api_key"));
  EXPECT_EQ(Answer(a, "Bearer k-one", Access::kClient), P(200, ""));
  EXPECT_EQ(Answer(a, "Bearer k-two", Access::kClient), P(200, ""));
  EXPECT_EQ(Answer(a, "Bearer k-three", Access::kClient), P(401, "invalid_api_key"));
  EXPECT_EQ(Answer(a, "Basic k-one", Access::kClient), P(401, "invalid_api_key"));
  EXPECT_EQ(Answer(a, "Bearer k-one ", Access::kClient), P(401, "invalid_api_key"));
  EXPECT_EQ(Answer(a, "Bearer k-on", Access::kClient), P(401, "invalid_api_key"));
  for (Access k : {Access::kOperator, Access::kMetrics}) {
    EXPECT_EQ(Answer(a, "", k), P(401, "admin_key_required"));
    EXPECT_EQ(Answer(a, "Bearer k-one", k), P(401, "admin_key_required"));
  }
  const AccessControl open_metrics({"k-one"}, "", true);
  EXPECT_EQ(Answer(open_metrics, "", Access::kMetrics), P(200, ""));
  EXPECT_EQ(Answer(open_metrics, "", Access::kOperator), P(401, "admin_key_required"));
}

TEST(Access, TheAdminKeyOpensOperatorViewsAndClientEndpoints) {
  const AccessControl a({"k-client"}, "k-admin", false);
  for (Access k : {Access::kOperator, Access::kMetrics}) {
    EXPECT_EQ(Answer(a, "", k), P(401, "missing_admin_key"));
    EXPECT_EQ(Answer(a, "Bearer k-client", k), P(401, "invalid_admin_key"));
    EXPECT_EQ(Answer(a, "Bearer k-admin", k), P(200, ""));
  }
  EXPECT_EQ(Answer(a, "Bearer k-admin", Access::kClient), P(200, ""));
  EXPECT_TRUE(a.IsAdmin(With("Bearer k-admin")));
  EXPECT_FALSE(a.IsAdmin(With("Bearer k-client")));
  EXPECT_FALSE(a.IsAdmin(With("")));
  const AccessControl public_metrics({"k-client"}, "k-admin", true);
  EXPECT_EQ(Answer(public_metrics, "", Access::kMetrics), P(200, ""));
  EXPECT_EQ(Answer(public_metrics, "", Access::kOperator), P(401, "missing_admin_key"));
}

TEST(Access, AnAdminKeyAloneLeavesClientEndpointsOpen) {
  const AccessControl a({}, "k-admin", false);
  EXPECT_EQ(Answer(a, "", Access::kClient), P(200, ""));
  EXPECT_EQ(Answer(a, "", Access::kOperator), P(401, "missing_admin_key"));
  EXPECT_FALSE(AccessControl({}, "", false).IsAdmin(With("Bearer ")));
}

}  // namespace
}  // namespace kvstack::server
