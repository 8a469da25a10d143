#include "tern/reactor/reactor.hpp"

#include <cstdint>
#include <cstring>
#include <new>

#include "reactor/port.hpp"
#include "tern/detail/scoped_value.hpp"

namespace tern {

namespace {
constexpr const char* kShortOfMemory =
    "Reactor: out of memory at start-up (reduce ReactorConfig capacities, or give the arena "
    "Reactor::arena_bytes(config))";
}  // namespace

// ---- inbox plumbing ----

InboxBase::InboxBase(Reactor& reactor) : reactor_(reactor) { reactor_.attach(*this); }
InboxBase::~InboxBase() { reactor_.detach(*this); }
void InboxBase::notify() { reactor_.inbox_notified(); }

void Reactor::attach(InboxBase& inbox) {
  inbox.next_ = inboxes_;
  inboxes_ = &inbox;
}

void Reactor::detach(InboxBase& inbox) {
  for (InboxBase** p = &inboxes_; *p; p = &(*p)->next_) {
    if (*p == &inbox) {
      *p = inbox.next_;
      return;
    }
  }
}

void Reactor::inbox_notified() {
  inbox_pending_.store(true, std::memory_order_release);
  port::wake(port_);
}

void Reactor::wake() { port::wake(port_); }

std::size_t Reactor::drain_inboxes() {
  if (!inbox_pending_.exchange(false, std::memory_order_acq_rel)) return 0;
  std::size_t n = 0;
  for (InboxBase* in = inboxes_; in; in = in->next_) n += in->drain();
  stats_.inbox_items += n;
  return n;
}

// ---- construction ----

Reactor::Reactor(const ReactorConfig& config)
    : config_(sized(config)),
      wheel_(config.manual_clock ? config.manual_clock->now() : port::clock_now(), config.tick),
      timers_(config_.max_timers, config_.arena, kShortOfMemory),
      posted_storage_(config_.max_posted, config_.arena, kShortOfMemory),
      posted_(posted_storage_.get(), config_.max_posted),
      watches_(config_.max_watches, config_.arena, kShortOfMemory),
      call_inbox_(*this, [](Callback& cb) { cb(); }) {
  detail::startup_finish(config_.arena);
  free_timer_ = static_cast<std::uint32_t>(config_.max_timers);  // the list's end
  for (std::size_t i = config_.max_timers; i-- > 0;) free_timer(static_cast<std::uint32_t>(i));
  wheel_.set_release_hook(&Reactor::retire_timer, this, timers_.get(),
                          timers_.get() + config_.max_timers);
  if (port::init(port_, *this) != Errc::ok) panic("Reactor: the port backend failed to start");
}

Reactor::~Reactor() {
  for (std::size_t i = 0; i < config_.max_timers; ++i) wheel_.cancel(timers_[i].timer);
  for (std::size_t i = 0; i < config_.max_watches; ++i) {
    if (watches_[i].active) port::unwatch(port_, static_cast<int>(i));
  }
  port::destroy(port_);
}

Instant Reactor::now() const {
  return config_.manual_clock ? config_.manual_clock->now() : port::clock_now();
}

// ---- timers ----

// A free entry's timer holds no callback, and its context word the next free index.
void Reactor::free_timer(std::uint32_t index) {
  timers_[index].timer.set_callback(nullptr, reinterpret_cast<void*>(std::uintptr_t{free_timer_}));
  free_timer_ = index;
}

Result<TimerHandle> Reactor::start_timer(Instant deadline, Timer::Callback fire,
                                         const void* capture, std::size_t size) {
  if (!wheel_.reaches(deadline)) return Errc::invalid_argument;
  if (free_timer_ >= config_.max_timers) {
    ++stats_.rejected;
    return Errc::full;
  }
  std::uint32_t index = free_timer_;
  TimerEntry& e = timers_[index];
  free_timer_ = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(e.timer.context()));
  void* context = nullptr;
  if (size <= sizeof(void*)) {
    std::memcpy(&context, capture, size);
  } else if (void* room = bytes_of(e.capture)) {
    // Only on ports with room for it: at() refuses a wider capture at compile time.
    std::memcpy(room, capture, size);
    context = room;
  }
  e.timer.set_callback(fire, context);
  wheel_.arm(e.timer, deadline);
  return TimerHandle(this, index, e.generation);
}

