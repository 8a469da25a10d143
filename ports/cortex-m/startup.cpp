// Reset and fault handling for tern on Cortex-M3 (mps2-an385 under qemu): the
// vector table, Reset_Handler (.data copy, .bss zeroing, clock start,
// constructors, main, exit), a fault reporter that prints through semihosting
// and exits non-zero, and the newlib hooks _sbrk (bounded heap) and _exit (exit
// status reaches the host). Memory layout: mps2-an385.ld. Output: semihosting
// (link with --specs=rdimon.specs).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "cortex_m_internal.hpp"
#include "tern/port/cortex_m.hpp"

namespace hw = tern::cortex_m::internal;
using hw::reg;

// From mps2-an385.ld.
extern "C" {
extern std::uint32_t __data_load[], __data_start[], __data_end[];
extern std::uint32_t __bss_start__[], __bss_end__[];
extern std::uint32_t __stack_guard[], __stack_limit[], __stack_top[];
extern char __heap_start[], __heap_end[];

// newlib / libgloss
void __libc_init_array();
void __libc_fini_array();
void initialise_monitor_handles();
// The program's main(), under another name: C++ forbids calling ::main.
int tern_cortex_m_main() asm("main");

[[noreturn]] void Reset_Handler();
void NMI_Handler();
void HardFault_Handler();
void MemManage_Handler();
void BusFault_Handler();
void UsageFault_Handler();
void Default_Handler();
void SysTick_Handler();  // backend.cpp
void TIMER0_Handler();   // backend.cpp
void* _sbrk(std::ptrdiff_t increment);
[[noreturn]] void _exit(int status);
}

namespace {

constexpr int kFaultExitStatus = 134;  // like a shell's "killed by SIGABRT"

// The stack grows down from __stack_top to __stack_limit (the start of RAM);
// the 64 KiB under it, __stack_guard, becomes a no-access MPU region, so an
// overflow faults at its first access (frames over 64 KiB could still jump it).
// PRIVDEFENA keeps the default memory map for everything else.
void arm_stack_guard() {
  const auto base = reinterpret_cast<std::uintptr_t>(__stack_guard);
  constexpr std::uint32_t kRegionValid = 1u << 4;  // RBAR.VALID; REGION = 0
  constexpr std::uint32_t kSize64K = 15u << 1;     // 2^(15+1) bytes
  constexpr std::uint32_t kNoAccess = 0u << 24;    // AP = 000
  constexpr std::uint32_t kExecuteNever = 1u << 28;
  constexpr std::uint32_t kRegionEnable = 1u;
  reg(hw::kMpuRbar) = static_cast<std::uint32_t>(base) | kRegionValid;
  reg(hw::kMpuRasr) = kExecuteNever | kNoAccess | kSize64K | kRegionEnable;
  reg(hw::kMpuCtrl) = (1u << 2) /* PRIVDEFENA */ | 1u /* ENABLE */;
  asm volatile("dsb\n\tisb" : : : "memory");
}

// Fault on integer division by zero (otherwise it silently yields 0) and give
// MemManage/BusFault/UsageFault their own vectors so the report names them.
void enable_fault_reporting() {
  reg(hw::kScbCcr) = reg(hw::kScbCcr) | (1u << 4) /* DIV_0_TRP */;
  reg(hw::kScbShcsr) = reg(hw::kScbShcsr) | (7u << 16);
  asm volatile("dsb\n\tisb" : : : "memory");
}

// The fault path uses nothing but semihosting: printf's state may be what
// broke.
void write_str(const char* s) { hw::semihost(hw::kSysWrite0, s); }

void write_hex(std::uint32_t v) {
  char buf[11] = {'0', 'x'};
  for (int i = 0; i < 8; ++i)
    buf[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 0xF];
  buf[10] = '\0';
  write_str(buf);
}

void write_dec(std::uint32_t v) {
  char buf[11];
  char* p = buf + sizeof buf;
  *--p = '\0';
  do *--p = static_cast<char>('0' + v % 10);
  while ((v /= 10) != 0);
  write_str(p);
}

const char* exception_name(std::uint32_t n) {
  switch (n) {
    case 2:
      return "NMI";
    case 3:
      return "HardFault";
    case 4:
      return "MemManage";
    case 5:
      return "BusFault";
    case 6:
      return "UsageFault";
    case 11:
      return "SVCall";
    case 12:
      return "DebugMonitor";
    case 14:
      return "PendSV";
    default:
      return n >= 16 ? "unexpected interrupt" : "unexpected exception";
  }
}

}  // namespace

// Vector table: initial stack pointer, then handlers. An entry is a union so
// the table is constant-initialised without casts (constinit refuses anything
// else).
union VectorEntry {
  const void* stack_top;
  void (*handler)();
};

// Declared apart so the definition can carry its attributes (external linkage,
// C name: the linker script names it).
extern "C" const VectorEntry tern_cortex_m_vectors[16 + 32];

[[gnu::section(".vectors"),
  gnu::used]] constinit const VectorEntry tern_cortex_m_vectors[16 + 32] = {
    {.stack_top = __stack_top},
    {.handler = Reset_Handler},
    {.handler = NMI_Handler},
    {.handler = HardFault_Handler},
    {.handler = MemManage_Handler},
    {.handler = BusFault_Handler},
    {.handler = UsageFault_Handler},
    {.handler = nullptr},
    {.handler = nullptr},
    {.handler = nullptr},
    {.handler = nullptr},
    {.handler = Default_Handler},  // SVCall
    {.handler = Default_Handler},  // DebugMonitor
    {.handler = nullptr},
    {.handler = Default_Handler},  // PendSV
    {.handler = SysTick_Handler},
    // External interrupts 0..31 (mps2-an385 has 32). 8 = TIMER0; 9 =
    // TIMER1, 10 = dual timer, 0..5 and 12 = UARTs, 13 = Ethernet: not used
    // here.
    {.handler = Default_Handler},  // 0
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = TIMER0_Handler},  // 8
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},  // 16
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},  // 24
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},
    {.handler = Default_Handler},  // 31
};

