// Not API: the Cortex-M port's per-reactor state, visible only so that a
// Reactor can be allocated statically. Use the functions in
// tern/port/cortex_m.hpp instead.
#pragma once

#include <cstdint>

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

// Calls that interrupt handlers may leave in Reactor::inbox() at once.
constexpr unsigned kPortCallInboxCapacity = 8;
// What a callback one of tern's tables holds may capture (Reactor timers, posted and
// watch calls, ReplyCallback, AgentTimerCallback): one pointer (a `this`, or one
// variable by reference), pointer-aligned. A reactor timer holds it in its own context
// word (20 bytes an entry); the others are 8-byte InplaceFunctions.
constexpr unsigned kPortCallbackCaptureBytes = sizeof(void*);
constexpr unsigned kPortCallbackAlign = alignof(void*);
// Levels of the timer wheel: 2^24 ticks (4.7 hours at the 1 ms SysTick) before a
// deadline waits on the overflow list, which is re-filed once per 2^24 ticks (the
// deadline still fires exactly); a level is 136 bytes.
constexpr int kPortWheelLevels = 4;
// The longest topic name (and wildcard prefix) a Runtime keeps: each of its topics
// holds this many bytes and one more.
constexpr unsigned kPortTopicNameMax = 15;
// Message::value: 32 bits here (a queued message is 24 bytes, not 28); a wider argument
// travels in a payload.
using PortMessageValue = std::int32_t;
// tern::Count, what every counter and statistic counts in: 32 bits here (they wrap
// after 2^32 events). An agent's restart intensity looks at its last 4 restarts at most
// (AgentOptions::kMaxRestarts).
using PortCount = std::uint32_t;
constexpr std::uint8_t kPortMaxRestarts = 4;
// A Timer keeps its due tick in 32 bits (4 bytes less than a deadline), so a deadline may
// lie at most about 2^31 ticks ahead of the wheel's current tick: 24.8 days at the 1 ms
// SysTick. TimerWheel::reaches() says whether one does (up to kMaxTicksAhead, 2^31 -
// 2^20 ticks); the APIs that take a deadline refuse a farther one with
// Errc::invalid_argument.
#define TERN_PORT_DUE_TICKS_32 1
// A Timer links to the next and the previous one in 16 bits (16 bytes a timer, not 20;
// a wheel's list heads 2 bytes each, not 4): each names a timer by its address, in 4-byte
// steps from kPortTimerRegion, so every Timer must lie in the 254 KiB from there
// (TimerWheel::can_hold(); constructing one outside is a contract violation). A
// board whose RAM starts elsewhere sets this to the start of the RAM that holds tern's
// tables, its statics and its stack.
#define TERN_PORT_TIMER_LINKS_16 1
constexpr std::uintptr_t kPortTimerRegion = 0x20000000;

struct PortState {
  // Set by port::wake() (from an ISR or from the loop itself), cleared by
  // port::wait() when it returns because of it. A byte store is atomic on
  // Cortex-M, and wait() tests-and-clears it with interrupts masked.
  volatile bool wake_pending = false;
  Reactor* owner = nullptr;
};

}  // namespace tern::detail