// The wheel calls this as an entry's timer fires, before its callback (which the wheel
// has copied out, with its context): the entry is free again and its handle stale, so
// the callback may arm timers, even in this entry.
void Reactor::retire_timer(void* reactor, Timer& t) {
  Reactor& r = *static_cast<Reactor*>(reactor);
  auto& e = *reinterpret_cast<TimerEntry*>(&t);
  ++e.generation;
  r.free_timer(static_cast<std::uint32_t>(&e - r.timers_.get()));
  ++r.stats_.timers_fired;
}

bool Reactor::timer_pending(std::uint32_t index, std::uint32_t generation) const {
  return index < config_.max_timers && timers_[index].generation == generation &&
         timers_[index].timer.armed();
}

bool Reactor::cancel_timer(std::uint32_t index, std::uint32_t generation) {
  if (!timer_pending(index, generation)) return false;
  TimerEntry& e = timers_[index];
  wheel_.cancel(e.timer);
  ++e.generation;
  free_timer(index);
  return true;
}

bool TimerHandle::cancel() { return reactor_ && reactor_->cancel_timer(index_, generation_); }
bool TimerHandle::pending() const { return reactor_ && reactor_->timer_pending(index_, generation_); }

// ---- posted calls ----

Errc Reactor::post(Callback cb) {
  if (!cb) return Errc::invalid_argument;
  Errc e = posted_.push(std::move(cb));
  if (e == Errc::full) ++stats_.rejected;
  return e;
}

std::size_t Reactor::run_posted() {
  // Only the calls queued before this turn: a call that posts again runs next turn.
  std::size_t n = posted_.size();
  for (std::size_t i = 0; i < n; ++i) {
    Result<Callback> cb = posted_.pop();
    if (!cb) break;
    (*cb)();
  }
  stats_.posted_run += n;
  return n;
}

// ---- watches ----

Reactor::WatchEntry* Reactor::find_watch(WatchHandle h) {
  if (h.index >= config_.max_watches) return nullptr;
  WatchEntry& w = watches_[h.index];
  return (w.active && !w.closing && w.generation == h.generation) ? &w : nullptr;
}

Result<WatchHandle> Reactor::watch(int fd, unsigned events, IoCallback cb) {
  if (fd < 0 || (events & (kReadable | kWritable)) == 0 || !cb) return Errc::invalid_argument;
  for (std::size_t i = 0; i < config_.max_watches; ++i) {
    WatchEntry& w = watches_[i];
    if (w.active) continue;
    Errc e = port::watch(port_, static_cast<int>(i), fd, events);
    if (e != Errc::ok) return e;
    w.cb = std::move(cb);
    w.fd = fd;
    w.events = events;
    w.active = true;
    w.closing = false;
    return WatchHandle{static_cast<std::uint32_t>(i), w.generation};
  }
  ++stats_.rejected;
  return Errc::full;
}

Errc Reactor::modify(WatchHandle h, unsigned events) {
  WatchEntry* w = find_watch(h);
  if (!w) return Errc::not_found;
  if ((events & (kReadable | kWritable)) == 0) return Errc::invalid_argument;
  if (events == w->events) return Errc::ok;
  Errc e = port::watch(port_, static_cast<int>(h.index), w->fd, events);
  if (e == Errc::ok) w->events = events;
  return e;
}

void Reactor::release_watch(WatchEntry& w) {
  w.cb = nullptr;
  w.active = false;
  w.closing = false;
  w.fd = -1;
  ++w.generation;
}

