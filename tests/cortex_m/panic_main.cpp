// A contract violation on the Cortex-M port: tern::panic() prints its message and the
// program ends with status 134, like a fault, so a runner cannot take it for a test
// program whose checks failed (status 1). tests/cortex_m/meson.build asserts the status.
#include "tern/core/errc.hpp"

int main() {
  tern::panic("cortex_m panic test: expected");
  return 0;  // not reached
}
