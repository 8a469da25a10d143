// Reactor: the single-threaded run loop. Timers ride on a TimerWheel, posted calls run on
// the next turn, file descriptors are watched through the port backend, and Inboxes let
// other threads and interrupt handlers in. It sleeps until the wheel's next expiry, I/O
// or a wake — never polls.
//
//   tern::Reactor reactor(tern::ReactorConfig{});
//   auto t = reactor.after(tern::ms(500), [&] { reactor.stop(); });
//   reactor.run();
//
// Capacities come from ReactorConfig, allocated once at construction (from the heap, or
// from an Arena the config names); nothing allocates afterwards. See examples/agents_bus
// for a reactor under a Runtime.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "tern/core/arena.hpp"
#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/ring.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern/detail/port_state.hpp"
#include "tern/detail/startup_array.hpp"
#include "tern/reactor/inbox.hpp"

namespace tern {

// Interest and readiness bits for watch().
enum IoEvents : unsigned { kReadable = 1u, kWritable = 2u };

struct ReactorConfig {
  std::size_t max_timers = 256;   // after()/at() entries live at once
  std::size_t max_posted = 256;   // post() calls waiting for the next turn
  std::size_t max_watches = 32;   // watched fds at once (<= detail::kPortMaxWatches)
  Duration tick = ms(1);          // timer resolution
  // When set, now() reads this clock and waits never block (tests, simulation).
  const ManualClock* manual_clock = nullptr;
  // When set, the tables above come from this arena instead of the heap; it must hold
  // Reactor::arena_bytes(config) more bytes (else a start-up panic) and outlive the
  // Reactor. The port's own state is not in it (libevent allocates on Linux; the
  // Cortex-M port allocates nothing).
  Arena* arena = nullptr;
};

struct ReactorStats {
  Count turns = 0;          // run_once() calls
  Count waits = 0;          // times the loop blocked in the port (could sleep)
  Count polls = 0;          // turns that asked the port for I/O (waits included)
  Count timers_fired = 0;
  Count posted_run = 0;
  Count inbox_items = 0;
  Count io_events = 0;
  Count rejected = 0;       // after/at/post/watch refused with Errc::full
};

class Reactor;

namespace detail {
// Not API: how a port reports that watch slot `slot` is ready (kReadable|kWritable).
void reactor_io_ready(Reactor& r, int slot, unsigned events);
}  // namespace detail

// Names one after()/at() timer. A handle whose timer already fired or was cancelled is
// stale: cancel() on it returns false and touches nothing.
class TimerHandle {
 public:
  TimerHandle() = default;
  // Cancels the timer if it is still pending; true if it was.
  bool cancel();
  bool pending() const;
  explicit operator bool() const { return reactor_ != nullptr; }

 private:
  friend class Reactor;
  TimerHandle(Reactor* r, std::uint32_t index, std::uint32_t generation)
      : reactor_(r), index_(index), generation_(generation) {}
  Reactor* reactor_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint32_t generation_ = 0;
};

// Names one watch(). Stale after unwatch(), like TimerHandle.
struct WatchHandle {
  std::uint32_t index = 0xFFFFFFFFu;
  std::uint32_t generation = 0;
};

class Reactor {
 public:
  // What a posted call, an inbox call or a watch callback may capture: 4 pointers on
  // Linux, one pointer (pointer-aligned) on the Cortex-M port.
  static constexpr std::size_t kCallbackBytes = detail::kPortCallbackCaptureBytes;
  using Callback = InplaceFunction<void(), kCallbackBytes, detail::kPortCallbackAlign>;
  using IoCallback =
      InplaceFunction<void(unsigned events), kCallbackBytes, detail::kPortCallbackAlign>;
  // What an after()/at() callback may capture, trivially copyable: the same bound (one
  // pointer on the Cortex-M port, where a reactor timer costs 24 bytes).
  static constexpr std::size_t kTimerCaptureBytes = kCallbackBytes;
  // Bounds on how long a busy loop may go without polling for I/O (see run_once).
  static constexpr std::uint32_t kMaxBusyTurnsWithoutPoll = 32;
  static constexpr Duration kMaxPollGap = us(100);
  // Capacity of the built-in inbox for calls from other threads or interrupts: 32 on
  // Linux, 8 on the Cortex-M port.
  static constexpr std::size_t kCallInboxCapacity = detail::kPortCallInboxCapacity;
  using CallInbox = Inbox<Callback, kCallInboxCapacity, 2 * sizeof(void*)>;

