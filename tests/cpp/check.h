// A minimal test harness: CHECK records failures, finish() prints "N passed, N failed".
#pragma once

#include <cmath>
#include <cstdio>

namespace check {
inline int& passed() {
  static int n = 0;
  return n;
}
inline int& failed() {
  static int n = 0;
  return n;
}
inline void record(bool ok, const char* expr, const char* file, int line) {
  if (ok) {
    ++passed();
  } else {
    ++failed();
    std::printf("FAILED %s:%d: %s\n", file, line, expr);
  }
}
inline int finish(const char* suite) {
  std::printf("%s: %d passed, %d failed\n", suite, passed(), failed());
  return failed() == 0 ? 0 : 1;
}
}  // namespace check

#define CHECK(expr) ::check::record(static_cast<bool>(expr), #expr, __FILE__, __LINE__)
#define CHECK_NEAR(a, b, tol) ::check::record(std::fabs((a) - (b)) <= (tol), #a " ~= " #b, __FILE__, __LINE__)
