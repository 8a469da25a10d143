// Cortex-M port extras: the SysTick clock's settings and counters, and one
// periodic hardware interrupt (not SysTick) for feeding a Reactor's Inbox from
// an ISR.
//
//   void on_sample() {                          // runs in interrupt context
//     (void)sensor_inbox.push(read_sensor());   // lock-free; wakes the reactor
//   }
//   Errc e = tern::cortex_m::start_periodic_irq(tern::ms(10), on_sample);
//
// examples/cortex_m shows it in full; ports/cortex-m/README.md explains the
// clock.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tern/core/errc.hpp"
#include "tern/core/time.hpp"

// The core clock feeding SysTick and the APB timers, in Hz. mps2-an385: 25 MHz.
// Define it (and TERN_CORTEX_M_TICK_US) for every translation unit, e.g. in the
// build's cpp_args, if your board differs.
#ifndef TERN_CORTEX_M_CPU_HZ
#define TERN_CORTEX_M_CPU_HZ 25000000u
#endif
// SysTick period in microseconds: the clock's resolution between ticks is
// sub-tick (read from SysTick's counter), but port::wait() sleeps in whole
// ticks.
#ifndef TERN_CORTEX_M_TICK_US
#define TERN_CORTEX_M_TICK_US 1000u
#endif

namespace tern::cortex_m {

inline constexpr std::uint32_t kCpuHz = TERN_CORTEX_M_CPU_HZ;
inline constexpr std::uint32_t kTickUs = TERN_CORTEX_M_TICK_US;
inline constexpr Duration kTick = Duration(kTickUs);

static_assert(kCpuHz % 1000000u == 0,
              "TERN_CORTEX_M_CPU_HZ must be a whole MHz");
static_assert(kTickUs > 0 &&
                  std::uint64_t{kCpuHz / 1000000u} * kTickUs - 1 <= 0xFFFFFFu,
              "SysTick reload is 24 bits: the tick is too long for this clock");

// Starts a hardware timer interrupt (CMSDK APB TIMER0, IRQ 8 on mps2-an385)
// that calls `handler` every `period`, in interrupt context, until
// stop_periodic_irq(). A second call replaces the period and handler. The
// handler must be ISR-safe: it may push to an Inbox (which wakes the reactor)
// and nothing else of tern's. Errors: invalid_argument (null handler, period <=
// 0, or longer than the 32-bit timer holds: about 171 s at 25 MHz).
[[nodiscard]] Errc start_periodic_irq(Duration period, void (*handler)());

// Stops the periodic interrupt and discards one already pending. Idempotent.
void stop_periodic_irq();

// Counters since reset, for tests that prove the loop sleeps. 32-bit, wrapping.
std::uint32_t systick_count();       // SysTick interrupts taken
std::uint32_t wfi_count();           // times port::wait() executed WFI
std::uint32_t periodic_irq_count();  // periodic-timer interrupts taken

// Bytes newlib has taken from the heap via _sbrk (never shrinks). Only
// meaningful with this port's startup.cpp; expected to stay flat after init.
std::size_t heap_used();

}  // namespace tern::cortex_m