  // Allocates every table from `config` (the only allocation the reactor makes) and
  // starts the port backend. A port that cannot start is a contract violation (panic):
  // it means the device is misconfigured, not that outside input was bad.
  explicit Reactor(const ReactorConfig& config = ReactorConfig{});
  // Exactly what a Reactor with `config` takes from ReactorConfig::arena.
  static constexpr std::size_t arena_bytes(const ReactorConfig& config);
  // Cancels every timer and watch (their callbacks do not run) and drops posted calls.
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Runs turns until stop(). Returns immediately if stop() was called before.
  void run();
  // One turn: wait up to `max_wait` (less if a timer is due sooner; 0 with a manual
  // clock or when calls are posted) for I/O or a wake, then fire due timers, run the
  // calls posted before this turn and drain the inboxes. A turn that starts with work
  // already due does not poll for I/O (a system call), so a busy loop stays fast; I/O
  // is still polled at least every kMaxBusyTurnsWithoutPoll turns and kMaxPollGap of
  // the clock. Returns callbacks run.
  std::size_t run_once(Duration max_wait = Duration::max());
  // Runs turns that do not wait while anything is runnable now; for tests with a
  // ManualClock. Returns callbacks run.
  std::size_t run_until_idle();
  // Asks run() to return after the current turn. Safe from any callback; from another
  // thread or a signal, use inbox() or stop_on_signals().
  void stop();
  bool stopping() const { return stop_requested_; }
  // True while run_once() runs, so inside any callback it calls: code that would run
  // the loop itself (a shutdown's grace period) must not from there.
  bool in_turn() const { return in_turn_; }

  Instant now() const;
  const ReactorConfig& config() const { return config_; }
  const ReactorStats& stats() const { return stats_; }
  TimerWheel& wheel() { return wheel_; }

  // Runs `cb()` once at `deadline` (at the first tick at or after it). `cb` is a
  // function pointer or a lambda whose capture is trivially copyable (pointers, plain
  // values) and at most kTimerCaptureBytes; anything else is a compile error. The timer
  // holds a copy: a capture of one pointer (pointer-aligned) lives in the timer itself,
  // a wider one (where the port allows it) beside it.
  // Errors: full (max_timers pending; counted), invalid_argument (null function pointer,
  // or on Cortex-M a deadline the wheel does not reach, about 24.8 days ahead at 1 ms:
  // see TimerWheel::reaches()).
  template <typename F>
  Result<TimerHandle> at(Instant deadline, F&& cb);
  // Runs `cb()` once after `delay` from now().
  template <typename F>
  Result<TimerHandle> after(Duration delay, F&& cb) {
    return at(now() + delay, std::forward<F>(cb));
  }

  // Runs `cb` on the next turn, after calls posted earlier (FIFO).
  // Errors: full (max_posted waiting; counted), invalid_argument (empty cb).
  Errc post(Callback cb);

  // Calls `cb(events)` whenever `fd` is ready for any of `events` (kReadable|kWritable).
  // Errors: full (max_watches in use), invalid_argument (fd < 0, no events, empty cb),
  // unsupported (this port has no file descriptors), io.
  Result<WatchHandle> watch(int fd, unsigned events, IoCallback cb);
  // Changes what a watch waits for. Errors: not_found (stale handle), invalid_argument.
  Errc modify(WatchHandle h, unsigned events);
  // Stops a watch; its callback never runs again, even later in the same turn. Safe
  // from inside that callback. Errors: not_found (stale handle).
  Errc unwatch(WatchHandle h);

  // Calls to run on this reactor's thread, pushed from another thread
  // (reactor.inbox().push(cb)); delivered in order, Errc::full when
  // kCallInboxCapacity wait.
  CallInbox& inbox() { return call_inbox_; }

  // Makes SIGINT and SIGTERM stop the loop gracefully (Linux port).
  // Errors: unsupported on ports without signals, io.
  Errc stop_on_signals();

  // Thread- and interrupt-safe: makes a blocked wait return promptly.
  void wake();

  // Not API: the port backend's state, for port-specific layers (net/ on Linux).
  detail::PortState& port_state() { return port_; }

 private:
  friend class TimerHandle;
  friend class InboxBase;
  friend void detail::reactor_io_ready(Reactor&, int, unsigned);

