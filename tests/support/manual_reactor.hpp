// A Reactor on a ManualClock for tests: time moves only when a test says so, and
// run() does every turn that is due now without ever sleeping.
#pragma once

#include <cstddef>

#include "tern/core/time.hpp"
#include "tern/reactor/reactor.hpp"

namespace tern_test {

struct ManualReactor {
  tern::ManualClock clock;
  tern::Reactor reactor;

  static tern::ReactorConfig config(const tern::ManualClock& c, std::size_t timers, std::size_t posted) {
    tern::ReactorConfig rc;
    rc.manual_clock = &c;
    rc.max_timers = timers;
    rc.max_posted = posted;
    rc.max_watches = 1;
    return rc;
  }
  explicit ManualReactor(std::size_t timers = 4, std::size_t posted = 4)
      : reactor(config(clock, timers, posted)) {}
  void run() { reactor.run_until_idle(); }
  void advance(tern::Duration d) {
    clock.advance(d);
    run();
  }
  tern::Instant in(tern::Duration d) const { return clock.now() + d; }
};

}  // namespace tern_test
