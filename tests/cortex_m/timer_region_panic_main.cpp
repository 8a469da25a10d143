// On the Cortex-M port a Timer names its neighbours in 16 bits, so every Timer must lie
// in the 254 KiB from detail::kPortTimerRegion (TimerWheel::can_hold()). Constructing
// one beyond it is a contract violation: the program stops right there with tern's
// panic (status 134) and its message. tests/cortex_m/meson.build checks both.
#include <cstdio>
#include <new>

#include "tern/core/timer_wheel.hpp"

int main() {
  // 1 MiB into mps2-an385's 4 MiB of RAM: RAM nothing else uses here, past the window.
  void* far = reinterpret_cast<void*>(tern::detail::kPortTimerRegion + 0x100000);
  if (tern::TimerWheel::can_hold(far)) return 1;
  new (far) tern::Timer();
  std::puts("a Timer outside the timer region was constructed");
  return 0;
}
