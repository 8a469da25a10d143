// Private to the Cortex-M port: core registers, interrupt masking and
// semihosting, shared by startup.cpp and backend.cpp.
#pragma once

#include <cstdint>

namespace tern::cortex_m::internal {

inline volatile std::uint32_t& reg(std::uintptr_t address) {
  return *reinterpret_cast<volatile std::uint32_t*>(address);
}

// System control space (ARMv7-M ARM, B3.2).
inline constexpr std::uintptr_t kSysTickCsr = 0xE000E010;  // control and status
inline constexpr std::uintptr_t kSysTickRvr = 0xE000E014;  // reload value
inline constexpr std::uintptr_t kSysTickCvr = 0xE000E018;  // current value
inline constexpr std::uintptr_t kNvicIser = 0xE000E100;  // set-enable, IRQ 0-31
inline constexpr std::uintptr_t kNvicIcer = 0xE000E180;  // clear-enable
inline constexpr std::uintptr_t kNvicIcpr = 0xE000E280;  // clear-pending
inline constexpr std::uintptr_t kScbIcsr = 0xE000ED04;
inline constexpr std::uintptr_t kScbCcr = 0xE000ED14;
inline constexpr std::uintptr_t kScbShcsr = 0xE000ED24;
inline constexpr std::uintptr_t kScbCfsr = 0xE000ED28;
inline constexpr std::uintptr_t kScbHfsr = 0xE000ED2C;
inline constexpr std::uintptr_t kScbMmfar = 0xE000ED34;
inline constexpr std::uintptr_t kScbBfar = 0xE000ED38;
inline constexpr std::uintptr_t kMpuCtrl = 0xE000ED94;
inline constexpr std::uintptr_t kMpuRbar = 0xE000ED9C;
inline constexpr std::uintptr_t kMpuRasr = 0xE000EDA0;

inline constexpr std::uint32_t kSysTickEnable = 1u << 0;
inline constexpr std::uint32_t kSysTickTickInt = 1u << 1;
inline constexpr std::uint32_t kSysTickCpuClock = 1u << 2;
inline constexpr std::uint32_t kIcsrPendStSet = 1u << 26;
inline constexpr std::uint32_t kIcsrPendStClr = 1u << 25;  // write 1: forget a pending SysTick

// Masks interrupts and returns the previous PRIMASK, for irq_restore().
inline std::uint32_t irq_save() {
  std::uint32_t primask;
  asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
  return primask;
}

inline void irq_restore(std::uint32_t primask) {
  asm volatile("msr primask, %0" : : "r"(primask) : "memory");
}

// Arm semihosting (the debugger, here qemu, services `bkpt 0xab`).
inline constexpr int kSysWrite0 = 0x04;  // write a NUL-terminated string
inline constexpr int kSysExit = 0x18;
inline constexpr int kSysExitExtended =
    0x20;  // AArch32 exit with a status code
inline constexpr std::uint32_t kAdpStoppedApplicationExit = 0x20026;
inline constexpr std::uint32_t kAdpStoppedRunTimeErrorUnknown = 0x20024;

inline int semihost(int op, const void* arg) {
  register int r0 asm("r0") = op;
  register const void* r1 asm("r1") = arg;
  asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

// Defined in backend.cpp; startup.cpp calls it before constructors so that
// clock_now() counts from reset. The first clock_now() and port::init() call it
// too (it runs once), for boards that bring their own startup code.
void start_clock();
// Tests only: makes the next clock_now() program SysTick again, as on a board whose
// startup code did not (tests/cortex_m/reactor_cm_test.cpp).
void forget_clock_for_tests();

}  // namespace tern::cortex_m::internal
