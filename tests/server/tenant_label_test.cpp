// Tenant labels: the keyed hash that replaces a cache_salt in every view,
// operator names, the metric-label cap and the pins' owner check.
#include "server/tenant_label.h"

#include <gtest/gtest.h>

#include <regex>

namespace kvstack::server {
namespace {

constexpr char kKey[] = "0123456789abcdef-test-key";

TenantLabeler Labeler(const std::vector<TenantName>& names = {}, std::string key = kKey) {
  auto l = TenantLabeler::Create(std::move(key), names);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return std::move(l).value();
}

TEST(TenantLabel, IsTheTruncatedHmacSha256OfTheSalt) {
  // RFC 4231 test case 2: HMAC-SHA-256("Jefe", "what do ya want for nothing?").
  const TenantLabeler l = Labeler({}, "Jefe");
  const TenantId id = l.Identify("what do ya want for nothing?");
  EXPECT_EQ(id.label, "5bdcc146bf60");
  EXPECT_EQ(id.owner.size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>(id.owner[0]), 0x5b);
  EXPECT_EQ(static_cast<unsigned char>(id.owner[31]), 0x43);
  EXPECT_FALSE(id.named);
}

TEST(TenantLabel, StablePerKeyDistinctPerSaltAndKey) {
  const TenantLabeler a = Labeler();
  const TenantLabeler b = Labeler({}, "another-secret-of-16+bytes");
  EXPECT_TRUE(std::regex_match(a.Label("tenant-a"), std::regex("[0-9a-f]{12}")));
  EXPECT_EQ(a.Label("tenant-a"), Labeler().Label("tenant-a"));
  EXPECT_NE(a.Label("tenant-a"), a.Label("tenant-b"));
  EXPECT_NE(a.Label("tenant-a"), b.Label("tenant-a")) << "the label depends on the server secret";
  EXPECT_EQ(a.Label("tenant-a").find("tenant"), std::string::npos);
}

TEST(TenantLabel, NoSaltIsNoTenant) {
  const TenantId id = Labeler().Identify("");
  EXPECT_EQ(id.label, "");
  EXPECT_EQ(id.owner, "");
}

TEST(TenantLabel, OperatorNamesByLabelOrBySaltSha256) {
  const std::string label_b = Labeler().Label("salt-b");
  const TenantLabeler l = Labeler({{.name = "acme", .hash = Sha256Hex("salt-a")}, {.name = "globex", .hash = label_b}});
  EXPECT_EQ(l.Identify("salt-a").label, "acme");
  EXPECT_TRUE(l.Identify("salt-a").named);
  EXPECT_EQ(l.Identify("salt-b").label, "globex");
  EXPECT_EQ(l.Identify("salt-c").label, Labeler().Label("salt-c"));
  EXPECT_NE(l.Identify("salt-a").owner, l.Identify("salt-b").owner);
  // printf %s abc | sha256sum
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TenantLabel, BadNamesAreRefusedNamingTheEntry) {
  const std::string h = Sha256Hex("s");
  auto refused = [&](std::vector<TenantName> names, const std::string& part) {
    auto l = TenantLabeler::Create(kKey, names);
    ASSERT_FALSE(l.ok());
    EXPECT_EQ(l.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(l.status().message().find(part), std::string::npos) << l.status().message();
    EXPECT_EQ(l.status().message().find(h), std::string::npos) << "never quotes a hash";
  };
  refused({{.name = "a b", .hash = h}}, "entry 1");
  refused({{.name = "", .hash = h}}, "1 to 64 characters");
  refused({{.name = "other", .hash = h}}, "'other'");
  refused({{.name = "0123456789ab", .hash = h}}, "must not look like a label");
  refused({{.name = "a", .hash = "xyz"}}, "SHA-256");
  refused({{.name = "a", .hash = h}, {.name = "a", .hash = Sha256Hex("t")}}, "entry 2 ('a'): the name is given twice");
  refused({{.name = "a", .hash = h}, {.name = "b", .hash = h}}, "given to another name");
  EXPECT_FALSE(TenantLabeler::Create("", {}).ok());
}

TEST(TenantLabel, ParsesANamesFile) {
  const std::string h = Sha256Hex("salt-a");
  std::string upper = h;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  auto names = ParseTenantNames("# operator names\n\nacme  " + upper + "\r\nglobex\t0123456789ab\n", "n.txt");
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  ASSERT_EQ(names->size(), 2u);
  EXPECT_EQ((*names)[0].name, "acme");
  EXPECT_EQ((*names)[0].hash, h);
  EXPECT_EQ((*names)[1].hash, "0123456789ab");

  auto extra = ParseTenantNames("acme " + h + " x\n", "n.txt");
  ASSERT_FALSE(extra.ok());
  EXPECT_EQ(extra.status().message(), "--tenant-names n.txt:1: expected 'NAME HASH' (2 fields), found 3");
  auto bad = ParseTenantNames("\nacme nothex\n", "n.txt");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("n.txt:2:"), std::string::npos) << bad.status().message();
  EXPECT_EQ(bad.status().message().find("nothex"), std::string::npos) << "never quotes a hash";
}

TEST(TenantSeriesCap, FirstComeKeepTheirLabelTheRestAreOther) {
  TenantSeriesCap cap(2);
  auto id = [](std::string label, bool named = false) { return TenantId{.label = label, .named = named}; };
  EXPECT_EQ(cap.SeriesFor(id("aaaaaaaaaaaa")), "aaaaaaaaaaaa");
  EXPECT_EQ(cap.SeriesFor(id("bbbbbbbbbbbb")), "bbbbbbbbbbbb");
  EXPECT_EQ(cap.SeriesFor(id("cccccccccccc")), "other");
  EXPECT_EQ(cap.SeriesFor(id("aaaaaaaaaaaa")), "aaaaaaaaaaaa") << "sticky";
  EXPECT_EQ(cap.SeriesFor(id("")), "") << "no salt is always its own series";
  EXPECT_EQ(cap.SeriesFor(id("acme", true)), "acme") << "named tenants are never capped";
  TenantSeriesCap none(0);
  EXPECT_EQ(none.SeriesFor(id("aaaaaaaaaaaa")), "other");
}

TEST(TenantLabel, CountersByLabelRelabelsAndSumsPastTheCap) {
  const TenantLabeler l = Labeler();
  std::map<std::string, PrefixCounters> by_salt;
  by_salt[""] = {.query_tokens = 1, .hit_tokens = 0};
  by_salt["s1"] = {.query_tokens = 10, .hit_tokens = 5, .query_blocks = 2, .hit_blocks = 1};
  by_salt["s2"] = {.query_tokens = 20, .hit_tokens = 4};
  by_salt["s3"] = {.query_tokens = 30, .hit_tokens = 3};
  const auto all = CountersByLabel(by_salt, l);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all.at(l.Label("s1")).hit_blocks, 1u);
  EXPECT_EQ(all.count("s1"), 0u);

