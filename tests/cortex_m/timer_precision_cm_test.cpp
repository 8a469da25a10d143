// A timer the loop sleeps until fires at its tick boundary, not one tick later. Run
// under qemu with -icount (tests/cortex_m/meson.build): virtual time then follows the
// instructions executed and WFI skips straight to the next interrupt, as on a real M3,
// and the same program always sees the same times, so the check is deterministic.
// (Without -icount, qemu's ~100 us wake from WFI hides the fault this guards against:
// the port counted the sleep from a later clock reading than the reactor's, so the
// SysTick at the boundary found the deadline not yet reached and slept a tick more.)
#include "minitest.hpp"
#include "tern/port/cortex_m.hpp"
#include "tern/reactor/reactor.hpp"

namespace {

struct Fired {
  tern::Reactor* reactor = nullptr;
  tern::Instant at;
  bool done = false;
};

TEST(CortexMTimerPrecision, ATimerFiresWithinItsTickWhenTheLoopSleptUntilIt) {
  tern::Reactor reactor;
  for (std::int64_t delay_ms : {3, 20, 100, 700}) {
    // A deadline on a tick boundary: the wheel fires it at that boundary exactly.
    const tern::Instant now = reactor.now();
    const tern::Instant deadline((now.us / 1000 + delay_ms) * 1000);
    Fired fired;
    fired.reactor = &reactor;
    ASSERT_TRUE(reactor.at(deadline, [f = &fired] {  // one pointer: what fits on Cortex-M
      f->at = f->reactor->now();
      f->done = true;
    }).ok());
    const auto wfis0 = tern::cortex_m::wfi_count();
    for (int turn = 0; turn < 50 && !fired.done; ++turn) (void)reactor.run_once(tern::seconds(2));
    ASSERT_TRUE(fired.done);
    EXPECT_GT(tern::cortex_m::wfi_count(), wfis0);  // it slept
    const tern::Duration late = fired.at - deadline;
    std::printf("  %lld ms: fired %lld us after its deadline\n", static_cast<long long>(delay_ms),
                static_cast<long long>(late.us));
    EXPECT_GE(late.us, 0);
    EXPECT_LT(late.us, 1000);  // within the tick; one tick late is the fault
  }
}

}  // namespace
