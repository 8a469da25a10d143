// TimerWheel: hierarchical timing wheel (64 slots a level and a 64-bit occupancy bitmap
// per level; 6 levels on Linux, 4 on Cortex-M) with intrusive Timer nodes, so arming
// never allocates. arm() and cancel() are O(1); next_expiry() reads the bitmaps;
// advance(now) fires due timers in order.
//
//   struct Request { tern::Timer deadline{&on_deadline, this}; ... };
//   wheel.arm(req.deadline, now + tern::ms(500));
//   wheel.advance(clock.now());   // fires req.deadline's callback once it is due
//
// Resolution is one tick (default 1 ms): a timer fires at the first tick boundary at or
// after its deadline, never early. Timers due on the same tick fire in arming order.
// Deadlines beyond the wheel's span (2^36 ticks on Linux, 2^24 on Cortex-M) wait in an
// overflow list and still fire exactly. On Cortex-M a timer keeps its due tick in 32
// bits, so a deadline may lie at most about 2^31 ticks ahead (24.8 days at 1 ms):
// reaches() says whether one does, and arming a farther one is a contract violation.
// See examples/agents_bus for the wheel under a Reactor.
#pragma once

#include <cstdint>

#include "tern/core/time.hpp"
#include "tern/detail/port_state.hpp"

namespace tern {

class TimerWheel;

class Timer {
 public:
  using Callback = void (*)(void* context);

#if TERN_PORT_TIMER_LINKS_16
  // Constructing a timer where no wheel can hold it (TimerWheel::can_hold()) is a
  // contract violation (panic): a table that does not lie wholly in the port's timer
  // region stops the program as it is built, not when its last entry is first armed.
  Timer();
  Timer(Callback cb, void* context);
#else
  Timer() = default;
  Timer(Callback cb, void* context) : callback_(cb), context_(context) {}
#endif
  // Destroying an armed timer is a contract violation (panic): cancel it first.
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Sets what runs when the timer fires. Contract violation while armed.
  void set_callback(Callback cb, void* context);

  bool armed() const { return prev_link_ != 0; }
  // When it fires: TimerWheel::deadline(timer).
  // What set_callback() (or the constructor) gave.
  void* context() const { return context_; }

 private:
  friend class TimerWheel;
#if TERN_PORT_TIMER_LINKS_16
  // A timer's place in a wheel's lists, in 16 bits: 0 for none, 1 to kHeads for the
  // wheel's list heads, and from kFirstTimer on for a timer, by its address.
  using Link = std::uint16_t;
#else
  using Link = Timer*;
#endif

#if !TERN_PORT_DUE_TICKS_32
  Instant exact_deadline() const {
    return Instant(static_cast<std::int64_t>((std::uint64_t{deadline_hi_} << 32) | deadline_lo_));
  }
  void set_deadline(Instant d) {
    const auto bits = static_cast<std::uint64_t>(d.us);
    deadline_lo_ = static_cast<std::uint32_t>(bits);
    deadline_hi_ = static_cast<std::uint32_t>(bits >> 32);
  }
#endif

