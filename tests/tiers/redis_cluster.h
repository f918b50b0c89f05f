// RedisCluster: a real Redis Cluster for a test -- 3 masters and 3 replicas,
// each a redis-server on 127.0.0.1 at a port picked at run time, joined by
// `redis-cli --cluster create` and ready when every node says cluster_state:ok
// and agrees on the slot map. Nodes can be killed (SIGKILL) and slots
// resharded (`redis-cli --cluster reshard`) while a test runs. Everything is
// stopped, and its directories removed, when the object goes away.
#pragma once

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.h"

namespace kvstack::tier_test {

inline constexpr const char* kRedisCliBinary = "/usr/bin/redis-cli";

class RedisCluster {
 public:
  static bool Installed() { return RedisServerInstalled() && ::access(kRedisCliBinary, X_OK) == 0; }

  RedisCluster() {
    char tmpl[] = "/tmp/kvstack-redis-cluster-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
  }
  ~RedisCluster() {
    nodes_.clear();  // stops every server
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Starts 6 nodes and creates the cluster (1 replica per master). `error`
  // says what failed. A cluster that fails to form is torn down and formed
  // again on fresh ports, up to 3 times: a port picked free can be taken by
  // another test's process before a node binds it (or its bus port, +10000).
  bool Start(std::string* error) {
    std::string why;
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (StartOnce(&why)) return true;
      nodes_.clear();
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      std::filesystem::create_directories(dir_, ec);
    }
    return Fail(error, why + " (3 attempts)");
  }

 private:
  bool StartOnce(std::string* error) {
    if (dir_.empty()) return Fail(error, "no temporary directory");
    for (int i = 0; i < 6; ++i) {
      const std::string d = dir_ + "/node" + std::to_string(i);
      std::filesystem::create_directories(d);
      auto node = std::make_unique<RedisServer>(std::vector<std::string>{
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
          "--dir", d, "--logfile", d + "/log"});
      if (!node->Start()) return Fail(error, "redis-server (cluster mode) did not start");
      nodes_.push_back(std::move(node));
    }
    std::string cmd = std::string(kRedisCliBinary) + " --cluster create";
    for (const auto& n : nodes_) cmd += " 127.0.0.1:" + std::to_string(n->port());
    cmd += " --cluster-replicas 1 --cluster-yes > " + dir_ + "/create.log 2>&1";
    if (std::system(cmd.c_str()) != 0) return Fail(error, "redis-cli --cluster create failed: " + ReadFile("create.log"));
    if (!WaitReady(std::chrono::seconds(30))) return Fail(error, "the cluster never reached cluster_state:ok");
    if (!WaitReplicas(std::chrono::seconds(30))) return Fail(error, "the replicas never showed in CLUSTER SLOTS");
    return true;
  }

 public:

  // "127.0.0.1:p1,127.0.0.1:p2,..." (every node: any is a valid seed).
  std::string Seeds() const {
    std::string out;
    for (const auto& n : nodes_) {
      if (!out.empty()) out += ",";
      out += "127.0.0.1:" + std::to_string(n->port());
    }
    return out;
  }
  std::vector<int> Ports() const {
    std::vector<int> out;
    for (const auto& n : nodes_) out.push_back(n->port());
    return out;
  }
  RedisServer& node(size_t i) { return *nodes_[i]; }
  size_t size() const { return nodes_.size(); }

  // Port of the master serving `slot` now (asked of the first live node), or -1.
  int MasterOf(int slot) const {
    for (const auto& n : nodes_) {
      redisContext* c = n->Connect();
      if (c == nullptr || c->err != 0) {
        if (c != nullptr) redisFree(c);
        continue;
      }
      auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS"));
      int port = -1;
      if (r != nullptr && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; ++i) {
          const redisReply* e = r->element[i];
          if (e->element[0]->integer <= slot && slot <= e->element[1]->integer) {
            port = static_cast<int>(e->element[2]->element[1]->integer);
          }
        }
      }
      if (r != nullptr) freeReplyObject(r);
      redisFree(c);
      if (port > 0) return port;
    }
    return -1;
  }
  // Index of the node listening on `port`, or -1.
  int IndexOf(int port) const {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]->port() == port) return static_cast<int>(i);
    }
    return -1;
  }
  // The node id (CLUSTER MYID) of the node on `port`.
  std::string NodeId(int port) const {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
    std::string id;
    if (c != nullptr && c->err == 0) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER MYID"));
      if (r != nullptr && r->type == REDIS_REPLY_STRING) id.assign(r->str, r->len);
      if (r != nullptr) freeReplyObject(r);
    }
    if (c != nullptr) redisFree(c);
    return id;
  }

  // Moves `slots` slots from the master on `from_port` to the master on
  // `to_port` with redis-cli's reshard (keys migrate while clients run).
  // Blocks until done; false, with `error`, if it failed.
  bool Reshard(int from_port, int to_port, int slots, std::string* error) {
    const std::string cmd = std::string(kRedisCliBinary) + " --cluster reshard 127.0.0.1:" +
                            std::to_string(to_port) + " --cluster-from " + NodeId(from_port) + " --cluster-to " +
                            NodeId(to_port) + " --cluster-slots " + std::to_string(slots) +
                            " --cluster-yes --cluster-pipeline 10 > " + dir_ + "/reshard.log 2>&1";
    if (std::system(cmd.c_str()) != 0) return Fail(error, "redis-cli --cluster reshard failed: " + ReadFile("reshard.log"));
    return true;
  }

  // Waits until CLUSTER SLOTS (asked of the first node) lists a replica for
  // every slot range: replicas attach a moment after the cluster forms.
  bool WaitReplicas(std::chrono::seconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      redisContext* c = nodes_[0]->Connect();
      bool all = false;
      if (c != nullptr && c->err == 0) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS"));
        if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
          all = true;
          for (size_t i = 0; i < r->elements; ++i) all = all && r->element[i]->elements >= 4;
        }
        if (r != nullptr) freeReplyObject(r);
      }
      if (c != nullptr) redisFree(c);
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // Waits until every live node reports cluster_state:ok.
  bool WaitReady(std::chrono::seconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      bool all_ok = true;
      for (const auto& n : nodes_) {
        redisContext* c = n->Connect();
        if (c == nullptr || c->err != 0) {  // a killed node does not count
          if (c != nullptr) redisFree(c);
          continue;
        }
        auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER INFO"));
        const bool ok = r != nullptr && r->type == REDIS_REPLY_STRING &&
                        std::string(r->str, r->len).find("cluster_state:ok") != std::string::npos;
        if (r != nullptr) freeReplyObject(r);
        redisFree(c);
        all_ok = all_ok && ok;
      }
      if (all_ok) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  static bool Fail(std::string* error, const std::string& why) {
    if (error != nullptr) *error = why;
    return false;
  }
  std::string ReadFile(const std::string& name) const {
    std::string out;
    if (FILE* f = std::fopen((dir_ + "/" + name).c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
      std::fclose(f);
    }
    return out;
  }

  std::string dir_;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
};

}  // namespace kvstack::tier_test