Errc Reactor::unwatch(WatchHandle h) {
  WatchEntry* w = find_watch(h);
  if (!w) return Errc::not_found;
  port::unwatch(port_, static_cast<int>(h.index));
  if (dispatching_watch_ == static_cast<int>(h.index)) {
    w->closing = true;  // its callback is running: free it once it returns
  } else {
    release_watch(*w);
  }
  return Errc::ok;
}

void detail::reactor_io_ready(Reactor& r, int slot, unsigned events) { r.io_ready(slot, events); }

void Reactor::io_ready(int slot, unsigned events) {
  if (slot < 0 || static_cast<std::size_t>(slot) >= config_.max_watches) return;
  WatchEntry& w = watches_[slot];
  if (!w.active || w.closing) return;  // unwatched earlier in this turn
  ++stats_.io_events;
  int outer = dispatching_watch_;
  dispatching_watch_ = slot;
  w.cb(events & w.events);
  dispatching_watch_ = outer;
  if (w.closing) release_watch(w);
}

Errc Reactor::stop_on_signals() { return port::stop_on_signals(port_); }

// ---- the loop ----

void Reactor::stop() {
  // Called on the loop's own thread (a callback): run() checks the flag after this
  // turn, so no wake-up is needed — one here would end the next wait for nothing.
  stop_requested_ = true;
}

std::size_t Reactor::run_due(Instant t) {
  std::size_t n = wheel_.advance(t);
  n += run_posted();
  n += drain_inboxes();
  return n;
}

bool Reactor::runnable_now() const {
  return !posted_.empty() || inbox_pending_.load(std::memory_order_acquire);
}

std::size_t Reactor::run_once(Duration max_wait) {
  detail::ScopedValue<bool> in_turn(in_turn_, true);
  ++stats_.turns;
  const Count io_before = stats_.io_events;
  const Instant start = now();
  Duration timeout = max_wait;
  bool busy = runnable_now();  // work is due now (a pending stop() is not work)
  if (!busy) {
    Instant next = wheel_.next_expiry();
    if (next != Instant::never()) {
      Duration until = next - start;
      if (until < timeout) timeout = until;
      busy = until <= Duration::zero();
    }
  }
  if (busy || stop_requested_ || config_.manual_clock || timeout < Duration::zero()) {
    timeout = Duration::zero();
  }
  // A turn with work already due skips asking the OS for I/O, since that poll is a
  // system call (microseconds here) while the work may take nanoseconds. I/O still gets
  // its turn: at least every kMaxBusyTurnsWithoutPoll turns and every kMaxPollGap.
  if (busy && busy_turns_ + 1 < kMaxBusyTurnsWithoutPoll && start - last_poll_ < kMaxPollGap) {
    ++busy_turns_;
    return run_due(start);
  }
  busy_turns_ = 0;
  last_poll_ = start;
  ++stats_.polls;
  if (timeout > Duration::zero()) ++stats_.waits;
  port::wait(port_, start, timeout >= Duration::max() ? Duration(-1) : timeout);
  std::size_t n = static_cast<std::size_t>(static_cast<Count>(stats_.io_events - io_before));
  return n + run_due(timeout > Duration::zero() ? now() : start);
}

std::size_t Reactor::run_until_idle() {
  std::size_t total = 0;
  for (int guard = 0; guard < 1000000; ++guard) {
    const Count polls = stats_.polls;
    std::size_t n = run_once(Duration::zero());
    total += n;
    bool timer_due = wheel_.next_expiry() <= now();
    // Idle only after a turn that asked the port for I/O: a busy turn may have skipped it.
    if (n == 0 && !runnable_now() && !timer_due && stats_.polls != polls) break;
  }
  return total;
}

void Reactor::run() {
  while (!stop_requested_) run_once();
  stop_requested_ = false;
}

}  // namespace tern