  // All used: 40 bytes on 64-bit targets, 24 on 32-bit ones, 16 on Cortex-M. The
  // timer's place is not stored: the wheel finds the slot a timer heads from its back
  // link (see TimerWheel::unlink).
  Link next_ = {};
#if TERN_PORT_TIMER_LINKS_16
  // The list head (1 to kHeads) or the previous timer (its Link) that links to this
  // one; 0 while not armed.
  Link prev_link_ = 0;
#else
  // The address of the Link that points at this node (a list head or the previous
  // node's next_); 0 while not armed.
  std::uintptr_t prev_link_ = 0;
#endif
#if TERN_PORT_DUE_TICKS_32
  // The due tick modulo 2^32. The wheel reads it against its current tick, which never
  // lies more than 2^31 - 1 ticks from it while the timer is armed.
  std::uint32_t due_ = 0;
#else
  // The deadline exactly, as two 32-bit halves (so a Timer is 4-byte aligned on 32-bit
  // targets); the wheel recomputes the due tick from it when it files the timer.
  std::uint32_t deadline_lo_ = 0;
  std::uint32_t deadline_hi_ = 0;
#endif
  Callback callback_ = nullptr;
  void* context_ = nullptr;
};

class TimerWheel {
 public:
  static constexpr int kLevels = detail::kPortWheelLevels;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;
  static constexpr int kSpanBits = kLevels * kSlotBits;  // 2^kSpanBits ticks
  // How far ahead of current() a deadline may lie, in ticks, as reaches() answers,
  // and whether deadline() gives back the deadline exactly (or the instant of its tick).
  // On Cortex-M arm() itself takes up to 2^31 - 1 ticks: reaches() keeps 2^20 ticks
  // (17 minutes at 1 ms) in hand, so that a delay it approved from now() can still be
  // armed a little later, when the clock has moved on from current() (a Retrier's next
  // try, a flush after max_delay).
#if TERN_PORT_TIMER_LINKS_16
  // Whether a Timer may lie at `timer`: anywhere, except on ports whose timers link to
  // each other in 16 bits (Cortex-M), where a link names a timer by its address in 4-byte
  // steps from detail::kPortTimerRegion, so a timer must lie in the 254 KiB from there.
  // Constructing a timer that does not is a contract violation (panic).
  static bool can_hold(const void* timer) {
    return (reinterpret_cast<std::uintptr_t>(timer) - detail::kPortTimerRegion) / 4 <=
           0xFFFFu - kFirstTimer;
  }
#else
  static bool can_hold(const void*) { return true; }
#endif
#if TERN_PORT_DUE_TICKS_32
  static constexpr std::uint64_t kMaxTicksAhead = (std::uint64_t{1} << 31) - (std::uint64_t{1} << 20);
  static constexpr bool kExactDeadlines = false;
#else
  static constexpr std::uint64_t kMaxTicksAhead = ~std::uint64_t{0};
  static constexpr bool kExactDeadlines = true;
#endif