  // A capture of up to a pointer travels in the Timer's context word; a larger one (on
  // ports that allow it) in `capture`, with the context pointing at it. While the entry
  // is free, the context word holds the index of the next free entry.
  static constexpr std::size_t kExtraCaptureBytes =
      kTimerCaptureBytes > sizeof(void*) ? kTimerCaptureBytes : 0;
  struct CaptureBytes {
    alignas(std::max_align_t) unsigned char bytes[kExtraCaptureBytes > 0 ? kExtraCaptureBytes : 1];
  };
  struct NoCaptureBytes {};
  static void* bytes_of(CaptureBytes& c) { return c.bytes; }
  static void* bytes_of(NoCaptureBytes&) { return nullptr; }
  using CaptureSpace =
      std::conditional_t<(kExtraCaptureBytes > 0), CaptureBytes, NoCaptureBytes>;
  struct TimerEntry {
    Timer timer;  // 16 B on Cortex-M, 24 on other 32-bit targets, 40 on 64-bit; + 4 generation
    std::uint32_t generation = 1;
    [[no_unique_address]] CaptureSpace capture;
  };
  template <typename D>
  static constexpr bool kCaptureInContext =
      sizeof(D) <= sizeof(void*) && alignof(D) <= alignof(void*);
  template <typename D>
  static constexpr bool kCaptureFits =
      kCaptureInContext<D> ||
      (sizeof(D) <= kExtraCaptureBytes && alignof(D) <= alignof(std::max_align_t));
  // Runs the capture a timer holds, from a copy: the callback may reuse its entry.
  template <typename D>
  static void fire(void* context) {
    alignas(D) unsigned char copy[sizeof(D)];
    const void* held = kCaptureInContext<D> ? static_cast<const void*>(&context) : context;
    std::memcpy(copy, held, sizeof(D));
    (*std::launder(reinterpret_cast<D*>(copy)))();
  }
  Result<TimerHandle> start_timer(Instant deadline, Timer::Callback fire, const void* capture,
                                  std::size_t size);
  static void retire_timer(void* reactor, Timer& t);
  void free_timer(std::uint32_t index);
  struct WatchEntry {
    IoCallback cb;
    int fd = -1;
    unsigned events = 0;
    std::uint32_t generation = 1;
    bool active = false;
    bool closing = false;  // unwatched inside its own callback: freed after it returns
  };

  bool cancel_timer(std::uint32_t index, std::uint32_t generation);
  bool timer_pending(std::uint32_t index, std::uint32_t generation) const;
  void io_ready(int slot, unsigned events);
  void release_watch(WatchEntry& w);
  WatchEntry* find_watch(WatchHandle h);
  void attach(InboxBase& inbox);
  void detach(InboxBase& inbox);
  void inbox_notified();
  std::size_t drain_inboxes();
  std::size_t run_posted();
  std::size_t run_due(Instant t);
  bool runnable_now() const;

  struct PostedCell {  // storage for one posted Callback, constructed by the ring
    alignas(Callback) unsigned char bytes[sizeof(Callback)];
  };
  // The config with its sizes as the tables get them (the order arena_bytes() follows).
  static constexpr ReactorConfig sized(ReactorConfig c) {
    if (c.max_watches > static_cast<std::size_t>(detail::kPortMaxWatches)) {
      c.max_watches = static_cast<std::size_t>(detail::kPortMaxWatches);
    }
    if (c.max_posted == 0) c.max_posted = 1;
    return c;
  }

  ReactorConfig config_;
  ReactorStats stats_;
  TimerWheel wheel_;
  detail::StartupArray<TimerEntry> timers_;
  std::uint32_t free_timer_ = 0;
  detail::StartupArray<PostedCell> posted_storage_;
  RingBuffer<Callback> posted_;
  detail::StartupArray<WatchEntry> watches_;
  int dispatching_watch_ = -1;
  InboxBase* inboxes_ = nullptr;
  std::atomic<bool> inbox_pending_{false};
  bool stop_requested_ = false;
  bool in_turn_ = false;
  std::uint32_t busy_turns_ = 0;  // consecutive busy turns that skipped the I/O poll
  Instant last_poll_;             // start of the last turn that polled
  detail::PortState port_;
  CallInbox call_inbox_;
};

template <typename F>
Result<TimerHandle> Reactor::at(Instant deadline, F&& cb) {
  using D = std::decay_t<F>;
  if constexpr (std::is_null_pointer_v<D>) {
    return Errc::invalid_argument;
  } else {
    static_assert(std::is_invocable_v<D&>, "a timer callback is called with no arguments");
    static_assert(std::is_trivially_copyable_v<D> && std::is_trivially_destructible_v<D>,
                  "a timer callback must be trivially copyable: capture pointers and plain "
                  "values (not an InplaceFunction or an object that owns something)");
    static_assert(kCaptureFits<D>,
                  "timer callback capture too large for this port: see "
                  "Reactor::kTimerCaptureBytes (one pointer on Cortex-M: capture `this`)");
    const D held(std::forward<F>(cb));  // a function decays to its pointer here
    if constexpr (std::is_pointer_v<D>) {
      if (held == nullptr) return Errc::invalid_argument;
    }
    return start_timer(deadline, &Reactor::fire<D>, &held, sizeof(D));
  }
}

constexpr std::size_t Reactor::arena_bytes(const ReactorConfig& config) {
  ReactorConfig c = sized(config);
  std::size_t used = detail::StartupArray<TimerEntry>::arena_step(0, c.max_timers);
  used = detail::StartupArray<PostedCell>::arena_step(used, c.max_posted);
  return detail::startup_total(detail::StartupArray<WatchEntry>::arena_step(used, c.max_watches));
}

}  // namespace tern
