// KVSTACK_SKIP_MISSING(): for a test whose requirement the project installs
// itself (../shared models and goldens, promtool, chromium, redis-server,
// node and the npm packages). Outside CI it skips, with the reason streamed
// after it; under CI=true the same line is a fatal failure, because there a
// missing requirement is a broken setup, and a skip would read as a pass.
//
//   if (!exists(path)) KVSTACK_SKIP_MISSING() << path << " is absent (shared test assets)";
//
// Requirements the project cannot install (a tmpfs /dev/shm, a build without
// a component) keep GTEST_SKIP().
#pragma once

#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

namespace kvstack::test_support {

inline bool UnderCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::strcmp(ci, "true") == 0;
}

inline ::testing::TestPartResult::Type MissingRequirementResult() {
  return UnderCi() ? ::testing::TestPartResult::kFatalFailure : ::testing::TestPartResult::kSkip;
}

inline const char* MissingRequirementPrefix() {
  return UnderCi() ? "CI=true and a requirement the project installs is missing (scripts/install-deps, "
                     "scripts/install-node-deps, ../shared): "
                   : "";
}

}  // namespace kvstack::test_support

// Same shape as GTEST_SKIP(): returns from the test body; stream the reason.
#define KVSTACK_SKIP_MISSING()                                                                          \
  return ::testing::internal::AssertHelper(::kvstack::test_support::MissingRequirementResult(), __FILE__, \
                                           __LINE__, ::kvstack::test_support::MissingRequirementPrefix()) = \
             ::testing::Message()