  TenantSeriesCap cap(1);
  const auto capped = CountersByLabel(by_salt, l, &cap);
  ASSERT_EQ(capped.size(), 3u) << "no salt, one label, other";
  EXPECT_EQ(capped.at(l.Label("s1")).query_tokens, 10u) << "std::map order: s1 comes first";
  EXPECT_EQ(capped.at("other").query_tokens, 50u);
  EXPECT_EQ(capped.at("other").hit_tokens, 7u);
  EXPECT_EQ(capped.at("").query_tokens, 1u);
}

TEST(TenantLabel, SessionIdsAreScopedByTenant) {
  const TenantLabeler l = Labeler();
  EXPECT_EQ(TenantSessionId(l.Identify(""), "chat-1"), "chat-1") << "no salt: the id as given";
  EXPECT_EQ(TenantSessionId(l.Identify("a"), ""), "") << "no session stays none";
  const std::string a = TenantSessionId(l.Identify("a"), "chat-1");
  EXPECT_NE(a, TenantSessionId(l.Identify("b"), "chat-1"));
  EXPECT_EQ(a, TenantSessionId(l.Identify("a"), "chat-1"));
  EXPECT_TRUE(std::regex_match(a, std::regex("[0-9a-f]{32}/chat-1")));
}

TEST(TenantLabel, SameTenantComparesOwners) {
  const TenantLabeler l = Labeler();
  EXPECT_TRUE(SameTenant(l.Identify("a").owner, l.Identify("a").owner));
  EXPECT_FALSE(SameTenant(l.Identify("a").owner, l.Identify("b").owner));
  EXPECT_FALSE(SameTenant(l.Identify("a").owner, ""));
  EXPECT_TRUE(SameTenant("", ""));
}

}  // namespace
}  // namespace kvstack::server
