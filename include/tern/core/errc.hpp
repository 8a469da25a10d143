// Errors as values: every fallible tern call returns an Errc or a Result<T>.
//
//   tern::Result<RequestId> id = table.start(deadline, on_done);
//   if (!id) log("start failed: %s", tern::errc_name(id.error()));
//
// Contract violations (bugs in the caller, never bad outside input) go to tern::panic().
#pragma once

#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

namespace tern {

enum class Errc : std::uint8_t {
  ok = 0,
  full,              // a fixed capacity is exhausted; nothing already held was lost
  timeout,           // the deadline passed before an outcome
  cancelled,         // the owner cancelled or stopped
  late,              // an outcome arrived after the request had already ended
  not_found,         // no such id / key / target
  closed,            // the peer or the object is closed
  invalid_argument,  // the caller passed something unusable
  circuit_open,      // a circuit breaker refused the call
  no_reply,          // a handler dropped its Reply without answering
  too_large,         // input over a configured limit
  protocol,          // malformed input from a peer
  tls,               // TLS handshake, verification or record failure
  dns,               // name resolution failed
  io,                // the OS reported an I/O error
  shutdown,          // the runtime is shutting down
  unsupported,       // the port cannot do this (e.g. sockets on bare metal)
  busy,              // the object is in use and cannot take this call now
  failed,            // the callee reported failure (agent fail(), 5xx, ...)
};

// A static, human-readable name ("full", "timeout", ...); never null.
const char* errc_name(Errc e);

// The one hook for contract violations. The default prints `what` through the
// port's output and aborts/halts; replace it with set_panic_handler().
[[noreturn]] void panic(const char* what);
using PanicHandler = void (*)(const char* what);
// Installs `h` (nullptr restores the default). Returns the previous handler.
// A handler must not return; if it does, tern halts anyway.
PanicHandler set_panic_handler(PanicHandler h);

// Result<T>: either a T or a non-ok Errc. Cheap, no heap, no exceptions.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : err_(Errc::ok) { new (&storage_) T(std::move(value)); }  // NOLINT
  Result(Errc e) : err_(e) {                                                // NOLINT
    if (e == Errc::ok) panic("Result: error constructor given Errc::ok");
  }
  Result(const Result& o) : err_(o.err_) {
    if (ok()) new (&storage_) T(o.value());
  }
  Result(Result&& o) noexcept : err_(o.err_) {
    if (ok()) new (&storage_) T(std::move(o.value()));
  }
  Result& operator=(Result o) noexcept {
    destroy();
    err_ = o.err_;
    if (ok()) new (&storage_) T(std::move(o.value()));
    return *this;
  }
  ~Result() { destroy(); }

  bool ok() const { return err_ == Errc::ok; }
  explicit operator bool() const { return ok(); }
  Errc error() const { return err_; }

  T& value() {
    if (!ok()) panic("Result::value() on an error");
    return *std::launder(reinterpret_cast<T*>(&storage_));
  }
  const T& value() const {
    if (!ok()) panic("Result::value() on an error");
    return *std::launder(reinterpret_cast<const T*>(&storage_));
  }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T value_or(T fallback) const { return ok() ? value() : fallback; }

 private:
  void destroy() {
    if (ok()) value().~T();
  }
  alignas(T) unsigned char storage_[sizeof(T)];
  Errc err_;
};

}  // namespace tern
