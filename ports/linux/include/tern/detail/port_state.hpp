// Not API: the Linux port's per-reactor state, visible only so that a Reactor can be
// allocated statically. Fields change without notice.
#pragma once

#include <cstddef>
#include <cstdint>

struct event_base;
struct event;

namespace tern {
class Reactor;
}

namespace tern::detail {

inline constexpr int kPortMaxWatches = 1024;
// Calls other threads may leave in Reactor::inbox() at once.
inline constexpr unsigned kPortCallInboxCapacity = 32;
// What a callback one of tern's tables holds may capture (Reactor timers, posted and
// watch calls, ReplyCallback, AgentTimerCallback).
inline constexpr unsigned kPortCallbackCaptureBytes = 4 * sizeof(void*);
inline constexpr unsigned kPortCallbackAlign = alignof(std::max_align_t);
// Levels of the timer wheel: 2^36 ticks (2.2 years at 1 ms, 19 hours at 1 us) before a
// deadline waits on the overflow list.
inline constexpr int kPortWheelLevels = 6;
// The longest topic name (and wildcard prefix) a Runtime keeps.
inline constexpr unsigned kPortTopicNameMax = 31;
// Message::value.
using PortMessageValue = std::int64_t;
// tern::Count, what every counter and statistic counts in; the most restarts an
// agent's restart intensity looks at.
using PortCount = std::uint64_t;
inline constexpr std::uint8_t kPortMaxRestarts = 8;

struct PortWatch {
  struct PortState* state = nullptr;
  struct event* ev = nullptr;
  int slot = -1;
  int fd = -1;
  unsigned events = 0;
};

struct PortState {
  Reactor* owner = nullptr;
  event_base* base = nullptr;
  event* timer = nullptr;       // re-armed to the wheel's next expiry before each wait
  event* wake_event = nullptr;  // reads the eventfd
  event* signals[2] = {nullptr, nullptr};
  int wake_fd = -1;
  int watch_count = 0;
  PortWatch* watches = nullptr;
};

}  // namespace tern::detail
