// The contract every port implements, once, with plain functions (Redis ae.c habit:
// exactly one backend is compiled in, chosen by the Meson option -Dport=...).
// Not API: only src/reactor/reactor.cpp calls these.
#pragma once

#include "tern/core/errc.hpp"
#include "tern/core/time.hpp"
#include "tern/detail/port_state.hpp"  // resolved from ports/<name>/include

#include "tern/reactor/reactor.hpp"

namespace tern::port {

// Prepares the backend for one reactor. May allocate (start-up only).
// Errors: io (the OS refused a resource), full (too many reactors for the port).
Errc init(detail::PortState& s, Reactor& owner);

// Releases what init() took. Safe after a failed init().
void destroy(detail::PortState& s);

// The port's monotonic clock in microseconds (CLOCK_MONOTONIC, SysTick, ...).
Instant clock_now();

// Blocks until an fd is ready, wake() was called, or `timeout` has elapsed since
// `start`, the clock_now() reading the caller computed it from (so the time the caller
// spent since then does not push the deadline later).
// timeout < 0: no limit; timeout == 0: poll without blocking. For every ready
// watched fd it calls detail::reactor_io_ready(owner, slot, events).
void wait(detail::PortState& s, Instant start, Duration timeout);

// Makes a wait() in progress (or the next one) return promptly. Safe from any
// thread and from interrupt handlers; never blocks, never allocates.
void wake(detail::PortState& s);

// Watches `fd` for `events` (kReadable | kWritable) under the reactor's
// watch slot `slot` (0 <= slot < detail::kPortMaxWatches).
// Errors: invalid_argument (bad fd/events), unsupported (no fds on this port), io.
Errc watch(detail::PortState& s, int slot, int fd, unsigned events);

// Stops watching slot `slot`. Idempotent.
void unwatch(detail::PortState& s, int slot);

// Makes SIGINT and SIGTERM call owner.stop() on the reactor's thread (graceful stop).
// Errors: unsupported (no signals on this port), io.
Errc stop_on_signals(detail::PortState& s);

}  // namespace tern::port

