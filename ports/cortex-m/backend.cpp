// The Cortex-M port backend: SysTick clock, WFI idle, flag wake-up; no fds, no
// signals. Implements src/reactor/port.hpp. Interrupt handlers keep the CMSIS
// names (SysTick_Handler, TIMER0_Handler) so a board's own vector table finds
// them.
#include <cstdint>

#include "cortex_m_internal.hpp"
#include "reactor/port.hpp"
#include "tern/port/cortex_m.hpp"

namespace tern {
namespace {

using cortex_m::internal::irq_restore;
using cortex_m::internal::irq_save;
using cortex_m::internal::reg;
namespace hw = cortex_m::internal;

constexpr std::uint32_t kCyclesPerUs =
    cortex_m::kCpuHz / 1000000u;  // whole MHz: asserted
constexpr std::uint32_t kCyclesPerTick = kCyclesPerUs * cortex_m::kTickUs;
constexpr std::uint32_t kSysTickReload =
    kCyclesPerTick - 1;  // counts reload..0

// CMSDK APB timer 0 (ARM DDI 0479, 4.4) and its NVIC line on mps2-an385.
constexpr std::uintptr_t kTimer0 = 0x40000000;
constexpr std::uintptr_t kTimerCtrl = kTimer0 + 0x0;
constexpr std::uintptr_t kTimerValue = kTimer0 + 0x4;
constexpr std::uintptr_t kTimerReload = kTimer0 + 0x8;
constexpr std::uintptr_t kTimerIntClear = kTimer0 + 0xC;
constexpr std::uint32_t kTimerEnable = 1u << 0;
constexpr std::uint32_t kTimerIrqEnable = 1u << 3;
constexpr std::uint32_t kTimer0Irq = 8;

// Written only by SysTick_Handler; read with interrupts masked (64-bit).
volatile std::uint64_t g_ticks = 0;
volatile std::uint32_t g_systick_count = 0;
volatile std::uint32_t g_wfi_count = 0;
volatile std::uint32_t g_periodic_count = 0;
bool g_clock_started = false;  // SysTick programmed by start_clock()
void (*volatile g_periodic_handler)() = nullptr;

}  // namespace

namespace cortex_m::internal {

// Programs SysTick once, whatever state it is in: after reset its counter is UNKNOWN,
// and a bootloader may have left it running with another reload (and a tick of its
// pending, which would count a millisecond that never passed).
void start_clock() {
  if (g_clock_started) return;
  reg(kSysTickCsr) = 0;
  reg(hw::kScbIcsr) = hw::kIcsrPendStClr;
  reg(kSysTickRvr) = kSysTickReload;
  reg(kSysTickCvr) = 0;  // any write clears it: the first tick is a whole one
  reg(kSysTickCsr) = kSysTickCpuClock | kSysTickTickInt | kSysTickEnable;
  g_clock_started = true;
}

void forget_clock_for_tests() { g_clock_started = false; }

}  // namespace cortex_m::internal

namespace port {

Errc init(detail::PortState& s, Reactor& owner) {
  cortex_m::internal::start_clock();
  s.owner = &owner;
  s.wake_pending = false;
  return Errc::ok;
}

void destroy(detail::PortState& s) { s.owner = nullptr; }

// Ticks plus the fraction of the current tick from SysTick's down-counter.
// The wrap race: if the counter has reloaded but SysTick_Handler has not run
// yet (interrupts masked, or we are between the two reads), g_ticks is one
// short; PENDSTSET tells us, and then the counter is re-read so it is from
// after the reload. Interrupts masked for more than one whole tick lose ticks
// (the pending bit counts only one), so time runs slow but never backwards.
Instant clock_now() {
  // A Reactor reads the clock (for its wheel) before port::init(): on a board with its
  // own startup code, that first read is what starts SysTick.
  if (!g_clock_started) [[unlikely]] cortex_m::internal::start_clock();
  const std::uint32_t primask = irq_save();
  std::uint64_t ticks = g_ticks;
  std::uint32_t counter = reg(hw::kSysTickCvr);
  if (reg(hw::kScbIcsr) & hw::kIcsrPendStSet) {
    counter = reg(hw::kSysTickCvr);
    ++ticks;
  }
  irq_restore(primask);
  if (counter > kSysTickReload) counter = kSysTickReload;  // never more than a tick
  const std::uint32_t into_tick =
      kSysTickReload - counter;  // cycles, 0..reload
  return Instant(static_cast<std::int64_t>(ticks * cortex_m::kTickUs +
                                           into_tick / kCyclesPerUs));
}

// WFI wakes on any pending interrupt even with PRIMASK set; the handler runs
// only after cpsie. So the flag and the deadline are tested with interrupts
// masked, and an interrupt arriving after the test still ends the WFI: no lost
// wake-up. Sleeping is in whole ticks: SysTick is what ends a WFI when nothing
// else does. The deadline counts from the reactor's own clock reading: counted from a
// later one it would fall just after the tick boundary the reactor computed, and the
// SysTick at that boundary would find it not yet reached and sleep one tick more.
void wait(detail::PortState& s, Instant start, Duration timeout) {
  if (timeout.us == 0) {
    s.wake_pending = false;  // the caller drains its inbox right after this
    return;
  }
  const bool bounded = timeout.us > 0;
  const Instant deadline = bounded ? start + timeout : Instant::never();
  for (;;) {
    asm volatile("cpsid i" : : : "memory");
    if (s.wake_pending) {
      s.wake_pending = false;
      asm volatile("cpsie i" : : : "memory");
      return;
    }
    if (bounded && clock_now() >= deadline) {
      asm volatile("cpsie i" : : : "memory");
      return;
    }
    g_wfi_count = g_wfi_count + 1;
    asm volatile("dsb\n\twfi" : : : "memory");
    asm volatile("cpsie i\n\tisb"
                 :
                 :
                 : "memory");  // the pending handler runs here
  }
}

void wake(detail::PortState& s) { s.wake_pending = true; }

Errc watch(detail::PortState&, int, int, unsigned) { return Errc::unsupported; }

void unwatch(detail::PortState&, int) {}

Errc stop_on_signals(detail::PortState&) { return Errc::unsupported; }

}  // namespace port

namespace cortex_m {

Errc start_periodic_irq(Duration period, void (*handler)()) {
  if (handler == nullptr || period.us <= 0) return Errc::invalid_argument;
  if (std::uint64_t(period.us) > 0x100000000ull / kCyclesPerUs) return Errc::invalid_argument;
  const std::uint64_t cycles = std::uint64_t(period.us) * kCyclesPerUs;
  if (cycles > 0x100000000ull) return Errc::invalid_argument;
  stop_periodic_irq();
  g_periodic_handler = handler;
  const auto reload = static_cast<std::uint32_t>(cycles - 1);
  reg(kTimerReload) = reload;
  reg(kTimerValue) = reload;
  reg(kTimerCtrl) = kTimerEnable | kTimerIrqEnable;
  reg(hw::kNvicIser) = 1u << kTimer0Irq;
  return Errc::ok;
}

void stop_periodic_irq() {
  reg(hw::kNvicIcer) = 1u << kTimer0Irq;
  reg(kTimerCtrl) = 0;
  reg(kTimerIntClear) = 1;
  reg(hw::kNvicIcpr) = 1u << kTimer0Irq;
  asm volatile("dsb\n\tisb" : : : "memory");  // no handler runs after we return
}

std::uint32_t systick_count() { return g_systick_count; }
std::uint32_t wfi_count() { return g_wfi_count; }
std::uint32_t periodic_irq_count() { return g_periodic_count; }

}  // namespace cortex_m
}  // namespace tern

extern "C" void SysTick_Handler() {
  tern::g_ticks = tern::g_ticks + 1;
  tern::g_systick_count = tern::g_systick_count + 1;
}

extern "C" void TIMER0_Handler() {
  // Acknowledge first, so a period that ends while a slow handler runs is not
  // lost.
  tern::cortex_m::internal::reg(tern::kTimerIntClear) = 1;
  tern::g_periodic_count = tern::g_periodic_count + 1;
  if (auto* handler = tern::g_periodic_handler) handler();
}
