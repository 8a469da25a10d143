// Linux backend over libevent: one event_base per reactor (no locking: the reactor is
// single-threaded), one timer event re-armed to the wheel's next expiry before each
// wait, one event per watched fd (allocated at start-up), and an eventfd for wake-ups
// from other threads and signal handlers.
#include <event2/event.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "reactor/port.hpp"

namespace tern::port {

namespace {

void on_wake(evutil_socket_t fd, short, void*) {
  std::uint64_t value;
  // Drain the counter; EAGAIN just means another wake was already consumed.
  while (::read(fd, &value, sizeof value) == static_cast<ssize_t>(sizeof value)) {
  }
}

void on_timer(evutil_socket_t, short, void*) {}  // only ends the wait

void on_io(evutil_socket_t, short what, void* arg) {
  auto* w = static_cast<detail::PortWatch*>(arg);
  unsigned events = 0;
  if (what & EV_READ) events |= kReadable;
  if (what & EV_WRITE) events |= kWritable;
  detail::reactor_io_ready(*w->state->owner, w->slot, events);
}

void on_signal(evutil_socket_t, short, void* arg) { static_cast<Reactor*>(arg)->stop(); }

}  // namespace

Errc init(detail::PortState& s, Reactor& owner) {
  s.owner = &owner;
  event_config* cfg = event_config_new();
  if (!cfg) return Errc::io;
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  s.base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (!s.base) return Errc::io;
  s.timer = evtimer_new(s.base, &on_timer, nullptr);
  s.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!s.timer || s.wake_fd < 0) return Errc::io;
  s.wake_event = event_new(s.base, s.wake_fd, EV_READ | EV_PERSIST, &on_wake, nullptr);
  if (!s.wake_event || event_add(s.wake_event, nullptr) != 0) return Errc::io;
  s.watch_count = static_cast<int>(owner.config().max_watches);
  if (s.watch_count > 0) {
    s.watches = new (std::nothrow) detail::PortWatch[static_cast<std::size_t>(s.watch_count)];
    if (!s.watches) return Errc::io;
    for (int i = 0; i < s.watch_count; ++i) {
      s.watches[i].state = &s;
      s.watches[i].slot = i;
      // Allocated now so that watch() never allocates; assigned a real fd later.
      s.watches[i].ev = event_new(s.base, -1, 0, &on_io, &s.watches[i]);
      if (!s.watches[i].ev) return Errc::io;
    }
  }
  return Errc::ok;
}

void destroy(detail::PortState& s) {
  for (event*& sig : s.signals) {
    if (sig) event_free(sig);
    sig = nullptr;
  }
  if (s.watches) {
    for (int i = 0; i < s.watch_count; ++i) {
      if (s.watches[i].ev) event_free(s.watches[i].ev);
    }
    delete[] s.watches;
    s.watches = nullptr;
  }
  if (s.wake_event) event_free(s.wake_event);
  if (s.timer) event_free(s.timer);
  if (s.wake_fd >= 0) ::close(s.wake_fd);
  if (s.base) event_base_free(s.base);
  s = detail::PortState{};
}

Instant clock_now() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return Instant(static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000);
}

void wait(detail::PortState& s, Instant start, Duration timeout) {
  if (timeout > Duration::zero()) {  // what is left of it
    timeout = timeout - (clock_now() - start);
    if (timeout < Duration::zero()) timeout = Duration::zero();
  }
  if (timeout == Duration::zero()) {
    event_base_loop(s.base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
    return;
  }
  if (timeout > Duration::zero()) {
    timeval tv;
    tv.tv_sec = static_cast<time_t>(timeout.us / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(timeout.us % 1000000);
    evtimer_add(s.timer, &tv);
  }
  event_base_loop(s.base, EVLOOP_ONCE);
  evtimer_del(s.timer);
}

void wake(detail::PortState& s) {
  std::uint64_t one = 1;
  // write(2) on an eventfd is async-signal-safe and thread-safe; a full counter
  // (EAGAIN) already guarantees a wake-up.
  ssize_t n = ::write(s.wake_fd, &one, sizeof one);
  (void)n;
}

Errc watch(detail::PortState& s, int slot, int fd, unsigned events) {
  if (slot < 0 || slot >= s.watch_count || fd < 0) return Errc::invalid_argument;
  detail::PortWatch& w = s.watches[slot];
  short what = EV_PERSIST;
  if (events & kReadable) what |= EV_READ;
  if (events & kWritable) what |= EV_WRITE;
  event_del(w.ev);
  if (event_assign(w.ev, s.base, fd, what, &on_io, &w) != 0) return Errc::invalid_argument;
  if (event_add(w.ev, nullptr) != 0) return Errc::io;
  w.fd = fd;
  w.events = events;
  return Errc::ok;
}

void unwatch(detail::PortState& s, int slot) {
  if (slot < 0 || slot >= s.watch_count) return;
  event_del(s.watches[slot].ev);
  s.watches[slot].fd = -1;
  s.watches[slot].events = 0;
}

Errc stop_on_signals(detail::PortState& s) {
  const int signums[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; ++i) {
    if (s.signals[i]) continue;
    s.signals[i] = evsignal_new(s.base, signums[i], &on_signal, s.owner);
    if (!s.signals[i] || event_add(s.signals[i], nullptr) != 0) return Errc::io;
  }
  return Errc::ok;
}

}  // namespace tern::port
