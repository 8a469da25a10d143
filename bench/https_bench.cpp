// HTTPS client throughput and memory: keep-alive GETs of a small JSON body from a local
// server (nginx, started by scripts/bench_https), N requests always in flight.
//
//   https_bench URL CA_FILE N SECONDS [--max-requests-per-connection=K] [--tight-buffers]
//   https_bench https://127.0.0.1:PORT/small.json /tmp/x/ca.pem 8 5
//
// One tern::Reactor and one tern::HttpClient with max_in_flight = max_connections =
// max_per_origin = N. N GETs are issued at start; each callback issues the next one, so N
// stay in flight for the whole run. A warm-up (the N TLS handshakes) comes first and is
// excluded: at least 0.5 s, then until a 50 ms interval in which all N connections were
// open, none was opened, responses came and nothing was allocated (a handshake
// allocates; mbedTLS's ECC arithmetic makes 64 handshakes take over a second). The
// measured window is the next SECONDS seconds.
//
// What it reports (scripts/bench_https parses the final "RESULT" line):
//   - requests per second over the window (responses of any status), and the process's
//     CPU time (user + system, getrusage) per request over the window;
//   - errors by Errc (whole run), connections opened and reuses (in the window);
//   - heap per connection: the bytes this process's heap holds (live malloc'd bytes,
//     counted by the malloc interposer below, usable sizes) after the warm-up with N
//     connections open, minus the same count taken just before the client was
//     constructed, divided by N ("steady"); and the highest such count at any moment up
//     to the end of the warm-up (handshakes in progress included) minus the same base,
//     over N ("peak"). Also split into what the constructor allocated (slots, and the
//     client's fixed part) and what the connections added (TLS contexts, sessions, peer
//     certificates). mallinfo2()'s uordblks + hblkhd gives a second opinion on "steady"
//     (it includes chunk headers);
//   - allocations per request in the window: every malloc/calloc/realloc/memalign (and
//     so every operator new) the process made during the window, over the responses;
//     and per new connection, if connections were opened in the window;
//   - peak RSS (getrusage ru_maxrss), for the process as a whole;
//   - for comparison, the heap a client with the library's default HttpClientConfig
//     (only the three limits above set to N) takes at construction.
//
// The client config: the library defaults, except max_in_flight = max_connections =
// max_per_origin = N, queue_length = 0 (never more than N requests outstanding; a
// callback's next request takes the slot its own request just freed),
// max_request_bytes = 1024 and max_response_bytes = 4096 (the request is ~60 bytes; the
// response arena holds nginx's head as the client keeps it, its reason and five fields
// packed, ~120 bytes, and the 18-byte body: a firmware engineer sizes these for the
// workload). Response heads are limited to max_header_bytes = 4096 raw bytes, the library
// default, which is a limit, not a buffer. --max-requests-per-connection=K overrides the
// library's default (no limit). --tight-buffers sizes every client buffer to this
// workload (request and response arena 256 B, read buffer 512 B, heads limited to 1 KB
// and 16 fields): the floor under TLS.
//
// Allocation tracing: TERN_HTTPS_BENCH_TRACE_ALLOCS=K[,S] records the call stacks of the
// first K allocations of the window (after skipping S) and prints them at the end
// (backtrace_symbols_fd: "binary(+offset)"; addr2line -f -C -e BINARY OFFSET names them).
//
// It also accepts (and ignores) the --benchmark_* flags scripts/bench passes to every
// program in bench/: run that way, without a URL, it prints that it needs a server and
// exits 0 (scripts/bench_https runs it with one).
#include <execinfo.h>
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "tern/core/errc.hpp"
#include "tern/net/http_client.hpp"
#include "tern/reactor/reactor.hpp"

// ---- malloc interposer: counts calls and live bytes ----
// glibc exports its allocator under __libc_* names, so the public ones can be replaced in
// this binary (as tests/support/alloc_counter.cpp does); libstdc++'s operator new and
// mbedTLS's calloc come through here too.

