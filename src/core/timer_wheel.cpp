// Hierarchical timing wheel. Level L holds timers whose due tick first differs from the
// current tick in bit group L (6 bits a group), so a level-L slot always lies ahead of
// the current digit and needs no wrap-around logic. When the current tick reaches the
// start of an occupied slot's range, that slot cascades one or more levels down.
#include "tern/core/timer_wheel.hpp"

#include <bit>

#include "tern/core/errc.hpp"

namespace tern {

namespace {
constexpr std::uint64_t kSpanMask = (std::uint64_t{1} << TimerWheel::kSpanBits) - 1;
#if TERN_PORT_DUE_TICKS_32
// How far ahead arm() takes a deadline: as far as the 32 bits read as a signed distance.
constexpr std::uint64_t kArmTicksAhead = (std::uint64_t{1} << 31) - 1;
#endif
}

#if TERN_PORT_TIMER_LINKS_16
Timer::Timer() {
  if (!TimerWheel::can_hold(this)) panic("Timer outside the timer region (TimerWheel::can_hold)");
}

Timer::Timer(Callback cb, void* context) : Timer() {
  callback_ = cb;
  context_ = context;
}
#endif

Timer::~Timer() {
  if (armed()) panic("Timer destroyed while armed: cancel it first");
}

void Timer::set_callback(Callback cb, void* context) {
  if (armed()) panic("Timer::set_callback() while armed");
  callback_ = cb;
  context_ = context;
}

TimerWheel::TimerWheel(Instant start, Duration tick)
    : tick_us_(tick.us > 0 ? static_cast<std::uint64_t>(tick.us) : 1),
      current_(start.us > 0 ? static_cast<std::uint64_t>(start.us) / tick_us_ : 0) {}

TimerWheel::~TimerWheel() {
  if (count_ != 0) panic("TimerWheel destroyed with armed timers");
}

std::uint64_t TimerWheel::ticks_ceil(Instant t) const {
  if (t.us <= 0) return 0;
  auto us = static_cast<std::uint64_t>(t.us);
  // The default 1 ms tick divides by a constant, which compiles to a multiply.
  if (tick_us_ == 1000) return (us + 999) / 1000;
  return (us + tick_us_ - 1) / tick_us_;
}

#if TERN_PORT_DUE_TICKS_32
// The 32 bits kept are read as a signed distance from current_: an armed timer is due
// at most kArmTicksAhead ticks after it (arm() refuses farther), and one on the ready
// list at most that long before it once advance() returns (it re-stamps them; inside
// an advance() that leaps further, a callback reading such a timer's deadline() could
// see it ahead, though it still fires on the next advance()).
std::uint64_t TimerWheel::due_of(const Timer& t) const {
  const auto ahead = static_cast<std::int32_t>(t.due_ - static_cast<std::uint32_t>(current_));
  return current_ + static_cast<std::uint64_t>(std::int64_t{ahead});
}

bool TimerWheel::reaches(Instant deadline) const {
  return ticks_ceil(deadline) <= current_ + kMaxTicksAhead;  // current_ < 2^63 ticks
}

Instant TimerWheel::deadline(const Timer& t) const {
  return Instant(static_cast<std::int64_t>(due_of(t) * tick_us_));
}
#else
std::uint64_t TimerWheel::due_of(const Timer& t) const { return ticks_ceil(t.exact_deadline()); }

// ticks_ceil(t.exact_deadline()) <= tick, without the division.
bool TimerWheel::due_by(const Timer& t, std::uint64_t tick) const {
  const std::int64_t deadline = t.exact_deadline().us;
  return deadline <= 0 || static_cast<std::uint64_t>(deadline) <= tick * tick_us_;
}

Instant TimerWheel::deadline(const Timer& t) const { return t.exact_deadline(); }
#endif

#if TERN_PORT_TIMER_LINKS_16
// Links `t` at the front of `head`'s list (one of heads_).
void TimerWheel::link(Link& head, Timer& t) {
  const Link self = link_of(t);
  t.next_ = head;
  if (head) at(head)->prev_link_ = self;
  head = self;
  t.prev_link_ = static_cast<Link>(&head - heads_ + 1);
}

// A timer does not record where it is filed. When unlinking it empties a list, its back
// link named that list's head: if the head is a slot's, its occupancy bit goes.
void TimerWheel::unlink(Timer& t) {
  const Link prev = t.prev_link_;
  const Link next = t.next_;
  if (prev >= kFirstTimer) {
    at(prev)->next_ = next;
  } else {
    const unsigned index = prev - 1u;
    heads_[index] = next;
    if (!next && index < unsigned{kLevels} * kSlots) {
      occupied_[index / kSlots] &= ~(std::uint64_t{1} << (index % kSlots));
    }
  }
  if (next) at(next)->prev_link_ = prev;
#else
// Points t's back link at `at`.
void TimerWheel::point_back(Timer& t, Link* at) { t.prev_link_ = reinterpret_cast<std::uintptr_t>(at); }

// Links `t` at the front of `head`'s list (one of heads_).
void TimerWheel::link(Link& head, Timer& t) {
  t.next_ = head;
  if (head) point_back(*head, &t.next_);
  head = &t;
  point_back(t, &head);
}

// A timer does not record where it is filed. When unlinking it empties a list, its back
// link pointed at that list's head: if the head is a slot's, its occupancy bit goes.
void TimerWheel::unlink(Timer& t) {
  Link* const pprev = reinterpret_cast<Link*>(t.prev_link_);
  *pprev = t.next_;
  if (t.next_) {
    point_back(*t.next_, pprev);
  } else if (*pprev == nullptr) {
    const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(pprev) -
                              reinterpret_cast<std::uintptr_t>(&heads_[0]);
    const std::uintptr_t index = at / sizeof(Link);  // a huge number below heads_
    if (index < std::uintptr_t{kLevels} * kSlots) {
      occupied_[index / kSlots] &= ~(std::uint64_t{1} << (index % kSlots));
    }
  }
#endif
#if TERN_PORT_DUE_TICKS_32
  if (cache_valid_ && due_of(t) <= cached_next_) cache_valid_ = false;
#else
  if (cache_valid_ && due_by(t, cached_next_)) cache_valid_ = false;
#endif
  t.next_ = {};
  t.prev_link_ = 0;
}

// Files `t` by its due tick relative to current_. Timers due at or before current_ go to
// the ready list, except while cascading tick current_ itself, when they belong in the
// level-0 slot about to fire.
void TimerWheel::place(Timer& t, std::uint64_t due) {
  if (due <= current_) {
    link(heads_[kReady], t);
    return;
  }
  std::uint64_t diff = due ^ current_;
  int level = (63 - std::countl_zero(diff)) / kSlotBits;
  if (level >= kLevels) {
    link(heads_[kOverflow], t);
    return;
  }
  auto slot = static_cast<std::uint8_t>((due >> (kSlotBits * level)) & (kSlots - 1));
  link(slot_head(level, slot), t);
  occupied_[level] |= std::uint64_t{1} << slot;
}

void TimerWheel::arm(Timer& t, Instant deadline) {
  if (t.armed()) {
    unlink(t);
    --count_;
  }
  if (!t.callback_) panic("TimerWheel::arm() of a timer with no callback");
  std::uint64_t due = ticks_ceil(deadline);
#if TERN_PORT_DUE_TICKS_32
  if (due < current_) due = current_;  // passed: ready for the next advance()
  if (due - current_ > kArmTicksAhead) {
    panic("TimerWheel::arm(): deadline beyond the wheel's reach (see reaches())");
  }
  t.due_ = static_cast<std::uint32_t>(due);
  place(t, due);
  ++count_;
  if (cache_valid_ && due < cached_next_) cached_next_ = due;
#else
  // (Clamped only for the cache: host timer benchmarks measured ~6 % slower arming
  // with the clamp before place().)
  t.set_deadline(deadline);
  place(t, due);
  ++count_;
  if (cache_valid_) {
    if (due < current_) due = current_;
    if (due < cached_next_) cached_next_ = due;
  }
#endif
}

bool TimerWheel::cancel(Timer& t) {
  if (!t.armed()) return false;
  unlink(t);
  --count_;
  return true;
}

bool TimerWheel::next_event_after(std::uint64_t tick, std::uint64_t* event) const {
  for (int level = 0; level < kLevels; ++level) {
    int shift = kSlotBits * level;
    auto digit = static_cast<int>((tick >> shift) & (kSlots - 1));
    if (digit == kSlots - 1) continue;
    std::uint64_t ahead = occupied_[level] & (~std::uint64_t{0} << (digit + 1));
    if (ahead == 0) continue;
    // The lowest level with a slot ahead holds the earliest event: every higher level
    // lies beyond this level's current block.
    std::uint64_t block = (tick >> (shift + kSlotBits)) << (shift + kSlotBits);
    *event = block | (static_cast<std::uint64_t>(std::countr_zero(ahead)) << shift);
    return true;
  }
  if (heads_[kOverflow]) {
    *event = ((tick >> kSpanBits) + 1) << kSpanBits;
    return true;
  }
  return false;
}

// Re-files every timer of the slots whose range starts at `tick` (and the overflow list
// at a span boundary), top level first so each lands in a slot handled after it.
void TimerWheel::cascade_at(std::uint64_t tick) {
  auto refile = [this](Link& head) {
    Timer* list = at(head);
    head = {};
    // Slot lists are newest-first; re-file oldest-first to keep FIFO within a tick.
    Link reversed = {};
    while (list) {
      Timer* n = at(list->next_);
      list->next_ = reversed;
      reversed = link_of(*list);
      list = n;
    }
    while (reversed) {
      Timer* t = at(reversed);
      reversed = t->next_;
      std::uint64_t due = due_of(*t);
      if (due == current_) {
        auto slot = static_cast<std::uint8_t>(current_ & (kSlots - 1));
        link(slot_head(0, slot), *t);
        occupied_[0] |= std::uint64_t{1} << slot;
      } else {
        place(*t, due);
      }
    }
  };
  if (heads_[kOverflow] && (tick & kSpanMask) == 0) refile(heads_[kOverflow]);
  for (int level = kLevels - 1; level >= 1; --level) {
    int shift = kSlotBits * level;
    if ((tick & ((std::uint64_t{1} << shift) - 1)) != 0) continue;
    auto slot = static_cast<unsigned>((tick >> shift) & (kSlots - 1));
    if (!(occupied_[level] & (std::uint64_t{1} << slot))) continue;
    occupied_[level] &= ~(std::uint64_t{1} << slot);
    refile(slot_head(level, slot));
  }
}

// Moves `head`'s timers (newest-first) into the firing batch oldest-first, then runs
// them one at a time. A callback may cancel or re-arm any timer still in the batch.
void TimerWheel::fire_list(Link& head, std::size_t* fired) {
  Timer* list = at(head);
  head = {};
  Link& firing = heads_[kFiring];
  while (list) {
    Timer* n = at(list->next_);
    link(firing, *list);
    list = n;
  }
  while (firing) {
    Timer& t = *at(firing);
    const bool pooled = reinterpret_cast<std::uintptr_t>(&t) - pool_begin_ < pool_bytes_;
    unlink(t);
    --count_;
    ++*fired;
    const Timer::Callback cb = t.callback_;
    void* const context = t.context_;
    if (pooled) release_hook_(release_owner_, t);
    cb(context);  // may touch anything, t included
  }
}

std::size_t TimerWheel::advance(Instant now) {
  std::size_t fired = 0;
  std::uint64_t target = now.us > 0 ? static_cast<std::uint64_t>(now.us) / tick_us_ : 0;
  if (target < current_) target = current_;
  if (heads_[kReady]) fire_list(heads_[kReady], &fired);
  std::uint64_t event;
  while (next_event_after(current_, &event) && event <= target) {
    current_ = event;
    cascade_at(event);
    auto slot = static_cast<unsigned>(event & (kSlots - 1));
    if (occupied_[0] & (std::uint64_t{1} << slot)) {
      occupied_[0] &= ~(std::uint64_t{1} << slot);
      fire_list(slot_head(0, slot), &fired);
    }
  }
#if TERN_PORT_DUE_TICKS_32
  // A timer armed during this advance for a tick already passed waits on ready_ with
  // that tick. It takes the new one, so that due_of() reads it back however far this
  // advance leapt (it fires on the next advance() either way).
  for (Timer* t = at(heads_[kReady]); t; t = at(t->next_)) t->due_ = static_cast<std::uint32_t>(target);
#endif
  current_ = target;
  cache_valid_ = false;
  return fired;
}

Instant TimerWheel::next_expiry() {
  auto to_instant = [this](std::uint64_t tick) {
    return Instant(static_cast<std::int64_t>(tick * tick_us_));
  };
  if (heads_[kReady] || heads_[kFiring]) return to_instant(current_);
  if (cache_valid_) return to_instant(cached_next_);
  std::uint64_t next = 0;
  bool found = false;
  auto earliest_in = [&](const Timer* t) {
    if (!t) return;
#if TERN_PORT_DUE_TICKS_32
    next = due_of(*t);
    for (t = at(t->next_); t; t = at(t->next_)) {
      const std::uint64_t due = due_of(*t);
      if (due < next) next = due;
    }
#else
    // The due tick grows with the deadline: find the earliest deadline, divide once.
    Instant first = t->exact_deadline();
    for (t = at(t->next_); t; t = at(t->next_)) {
      if (t->exact_deadline() < first) first = t->exact_deadline();
    }
    next = ticks_ceil(first);
#endif
    found = true;
  };
  if (occupied_[0]) {
    next = (current_ & ~std::uint64_t{kSlots - 1}) |
           static_cast<std::uint64_t>(std::countr_zero(occupied_[0]));
    found = true;
  } else {
    for (int level = 1; level < kLevels && !found; ++level) {
      if (occupied_[level]) {
        earliest_in(at(slot_head(level, static_cast<unsigned>(std::countr_zero(occupied_[level])))));
      }
    }
    if (!found) earliest_in(at(heads_[kOverflow]));
  }
  if (!found) return Instant::never();
  cache_valid_ = true;
  cached_next_ = next;
  return to_instant(next);
}

}  // namespace tern
