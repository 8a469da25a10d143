// Not API: the Cortex-M port's per-reactor state, visible only so that a
// Reactor can be allocated statically. Use the functions in
// tern/port/cortex_m.hpp instead.
#pragma once

namespace tern {
class Reactor;
}

namespace tern::detail {

// Bare metal has no file descriptors; port::watch() always answers unsupported.
// One slot (not zero) so that a reactor's slot table is never a zero-length
// array and Reactor::watch() reaches port::watch() and reports `unsupported`,
// not `full`. A board port with its own network stack raises this to its socket
// count.
constexpr int kPortMaxWatches = 1;

// What a Reactor timer's callback may capture: one pointer (a `this`, or one variable
// by reference), which the timer holds in its own context word, so a reactor timer
// costs 32 bytes here. See Reactor::kTimerCaptureBytes.
constexpr unsigned kPortTimerCaptureBytes = sizeof(void*);
// Calls that interrupt handlers may leave in Reactor::inbox() at once.
constexpr unsigned kPortCallInboxCapacity = 8;
// What the other callbacks tern's tables hold may capture (ReplyCallback,
// AgentTimerCallback, Reactor::Callback, Reactor::IoCallback): one pointer,
// pointer-aligned, so each costs 12 bytes in its table entry.
constexpr unsigned kPortCallbackCaptureBytes = sizeof(void*);
constexpr unsigned kPortCallbackAlign = alignof(void*);

struct PortState {
  // Set by port::wake() (from an ISR or from the loop itself), cleared by
  // port::wait() when it returns because of it. A byte store is atomic on
  // Cortex-M, and wait() tests-and-clears it with interrupts masked.
  volatile bool wake_pending = false;
  Reactor* owner = nullptr;
};

}  // namespace tern::detail