namespace {
std::uint64_t g_calls = 0;
std::int64_t g_live = 0;  // usable bytes of live blocks
std::int64_t g_peak = 0;
// Tracing: stacks of the first g_trace_max allocations while g_tracing.
constexpr int kTraceDepth = 16;
constexpr int kTraceMax = 64;
bool g_tracing = false;
bool g_in_trace = false;
int g_trace_max = 0;
int g_trace_count = 0;
long g_trace_skip = 0;  // allocations of the window to pass over before recording
void* g_trace[kTraceMax][kTraceDepth];
int g_trace_depth[kTraceMax];
std::size_t g_trace_size[kTraceMax];

inline void note_alloc(void* p, std::size_t requested) {
  ++g_calls;
  if (!p) return;
  g_live += static_cast<std::int64_t>(malloc_usable_size(p));
  if (g_live > g_peak) g_peak = g_live;
  if (g_tracing && !g_in_trace && g_trace_count < g_trace_max && g_trace_skip-- <= 0) {
    g_in_trace = true;
    int i = g_trace_count++;
    g_trace_size[i] = requested;
    g_trace_depth[i] = backtrace(g_trace[i], kTraceDepth);
    g_in_trace = false;
  }
}
inline void note_free(void* p) {
  if (p) g_live -= static_cast<std::int64_t>(malloc_usable_size(p));
}
}  // namespace

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) {
  void* p = __libc_malloc(n);
  note_alloc(p, n);
  return p;
}
void* calloc(std::size_t n, std::size_t s) {
  void* p = __libc_calloc(n, s);
  note_alloc(p, n * s);
  return p;
}
void* realloc(void* old, std::size_t n) {
  note_free(old);
  void* p = __libc_realloc(old, n);
  if (!p && old && n != 0) {  // failed: the old block is still there
    g_live += static_cast<std::int64_t>(malloc_usable_size(old));
  }
  note_alloc(p, n);
  return p;
}
void* memalign(std::size_t a, std::size_t n) {
  void* p = __libc_memalign(a, n);
  note_alloc(p, n);
  return p;
}
void* aligned_alloc(std::size_t a, std::size_t n) { return memalign(a, n); }
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  void* p = memalign(a, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
void free(void* p) {
  note_free(p);
  __libc_free(p);
}
}

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t mallinfo_bytes() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<std::int64_t>(mi.uordblks + mi.hblkhd);
}

long rss_kb() {
  long pages_total = 0, pages_rss = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return -1;
  if (std::fscanf(f, "%ld %ld", &pages_total, &pages_rss) != 2) pages_rss = -1;
  std::fclose(f);
  return pages_rss < 0 ? -1 : pages_rss * (sysconf(_SC_PAGESIZE) / 1024);
}

double cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

constexpr int kErrcCount = 32;

struct Snapshot {
  Clock::time_point t;
  double cpu = 0;
  std::uint64_t responses = 0;
  std::uint64_t allocs = 0;
  std::uint64_t opened = 0;
  std::uint64_t reuses = 0;
  std::uint64_t handshakes = 0;
  std::size_t open_connections = 0;
};

// The whole run's state, behind one pointer: reactor callbacks hold 4 words.
struct Bench {
  tern::Reactor* reactor = nullptr;
  tern::HttpClient* client = nullptr;
  tern::HttpRequest req;
  std::size_t n = 0;
  tern::Duration window = tern::Duration::zero();
  bool stopping = false;
  std::uint64_t responses = 0;  // whole run
  std::uint64_t non_2xx = 0;
  std::uint64_t errors[kErrcCount] = {};
  std::uint64_t rejected = 0;   // request() refused at the call

  // Warm-up: at least kMinWarmup, then until a check interval in which every connection
  // was open, none was opened, responses came and nothing was allocated (the last
  // handshakes are over: a handshake allocates). If allocations never stop (the exchange
  // path itself allocates), the last condition is dropped after kQuietGiveUp; if the
  // rest never holds, the window starts anyway at kMaxWarmup, flagged incomplete.
  static constexpr tern::Duration kMinWarmup = tern::ms(500);
  static constexpr tern::Duration kCheck = tern::ms(50);
  static constexpr tern::Duration kQuietGiveUp = tern::seconds(10);
  static constexpr tern::Duration kMaxWarmup = tern::seconds(30);
  Clock::time_point t0;
  std::uint64_t last_opened = 0, last_responses = 0, last_allocs = 0;
  bool warm_complete = false;
  bool warm_quiet = false;  // the warm-up ended with an allocation-free interval
  double warmup_seconds = 0;
  bool timer_failed = false;

