// Aborting checks, for broken invariants only (never for bad input, which is a
// Status). The message names the object and the values involved, e.g.
//   KVSTACK_CHECK(m.ref_count > 0, "block %d: release with ref_count 0", id);
#pragma once

#include <cstdio>
#include <cstdlib>

#define KVSTACK_CHECK(cond, ...)                                              \
  do {                                                                        \
    if (!(cond)) [[unlikely]] {                                               \
      std::fprintf(stderr, "kvstack invariant broken at %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                                      \
      std::fputc('\n', stderr);                                               \
      std::abort();                                                           \
    }                                                                         \
  } while (0)
