#include "tern/core/errc.hpp"

#include <cstdio>
#include <cstdlib>

namespace tern {

const char* errc_name(Errc e) {
  switch (e) {
    case Errc::ok: return "ok";
    case Errc::full: return "full";
    case Errc::timeout: return "timeout";
    case Errc::cancelled: return "cancelled";
    case Errc::late: return "late";
    case Errc::not_found: return "not_found";
    case Errc::closed: return "closed";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::circuit_open: return "circuit_open";
    case Errc::no_reply: return "no_reply";
    case Errc::too_large: return "too_large";
    case Errc::protocol: return "protocol";
    case Errc::tls: return "tls";
    case Errc::dns: return "dns";
    case Errc::io: return "io";
    case Errc::shutdown: return "shutdown";
    case Errc::unsupported: return "unsupported";
    case Errc::busy: return "busy";
    case Errc::failed: return "failed";
  }
  return "unknown";
}

namespace {
[[noreturn]] void default_panic(const char* what) {
  std::fprintf(stderr, "tern panic: %s\n", what);
  std::fflush(stderr);
  std::abort();
}
PanicHandler g_panic_handler = nullptr;
}  // namespace

PanicHandler set_panic_handler(PanicHandler h) {
  PanicHandler old = g_panic_handler;
  g_panic_handler = h;
  return old;
}

void panic(const char* what) {
  if (g_panic_handler) g_panic_handler(what);
  default_panic(what);  // a handler that returns still halts
}

}  // namespace tern
