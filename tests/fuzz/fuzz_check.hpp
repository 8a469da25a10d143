// What every fuzz target calls when an invariant does not hold: it names the invariant
// and aborts, which libFuzzer reports as a crash (with the input that caused it).
#pragma once

#include <cstdio>
#include <cstdlib>

#ifndef TERN_FUZZ_TARGET
#error "define TERN_FUZZ_TARGET (the target's name, for the message) before including fuzz_check.hpp"
#endif

[[noreturn]] inline void violated(const char* what) {
  std::fprintf(stderr, TERN_FUZZ_TARGET ": invariant violated: %s\n", what);
  std::abort();
}

#define CHECK(cond)               \
  do {                            \
    if (!(cond)) violated(#cond); \
  } while (0)
