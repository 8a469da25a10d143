// Real Reactor on the Cortex-M port: sleeps in WFI, wakes only for SysTick; an Inbox
// fed from the TIMER0 interrupt delivers in order.
#include "minitest.hpp"
#include "tern/port/cortex_m.hpp"
#include "tern/reactor/reactor.hpp"

namespace tern::cortex_m::internal {
void forget_clock_for_tests();  // ports/cortex-m/backend.cpp
}

namespace {

// A board whose own startup code never started tern's clock, and whose bootloader left
// SysTick running with its own reload and no interrupt: the first Reactor's first clock
// read takes SysTick over, and a timer fires on time (before, the clock read jumped
// ahead by a wrapped counter and the loop slept with nothing to wake it).
TEST(CortexMReactor, ClockTakesOverASysTickLeftRunningByABootloader) {
  auto* const csr = reinterpret_cast<volatile std::uint32_t*>(0xE000E010);
  auto* const rvr = reinterpret_cast<volatile std::uint32_t*>(0xE000E014);
  auto* const cvr = reinterpret_cast<volatile std::uint32_t*>(0xE000E018);
  *csr = 0;
  *rvr = 0xFFFFFF;  // the bootloader's reload
  *cvr = 0;
  *csr = (1u << 2) | 1u;  // processor clock, enabled, no interrupt
  while (*cvr > 0xFFFFFF - 5000) {  // let it count down past tern's own reload
  }
  tern::cortex_m::internal::forget_clock_for_tests();
  const auto systicks0 = tern::cortex_m::systick_count();
  tern::Reactor reactor;
  int fired = 0;
  ASSERT_TRUE(reactor.after(tern::ms(5), [&] { ++fired; }).ok());
  for (int turn = 0; turn < 200 && fired == 0; ++turn) (void)reactor.run_once(tern::ms(10));
  EXPECT_EQ(fired, 1);
  const auto ticks = tern::cortex_m::systick_count() - systicks0;
  EXPECT_GE(ticks, 4u);
  EXPECT_LE(ticks, 20u);
}

TEST(CortexMReactor, IdleLoopSleepsInWfiAndOnlySysTickRuns) {
  tern::Reactor reactor;
  static int fired;
  fired = 0;
  auto far = reactor.after(tern::seconds(3600), [] { ++fired; });
  ASSERT_TRUE(far.ok());
  auto stop = reactor.after(tern::ms(300), [&reactor] { ++fired; reactor.stop(); });
  ASSERT_TRUE(stop.ok());
  const auto systicks0 = tern::cortex_m::systick_count();
  const auto wfis0 = tern::cortex_m::wfi_count();
  const auto irqs0 = tern::cortex_m::periodic_irq_count();
  reactor.run();
  const auto systicks = tern::cortex_m::systick_count() - systicks0;
  const auto wfis = tern::cortex_m::wfi_count() - wfis0;
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(tern::cortex_m::periodic_irq_count(), irqs0);  // nothing else interrupted
  // Every WFI was ended by a SysTick and every SysTick ended a WFI (a few more SysTicks may land while the loop runs).
  EXPECT_GE(wfis + 3, systicks);
  EXPECT_LE(wfis, systicks + 1);
  EXPECT_GE(systicks, 290u);
  EXPECT_LE(reactor.stats().turns, 3u) << "the loop polled: turns=" << reactor.stats().turns;
  std::printf("  300 ms idle: %lu SysTicks, %lu WFIs, %lu loop turns\n", (unsigned long)systicks,
              (unsigned long)wfis, (unsigned long)reactor.stats().turns);
}

// What the interrupt pushes: its sequence number and the SysTick count at the push, so
// the test can report how promptly items arrive (reported, not asserted: it is time).
struct Sample {
  std::uint32_t seq;
  std::uint32_t pushed_at_tick;
};
tern::Inbox<Sample, 16>* g_inbox = nullptr;
volatile std::uint32_t g_seq = 0;
void on_timer_irq() {
  g_seq = g_seq + 1;
  (void)g_inbox->push(Sample{g_seq, tern::cortex_m::systick_count()});
}

TEST(CortexMReactor, InboxFedFromTimerInterruptWakesTheLoopAndDeliversInOrder) {
  tern::Reactor reactor;
  struct Seen {
    std::uint32_t received = 0, last = 0, prompt = 0;
    bool in_order = true;
  } seen;
  tern::Inbox<Sample, 16> inbox(reactor, [s = &seen](Sample& v) {
    s->in_order = s->in_order && v.seq == s->last + 1;
    s->last = v.seq;
    ++s->received;
    // Delivered within two SysTicks of the push: the push woke the loop.
    if (tern::cortex_m::systick_count() - v.pushed_at_tick <= 2) ++s->prompt;
  });
  g_inbox = &inbox;
  g_seq = 0;
  // The only timer is the stop, 200 ms out: a push that did not wake the loop would
  // wait for it.
  auto stop = reactor.after(tern::ms(200), [&] { reactor.stop(); });
  ASSERT_TRUE(stop.ok());
  ASSERT_EQ(tern::cortex_m::start_periodic_irq(tern::ms(10), on_timer_irq), tern::Errc::ok);
  reactor.run();
  tern::cortex_m::stop_periodic_irq();
  reactor.run_until_idle();
  EXPECT_TRUE(seen.in_order);
  EXPECT_EQ(seen.received, g_seq);
  EXPECT_GE(seen.received, 2u);  // about 20 (10 ms apart for 200 ms); fewer under a slow emulator
  EXPECT_EQ(inbox.rejected(), 0u);
  // Each push woke the loop for a turn of its own: without the wake, every item waits
  // for the stop timer and the loop turns twice. (Counted in turns, not time, so a host
  // that stalls the emulator cannot fail it; only one that held back several
  // interrupts 10 ms apart, for most of them, could.)
  EXPECT_GE(2 * reactor.stats().turns, seen.received)
      << "turns " << reactor.stats().turns << " for " << seen.received << " items";
  std::printf("  200 ms: %lu items from TIMER0 (%lu within 2 ticks of the push), %lu loop turns\n",
              (unsigned long)seen.received, (unsigned long)seen.prompt,
              (unsigned long)reactor.stats().turns);
}

TEST(CortexMReactor, WatchIsUnsupported) {
  tern::Reactor reactor;
  auto w = reactor.watch(0, tern::kReadable, [](unsigned) {});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error(), tern::Errc::unsupported);
  EXPECT_EQ(reactor.stop_on_signals(), tern::Errc::unsupported);
}

}  // namespace