  // `start` is the wheel's notion of now; `tick` its resolution (>= 1 us).
  explicit TimerWheel(Instant start = Instant(0), Duration tick = ms(1));
  // Destroying a wheel that holds timers is a contract violation (panic).
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms `t` to fire at `deadline` (re-arms it if already armed, here or in this
  // wheel's batch being fired). A deadline at or before the last advance() fires on the
  // next advance(). O(1), never allocates. Arming a timer armed in another wheel, or
  // for a deadline the wheel does not reach(), is a contract violation.
  void arm(Timer& t, Instant deadline);

  // Whether arm() takes `deadline`: always, except on ports that keep a timer's due
  // tick in 32 bits (Cortex-M), where this says yes up to kMaxTicksAhead ticks after
  // current(). tern's APIs that take a deadline or a delay ask this first and refuse
  // one too far ahead with Errc::invalid_argument.
#if TERN_PORT_DUE_TICKS_32
  bool reaches(Instant deadline) const;
#else
  bool reaches(Instant) const { return true; }
#endif
  // The same for the tables where Instant::never() means "no deadline" and arms no
  // timer (PendingTable, Batcher, Coalescer): never() is taken too.
  bool reaches_or_never(Instant deadline) const {
    return deadline == Instant::never() || reaches(deadline);
  }

  // When the armed timer `t` fires: the deadline given to arm(), or on ports that keep
  // a timer's due tick in 32 bits, the instant of that tick (the deadline rounded up
  // to the tick; for a deadline already passed, current() when it was armed, or after
  // an advance() that did not fire it yet, that advance's tick). Meaningful while `t`
  // is armed in this wheel, and in its own callback.
  Instant deadline(const Timer& t) const;

  // Not API (the Reactor's timer table, which sets the one hook of its wheel): when a
  // timer that lies in [pool_begin, pool_end) fires, the wheel hands it to the release
  // hook before running its callback, so the owner of that pool of timers can take it
  // back first (the callback may then reuse it). A cancelled timer is not handed over:
  // its owner takes it back itself.
  using ReleaseHook = void (*)(void* owner, Timer& t);
  void set_release_hook(ReleaseHook hook, void* owner, const void* pool_begin,
                        const void* pool_end) {
    release_hook_ = hook;
    release_owner_ = owner;
    pool_begin_ = reinterpret_cast<std::uintptr_t>(pool_begin);
    pool_bytes_ = reinterpret_cast<std::uintptr_t>(pool_end) - pool_begin_;
  }

  // Disarms `t`; returns false if it was not armed. O(1). Safe from any callback,
  // including t's own and for timers in the batch currently firing.
  bool cancel(Timer& t);

  // The earliest instant at which advance() will fire something (a tick boundary), or
  // Instant::never() when no timer is armed. Cheap: reads the occupancy bitmaps and, at
  // most once per change, walks the one slot that holds the earliest timers.
  Instant next_expiry();

  // Fires every timer due at or before `now` (deadline rounded up to the tick), in due
  // order, FIFO within a tick. Callbacks may arm, re-arm and cancel any timer; a timer
  // armed during advance() for a tick already passed fires on the next advance().
  // Returns the number of callbacks run. `now` earlier than the last advance is ignored.
  std::size_t advance(Instant now);

  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  Duration tick() const { return Duration(tick_us_); }
  // Tick boundary of the last advance().
  Instant current() const { return Instant(static_cast<std::int64_t>(current_ * tick_us_)); }

 private:
  using Link = Timer::Link;
  // Every list head in one array: the slots level by level, then these three.
  static constexpr int kReady = kLevels * kSlots;  // armed for a tick already processed
  static constexpr int kOverflow = kReady + 1;     // beyond 2^kSpanBits ticks from current_
  static constexpr int kFiring = kReady + 2;       // detached batch being fired
  static constexpr int kHeads = kReady + 3;
#if TERN_PORT_TIMER_LINKS_16
  static constexpr unsigned kFirstTimer = 512;  // above 1 + kHeads
  static_assert(kHeads < static_cast<int>(kFirstTimer));
  static constexpr std::uintptr_t kTimerCodeOrigin = detail::kPortTimerRegion - 4 * kFirstTimer;
  static_assert(detail::kPortTimerRegion % 4 == 0 && alignof(Timer) >= 4,
                "a link names a timer in 4-byte steps");
  static Timer* at(Link l) {
    return l ? reinterpret_cast<Timer*>(kTimerCodeOrigin + std::uintptr_t{l} * 4) : nullptr;
  }
  static Link link_of(Timer& t) {
    return static_cast<Link>((reinterpret_cast<std::uintptr_t>(&t) - kTimerCodeOrigin) / 4);
  }
#else
  static Timer* at(Link l) { return l; }
  static Link link_of(Timer& t) { return &t; }
  static void point_back(Timer& t, Link* at);
#endif
  Link& slot_head(int level, unsigned slot) { return heads_[level * kSlots + static_cast<int>(slot)]; }
  void place(Timer& t, std::uint64_t due);
  void link(Link& head, Timer& t);
  void unlink(Timer& t);
  void cascade_at(std::uint64_t tick);
  bool next_event_after(std::uint64_t tick, std::uint64_t* event) const;
  void fire_list(Link& head, std::size_t* fired);
  std::uint64_t ticks_ceil(Instant t) const;
  std::uint64_t due_of(const Timer& t) const;
#if !TERN_PORT_DUE_TICKS_32
  bool due_by(const Timer& t, std::uint64_t tick) const;
#endif

  std::uint64_t tick_us_;
  std::uint64_t current_;  // last processed tick: everything due at or before it has fired
  std::size_t count_ = 0;
  std::uint64_t occupied_[kLevels] = {};
  Link heads_[kHeads] = {};
  bool cache_valid_ = false;
  std::uint64_t cached_next_ = 0;
  ReleaseHook release_hook_ = nullptr;
  void* release_owner_ = nullptr;
  std::uintptr_t pool_begin_ = 0;
  std::uintptr_t pool_bytes_ = 0;  // 0: no pool
};

}  // namespace tern