  Snapshot start, end;
  std::int64_t warm_live = 0, warm_peak = 0, warm_mallinfo = 0;
  long warm_rss = 0;

  void issue() {
    tern::Errc e = client->request(req, [this](tern::Result<tern::HttpResponse> r) { done(r); });
    if (e != tern::Errc::ok) {
      ++rejected;
      ++errors[static_cast<int>(e) % kErrcCount];
    }
  }

  void done(const tern::Result<tern::HttpResponse>& r) {
    if (r.ok()) {
      ++responses;
      if (r.value().status < 200 || r.value().status > 299) ++non_2xx;
    } else if (!(stopping && r.error() == tern::Errc::cancelled)) {
      ++errors[static_cast<int>(r.error()) % kErrcCount];
    }
    if (!stopping) issue();
  }

  Snapshot take() const {
    Snapshot s;
    s.t = Clock::now();
    s.cpu = cpu_seconds();
    s.allocs = g_calls;
    s.responses = responses;
    const tern::HttpClientStats& st = client->stats();
    s.opened = st.connections_opened;
    s.reuses = st.reuses;
    s.handshakes = st.tls_handshakes;
    s.open_connections = st.open_connections;
    return s;
  }

  void arm(tern::Duration d, void (*fn)(Bench&)) {
    if (!reactor->after(d, [this, fn] { fn(*this); })) {
      timer_failed = true;
      stopping = true;
      reactor->stop();
    }
  }

  static void check_warm(Bench& b) {
    const tern::HttpClientStats& st = b.client->stats();
    const double elapsed = std::chrono::duration<double>(Clock::now() - b.t0).count();
    const bool serving = st.open_connections == b.n && st.connections_opened == b.last_opened &&
                         b.responses > b.last_responses;
    const bool quiet = g_calls == b.last_allocs;
    b.last_opened = st.connections_opened;
    b.last_responses = b.responses;
    b.last_allocs = g_calls;
    const bool ready = serving && (quiet || elapsed >= static_cast<double>(kQuietGiveUp.micros()) / 1e6);
    if (!ready && elapsed < static_cast<double>(kMaxWarmup.micros()) / 1e6) {
      b.arm(kCheck, &Bench::check_warm);
      return;
    }
    b.warm_quiet = serving && quiet;
    b.warm_complete = ready;
    b.warmup_seconds = elapsed;
    b.warm_live = g_live;
    b.warm_peak = g_peak;
    b.warm_mallinfo = mallinfo_bytes();
    b.warm_rss = rss_kb();
    b.start = b.take();
    g_tracing = g_trace_max > 0;
    b.arm(b.window, &Bench::finish_window);
  }

  static void finish_window(Bench& b) {
    g_tracing = false;
    b.end = b.take();
    b.stopping = true;
    b.reactor->stop();
  }
};