extern "C" void Reset_Handler() {
  // Nothing below may touch .data or .bss until they exist.
  const std::uint32_t* src = __data_load;
  for (std::uint32_t* dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (std::uint32_t* dst = __bss_start__; dst < __bss_end__;) *dst++ = 0;

  arm_stack_guard();
  enable_fault_reporting();
  hw::start_clock();
  initialise_monitor_handles();  // semihosting stdin/stdout/stderr for newlib
  __libc_init_array();           // constructors
  std::atexit(__libc_fini_array);
  std::exit(tern_cortex_m_main());
}

// Every fault and unexpected exception lands here, with r0 = the stacked frame
// and r1 = the exception number. The reporter normally runs on the current
// stack, below the frame it reads. After a stack overflow SP is at or in the
// guard, where the next push would fault again and lock the core up: then it
// first moves SP to the top of the stack.
extern "C" __attribute__((naked)) void HardFault_Handler() {
  asm volatile(
      "tst lr, #4\n\t"
      "ite eq\n\t"
      "mrseq r0, msp\n\t"
      "mrsne r0, psp\n\t"
      "mrs r1, ipsr\n\t"
      "ldr r2, =__stack_limit + 512\n\t"
      "cmp sp, r2\n\t"
      "bhs 1f\n\t"
      "ldr r2, =__stack_top\n\t"
      "mov sp, r2\n"
      "1:\n\t"
      "b tern_cortex_m_fault\n\t"
      ".ltorg");
}

extern "C" __attribute__((naked)) void NMI_Handler() {
  asm volatile("b HardFault_Handler");
}
extern "C" __attribute__((naked)) void MemManage_Handler() {
  asm volatile("b HardFault_Handler");
}
extern "C" __attribute__((naked)) void BusFault_Handler() {
  asm volatile("b HardFault_Handler");
}
extern "C" __attribute__((naked)) void UsageFault_Handler() {
  asm volatile("b HardFault_Handler");
}
extern "C" __attribute__((naked)) void Default_Handler() {
  asm volatile("b HardFault_Handler");
}

// Internal linkage, C name: only HardFault_Handler's asm refers to it.
extern "C" {
[[noreturn, gnu::used]] static void tern_cortex_m_fault(
    const std::uint32_t* frame, std::uint32_t ipsr) {
  const std::uint32_t exception = ipsr & 0x1FF;
  const std::uint32_t cfsr = reg(hw::kScbCfsr);
  write_str("\ntern: ");
  write_str(exception_name(exception));
  write_str(" (exception ");
  write_dec(exception);
  write_str(")");
  // The frame can only be read if it lies inside the stack proper.
  const auto f = reinterpret_cast<std::uintptr_t>(frame);
  if (f >= reinterpret_cast<std::uintptr_t>(__stack_limit) &&
      f + 32 <= reinterpret_cast<std::uintptr_t>(__stack_top)) {
    write_str(" pc=");
    write_hex(frame[6]);
    write_str(" lr=");
    write_hex(frame[5]);
  } else {
    write_str(" sp=");
    write_hex(static_cast<std::uint32_t>(f));
    write_str(" (outside the stack: overflow?)");
  }
  write_str(" cfsr=");
  write_hex(cfsr);
  write_str(" hfsr=");
  write_hex(reg(hw::kScbHfsr));
  if (cfsr & (1u << 7)) {  // MMARVALID
    write_str(" mmfar=");
    write_hex(reg(hw::kScbMmfar));
  }
  if (cfsr & (1u << 15)) {  // BFARVALID
    write_str(" bfar=");
    write_hex(reg(hw::kScbBfar));
  }
  write_str("\n");
  _exit(kFaultExitStatus);
}
}  // extern "C"

// abort() (tern::panic's default, a failed assert) ends like a fault, not like a
// program that returned 1: newlib's own abort() would exit 1, which a test runner
// reads as "some checks failed". Defined here, newlib's is never linked.
extern "C" void abort() { _exit(kFaultExitStatus); }

// newlib's exit() ends here. SYS_EXIT_EXTENDED carries the status to the host
// (qemu exits with it); plain AArch32 SYS_EXIT can only say "ok" or "error".
extern "C" void _exit(int status) {
  const std::uint32_t block[2] = {hw::kAdpStoppedApplicationExit,
                                  static_cast<std::uint32_t>(status)};
  hw::semihost(hw::kSysExitExtended, block);
  hw::semihost(hw::kSysExit,
               reinterpret_cast<const void*>(
                   status == 0 ? hw::kAdpStoppedApplicationExit
                               : hw::kAdpStoppedRunTimeErrorUnknown));
  for (;;) asm volatile("wfi");
}

namespace {
char* g_heap_end = __heap_start;
}

// newlib's malloc grows the heap here: from the end of .bss to the end of RAM.
extern "C" void* _sbrk(std::ptrdiff_t increment) {
  char* const previous = g_heap_end;
  if (increment > __heap_end - previous ||
      increment < __heap_start - previous) {
    errno = ENOMEM;
    return reinterpret_cast<void*>(-1);
  }
  g_heap_end = previous + increment;
  return previous;
}

std::size_t tern::cortex_m::heap_used() {
  return static_cast<std::size_t>(g_heap_end - __heap_start);
}