int usage() {
  std::fprintf(stderr,
               "usage: https_bench URL CA_FILE CONNECTIONS SECONDS [--max-requests-per-connection=K]"
               " [--tight-buffers]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const char* pos[4] = {};
  int npos = 0;
  long max_per_conn = -1;  // -1: the library default
  bool tight = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_", 12) == 0) continue;
    if (std::strcmp(argv[i], "--tight-buffers") == 0) {
      tight = true;
      continue;
    }
    if (std::strncmp(argv[i], "--max-requests-per-connection=", 30) == 0) {
      max_per_conn = std::strtol(argv[i] + 30, nullptr, 10);
      if (max_per_conn < 1) return usage();
      continue;
    }
    if (npos == 4) return usage();
    pos[npos++] = argv[i];
  }
  if (npos == 0) {
    std::printf("https_bench: needs an HTTPS server; scripts/bench_https runs it against nginx\n");
    return 0;
  }
  if (npos != 4) return usage();
  const char* url = pos[0];
  const char* ca = pos[1];
  long n_arg = std::strtol(pos[2], nullptr, 10);
  double seconds = std::strtod(pos[3], nullptr);
  if (n_arg < 1 || n_arg > 1000 || !(seconds > 0) || seconds > 3600) return usage();
  const auto n = static_cast<std::size_t>(n_arg);

  if (const char* t = std::getenv("TERN_HTTPS_BENCH_TRACE_ALLOCS")) {
    g_trace_max = std::atoi(t);
    if (const char* comma = std::strchr(t, ',')) g_trace_skip = std::atol(comma + 1);
    if (g_trace_max > kTraceMax) g_trace_max = kTraceMax;
    void* prime[2];
    (void)backtrace(prime, 2);  // loads libgcc's unwinder now, not inside malloc
  }

  tern::ReactorConfig rc;
  rc.max_watches = n + 8;
  tern::Reactor reactor(rc);

  // What a client with the default HttpClientConfig (only the N limits set) takes at
  // construction, for comparison; built and destroyed before the measured client.
  std::int64_t default_ctor_bytes = 0;
  {
    tern::HttpClientConfig dc;
    dc.max_in_flight = dc.max_connections = dc.max_per_origin = n;
    dc.ca_file = ca;
    std::int64_t before = g_live;
    auto* c = new tern::HttpClient(reactor, dc);
    default_ctor_bytes = g_live - before;
    delete c;
  }

  tern::HttpClientConfig cfg;
  cfg.max_in_flight = cfg.max_connections = cfg.max_per_origin = n;
  cfg.queue_length = 0;
  cfg.max_request_bytes = 1024;
  cfg.max_response_bytes = 4096;
  if (max_per_conn > 0) cfg.max_requests_per_connection = static_cast<std::size_t>(max_per_conn);
  if (tight) {  // every client-side buffer sized to this workload: the floor under TLS
    cfg.max_request_bytes = 256;
    cfg.max_response_bytes = 256;
    cfg.read_buffer_bytes = 512;
    cfg.limits.max_header_bytes = 1024;
    cfg.limits.max_headers = 16;
  }
  cfg.ca_file = ca;

  const std::int64_t base_live = g_live;
  const std::int64_t base_mallinfo = mallinfo_bytes();
  const long base_rss = rss_kb();
  g_peak = g_live;
  auto* client = new tern::HttpClient(reactor, cfg);
  const std::int64_t ctor_bytes = g_live - base_live;
  if (client->init_error() != tern::Errc::ok) {
    std::fprintf(stderr, "https_bench: client init failed: %s (CA file %s)\n",
                 tern::errc_name(client->init_error()), ca);
    return 1;
  }

  Bench b;
  b.reactor = &reactor;
  b.client = client;
  b.n = n;
  b.window = tern::Duration(static_cast<std::int64_t>(seconds * 1e6));
  b.req.method = "GET";
  b.req.url = url;
  b.req.timeout = tern::seconds(10);
  b.t0 = Clock::now();
  b.last_allocs = g_calls;
  b.arm(Bench::kMinWarmup, &Bench::check_warm);
  for (std::size_t i = 0; i < n; ++i) b.issue();
  reactor.run();
  if (b.timer_failed) {
    std::fprintf(stderr, "https_bench: cannot arm a timer\n");
    return 1;
  }

  const tern::HttpClientStats st = client->stats();
  delete client;  // cancels what is in flight (not counted: stopping)

  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);

  const Snapshot& start = b.start;
  const Snapshot& end = b.end;
  const double secs = std::chrono::duration<double>(end.t - start.t).count();
  const std::uint64_t reqs = end.responses - start.responses;
  const double rps = secs > 0 ? static_cast<double>(reqs) / secs : 0;
  const double cpu_us_per_req = reqs ? (end.cpu - start.cpu) * 1e6 / static_cast<double>(reqs) : 0;
  const std::uint64_t allocs = end.allocs - start.allocs;
  const double allocs_per_req = reqs ? static_cast<double>(allocs) / static_cast<double>(reqs) : 0;
  const std::uint64_t opened_in_window = end.opened - start.opened;
  const double dn = static_cast<double>(n);
  const double steady_per_conn = static_cast<double>(b.warm_live - base_live) / dn;
  const double peak_per_conn = static_cast<double>(b.warm_peak - base_live) / dn;
  const double ctor_per_conn = static_cast<double>(ctor_bytes) / dn;
  const double conn_added_per_conn = static_cast<double>(b.warm_live - base_live - ctor_bytes) / dn;
  const double mallinfo_per_conn = static_cast<double>(b.warm_mallinfo - base_mallinfo) / dn;
  std::uint64_t total_errors = 0;
  for (std::uint64_t e : b.errors) total_errors += e;

  std::printf("https_bench: %s, %zu connection(s), max %zu requests per connection%s; %.2f s window after a"
              " %.2f s warm-up%s\n",
              url, n, cfg.max_requests_per_connection, tight ? ", tight buffers" : "", secs, b.warmup_seconds,
              b.warm_complete ? (b.warm_quiet ? "" : " (allocations never stopped during it)")
                              : " (INCOMPLETE: not every connection was open and serving)");
  std::printf("  requests/s           %.0f  (%" PRIu64 " responses in the window, %" PRIu64 " non-2xx in the run);"
              " CPU %.2f us per request\n",
              rps, reqs, b.non_2xx, cpu_us_per_req);
  std::printf("  errors               %" PRIu64, total_errors);
  for (int i = 0; i < kErrcCount; ++i) {
    if (b.errors[i]) std::printf("  %s=%" PRIu64, tern::errc_name(static_cast<tern::Errc>(i)), b.errors[i]);
  }
  std::printf("%s\n", b.rejected ? "  (some refused at request())" : "");
  std::printf("  connections          %" PRIu64 " opened in the run (%" PRIu64 " in the window), %zu open after warm-up;"
              " %" PRIu64 " TLS handshakes, %" PRIu64 " counted as resumed\n",
              st.connections_opened, opened_in_window, start.open_connections, st.tls_handshakes, st.tls_resumed);
  std::printf("  reuses               %" PRIu64 " in the window (%" PRIu64 " in the run), %" PRIu64 " stale closed\n",
              end.reuses - start.reuses, st.reuses, st.stale_closed);
  std::printf("  heap per connection  steady %.0f B (constructor %.0f B + connections %.0f B), peak %.0f B;"
              " mallinfo2 steady %.0f B\n",
              steady_per_conn, ctor_per_conn, conn_added_per_conn, peak_per_conn, mallinfo_per_conn);
  std::printf("  default config       a client with the default HttpClientConfig (limits N) allocates %" PRId64
              " B at construction (%.0f B per connection)\n",
              default_ctor_bytes, static_cast<double>(default_ctor_bytes) / dn);
  std::printf("  allocations/request  %.4f  (%" PRIu64 " allocations in the window", allocs_per_req, allocs);
  if (opened_in_window) {
    std::printf(", %" PRIu64 " new connections in it: %.0f per new connection",
                opened_in_window, static_cast<double>(allocs) / static_cast<double>(opened_in_window));
  }
  std::printf(")\n");
  std::printf("  RSS                  peak %ld KB (ru_maxrss); %+ld KB from before the client to after warm-up\n",
              ru.ru_maxrss, b.warm_rss - base_rss);
  std::printf("RESULT n=%zu rps=%.1f requests=%" PRIu64 " requests_run=%" PRIu64 " cpu_us_per_req=%.2f errors=%" PRIu64 " opened=%" PRIu64
              " opened_in_window=%" PRIu64 " reuses=%" PRIu64 " open_after_warmup=%zu warmup_s=%.2f warm=%d quiet=%d"
              " bytes_per_conn=%.0f peak_bytes_per_conn=%.0f ctor_bytes_per_conn=%.0f conn_bytes_per_conn=%.0f"
              " mallinfo_bytes_per_conn=%.0f default_ctor_bytes=%" PRId64 " allocs=%" PRIu64
              " allocs_per_req=%.4f maxrss_kb=%ld\n",
              n, rps, reqs, b.responses, cpu_us_per_req, total_errors, st.connections_opened, opened_in_window,
              end.reuses - start.reuses, start.open_connections, b.warmup_seconds, b.warm_complete ? 1 : 0, b.warm_quiet ? 1 : 0,
              steady_per_conn, peak_per_conn, ctor_per_conn, conn_added_per_conn, mallinfo_per_conn,
              default_ctor_bytes, allocs, allocs_per_req, ru.ru_maxrss);

  if (g_trace_count > 0) {
    std::fflush(stdout);
    for (int i = 0; i < g_trace_count; ++i) {
      std::fprintf(stderr, "--- allocation %d in the window (%zu bytes)\n", i + 1, g_trace_size[i]);
      backtrace_symbols_fd(g_trace[i], g_trace_depth[i], STDERR_FILENO);
    }
  }
  const bool ok = reqs > 0 && total_errors == 0 && b.warm_complete;
  return ok ? 0 : 1;
}
