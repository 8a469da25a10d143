// HttpClient over the Linux port. One state machine per connection slot:
//
//   free -> resolving -> connecting -> handshaking -> busy <-> idle (pooled) -> free
//
// Requests wait in a FIFO until the semaphore (max_in_flight) and a connection for their
// origin allow them on the wire. Readiness comes from Reactor::watch(); every deadline is
// an intrusive Timer on the reactor's wheel; callbacks never run inside request(): work
// that may end a request is started from a timer armed "overdue" (the next turn).
#include "tern/net/http_client.hpp"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <fcntl.h>
#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>  // MBEDTLS_ERR_NET_* codes for the bio callbacks
#include <mbedtls/platform.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "tern/detail/port_state.hpp"

namespace tern {

namespace {

constexpr std::size_t kHostMax = 253;

// An origin as a request slot keeps it: the host is a view into the slot's serialized
// request (its Host line), so the slot needs no copy of its own.
struct OriginView {
  bool tls = false;
  std::uint16_t port = 0;
  std::string_view host;
};

// An origin that outlives any request: a connection's, a saved session's.
struct Origin {
  bool tls = false;
  std::uint16_t port = 0;
  char host[kHostMax + 1] = {};
  OriginView view() const { return OriginView{tls, port, std::string_view(host)}; }
  void assign(const OriginView& o) {
    tls = o.tls;
    port = o.port;
    std::size_t n = o.host.size() <= kHostMax ? o.host.size() : kHostMax;
    std::memcpy(host, o.host.data(), n);
    host[n] = '\0';
  }
  bool same(const OriginView& o) const { return tls == o.tls && port == o.port && std::string_view(host) == o.host; }
};

struct ParsedUrl {
  Origin origin;
  std::string_view target;  // path + query, "/" if empty
};

bool ascii_iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

// Errors: invalid_argument (scheme, host or port unusable).
Errc parse_url(std::string_view url, ParsedUrl* out) {
  std::string_view rest;
  if (url.substr(0, 8) == "https://") {
    out->origin.tls = true;
    out->origin.port = 443;
    rest = url.substr(8);
  } else if (url.substr(0, 7) == "http://") {
    out->origin.tls = false;
    out->origin.port = 80;
    rest = url.substr(7);
  } else {
    return Errc::invalid_argument;
  }
  // The fragment is the client's business, never sent (RFC 9110 §4.2.4).
  rest = rest.substr(0, rest.find('#'));
  std::size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  out->target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return Errc::invalid_argument;
  std::string_view host = authority;
  std::string_view port;
  if (authority.front() == '[') {  // [v6]:port
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return Errc::invalid_argument;
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Errc::invalid_argument;
      port = after.substr(1);
    }
  } else {
    std::size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
  }
  if (host.empty() || host.size() > kHostMax) return Errc::invalid_argument;
  for (char c : host) {
    if (c <= ' ' || c == '/' || c == '?' || c == '#') return Errc::invalid_argument;
  }
  if (!port.empty() || authority.back() == ':') {
    if (port.empty() || port.size() > 5) return Errc::invalid_argument;
    std::uint32_t p = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return Errc::invalid_argument;
      p = p * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (p == 0 || p > 65535) return Errc::invalid_argument;
    out->origin.port = static_cast<std::uint16_t>(p);
  }
  for (char c : out->target) {
    if (c <= ' ' || c == 0x7f) return Errc::invalid_argument;
  }
  std::memcpy(out->origin.host, host.data(), host.size());
  out->origin.host[host.size()] = '\0';
  return Errc::ok;
}

bool has_ctl(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127 || std::strchr("()<>@,;:\\\"/[]?={}", c)) return false;
  }
  return true;
}

// mbedTLS 2.28 matches the host name against DNS names only. For a host given as an IP
// literal we look for a matching iPAddress entry in the certificate's subjectAltName
// ourselves (RFC 6125 §6.2.1: IP literals match only iPAddress SANs). Only the list
// mbedTLS parsed from the subjectAltName extension counts: those bytes may appear inside
// any other extension's value, and a certificate without the extension names no address.
bool cert_has_ip_san(const mbedtls_x509_crt* crt, const unsigned char* ip, std::size_t ip_len) {
  for (const mbedtls_x509_sequence* san = &crt->subject_alt_names; san; san = san->next) {
    const mbedtls_x509_buf& name = san->buf;
    if (name.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && name.p && name.len == ip_len &&
        std::memcmp(name.p, ip, ip_len) == 0) {
      return true;
    }
  }
  return false;
}

// The host as an IP address (4 or 16 bytes into `out`), or 0 if it is a host name.
std::size_t ip_literal(const char* host, unsigned char out[16]) {
  if (inet_pton(AF_INET, host, out) == 1) return 4;
  if (inet_pton(AF_INET6, host, out) == 1) return 16;
  return 0;
}

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS" || method == "TRACE";
}

// A bounded writer over a fixed buffer.
struct Writer {
  char* buf;
  std::size_t cap;
  std::size_t len = 0;
  bool overflow = false;
  void put(std::string_view s) {
    if (s.empty()) return;  // an empty view may have a null data()
    if (len + s.size() > cap) {
      overflow = true;
      return;
    }
    std::memcpy(buf + len, s.data(), s.size());
    len += s.size();
  }
  void put_uint(std::uint64_t v) {
    char tmp[24];
    int n = std::snprintf(tmp, sizeof tmp, "%llu", static_cast<unsigned long long>(v));
    put(std::string_view(tmp, static_cast<std::size_t>(n)));
  }
};

}  // namespace

// ---- DNS cookies ----
//
// evdns may run a lookup's callback after we cancelled it, on a later loop turn, even
// after the client is gone. So the callback's argument is never the connection itself
// but a cookie from this process-wide fixed table, which outlives every client: a
// cookie whose connection gave up (or whose client died) just frees the answer.
// HttpClients share the table, so they must run on one thread.
namespace {
struct DnsCookie {
  void* conn = nullptr;  // HttpClient::Impl::Conn waiting for this answer; null: nobody
  bool in_use = false;   // evdns still holds this cookie
};
constexpr std::size_t kDnsCookies = 128;
DnsCookie g_dns_cookies[kDnsCookies];

DnsCookie* take_dns_cookie(void* conn) {
  for (DnsCookie& k : g_dns_cookies) {
    if (k.in_use) continue;
    k.in_use = true;
    k.conn = conn;
    return &k;
  }
  return nullptr;
}
}  // namespace

// ---- the entropy source ----
//
// Each client's CTR_DRBG is seeded (and reseeded) straight from the kernel's CSPRNG with
// getrandom(2), which blocks only until the kernel's pool is initialised. An
// mbedtls_entropy_context would mix the same source in, and with Debian's build (HAVEGE
// on) it is ~38 KB per client.
namespace {
int kernel_entropy(void*, unsigned char* out, std::size_t len) {
  while (len > 0) {
    ssize_t n = ::getrandom(out, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
    }
    out += n;
    len -= static_cast<std::size_t>(n);
  }
  return 0;
}
}  // namespace

// ---- the implementation ----

struct HttpClient::Impl {
  enum class ConnState : std::uint8_t { free, resolving, connecting, handshaking, busy, idle };
  enum class ReqState : std::uint8_t { free, queued, active, backing_off };

  struct Request;

  // The last TLS session of an origin, for resumption by any of its connections: one
  // copy per origin (the session holds the peer certificate, 1-2 KB), not one per
  // connection. Least recently saved first out when the cache is full.
  struct SavedSession {
    Origin origin;
    mbedtls_ssl_session session;
    bool valid = false;
    std::uint64_t saved_at = 0;  // session_clock when saved
  };

  // One address to connect to; the port is already in it.
  struct ConnectAddress {
    union {
      sockaddr sa;
      sockaddr_in v4;
      sockaddr_in6 v6;
    };
    socklen_t len = 0;
  };

  struct Conn {
    Impl* impl = nullptr;
    ConnState state = ConnState::free;
    Origin origin;
    int fd = -1;
    WatchHandle watch;
    bool watching = false;
    unsigned interest = 0;
    Timer timer;  // connect / handshake / idle deadline
    evdns_getaddrinfo_request* dns = nullptr;
    DnsCookie* dns_cookie = nullptr;  // while resolving
    // Where to connect, tried in order (the resolver's first answers, or the literal).
    ConnectAddress addrs[kMaxConnectAddresses];
    std::uint8_t addr_count = 0;
    std::uint8_t addr_next = 0;  // the next one to try
    Instant connect_deadline;    // DNS and every connect attempt end by then
    mbedtls_ssl_context ssl;
    bool ssl_setup = false;
    std::uint32_t served = 0;
    Request* req = nullptr;
    HttpResponseParser* parser = nullptr;
    bool got_response_bytes = false;
    bool resumed = false;  // this connection's handshake resumed a saved session
    // bio_recv saw the peer's FIN. mbedtls_ssl_read returns 0 both for that and for
    // empty application-data records (two back to back), and only this tells them apart.
    bool transport_eof = false;
  };

  struct Request {
    Impl* impl = nullptr;
    ReqState state = ReqState::free;
    bool tls = false;
    std::uint16_t port = 0;
    std::uint16_t host_len = 0;
    std::uint32_t host_off = 0;  // the host's place in tx (its Host line)
    char* tx = nullptr;
    std::size_t tx_len = 0;
    std::size_t tx_off = 0;
    // The response arena (max_response_bytes): the connection's parser keeps the head at
    // its start (head_bytes() of it) and the body follows.
    char* response = nullptr;
    std::size_t body_len = 0;
    bool head = false;
    bool idempotent = false;
    bool retried = false;
    bool reused_conn = false;
    // This try reached the origin (a connect was made, or a pooled connection used) and
    // no local shortage (a watch slot) ended it: only then does its failure count
    // against the origin's breaker. A request that times out in the queue did not.
    bool reached_origin = false;
    std::uint32_t breaker_period = 0;  // what the breaker noted when it admitted this try
    HttpCallback cb;
    Timer deadline;
    Timer retry_timer;      // the backoff before the next try (HttpClientConfig::retry)
    Timer attempt_timer;    // this try's own limit (RetryPolicy::attempt_timeout)
    Backoff backoff;
    std::uint16_t attempt = 1;
    Conn* conn = nullptr;
    std::uint64_t seq = 0;  // FIFO order among queued requests
    OriginView origin() const { return OriginView{tls, port, std::string_view(tx + host_off, host_len)}; }
  };

  Reactor& reactor;
  HttpClientConfig config;
  HttpClientStats stats;
  Rng rng;
  Errc init_error = Errc::ok;
  bool closing = false;
  // The client may be destroyed from inside one of its own callbacks. Every entry from
  // the reactor holds a Guard; the Impl is deleted when the outermost one leaves.
  int depth = 0;
  bool destroy_requested = false;
  struct Guard {
    Impl* impl;
    explicit Guard(Impl* i) : impl(i) { ++impl->depth; }
    ~Guard() {
      if (--impl->depth == 0 && impl->destroy_requested) delete impl;
    }
  };
  Conn* conns = nullptr;
  Request* reqs = nullptr;
  SavedSession** sessions = nullptr;  // made at an origin's first save (a handshake)
  std::size_t session_capacity = 0;
  std::uint64_t session_clock = 0;
  std::size_t req_capacity = 0;
  std::uint64_t next_seq = 1;
  Timer pump_timer;
  evdns_base* dns_base = nullptr;
  bool tls_ready = false;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;
  mbedtls_ssl_config ssl_conf;

  Impl(Reactor& r, const HttpClientConfig& c) : reactor(r), config(c), rng(c.seed) {}

  // ---- set-up ----

  void init() {
    if (config.read_buffer_bytes == 0) config.read_buffer_bytes = 1;
    if (config.max_in_flight == 0) config.max_in_flight = 1;
    if (config.max_connections == 0) config.max_connections = 1;
    if (config.max_per_origin == 0) config.max_per_origin = 1;
    config.limits.max_body = config.max_response_bytes;  // one limit for the body
    req_capacity = config.max_in_flight + config.queue_length;
    conns = new (std::nothrow) Conn[config.max_connections];
    reqs = new (std::nothrow) Request[req_capacity];
    session_capacity = config.tls_session_cache;
    if (session_capacity > 0) sessions = new (std::nothrow) SavedSession* [session_capacity] {};
    if (!conns || !reqs || (session_capacity > 0 && !sessions)) panic("HttpClient: out of memory at start-up");
    for (std::size_t i = 0; i < config.max_connections; ++i) {
      Conn& c = conns[i];
      c.impl = this;
      c.timer.set_callback(&Impl::on_conn_timer, &c);
      // The head goes into the request slot's response arena (begin_exchange).
      c.parser = new (std::nothrow) HttpResponseParser(config.limits, HeadStorage::lent);
      if (!c.parser) panic("HttpClient: out of memory at start-up");
      mbedtls_ssl_init(&c.ssl);
    }
    for (std::size_t i = 0; i < req_capacity; ++i) {
      Request& q = reqs[i];
      q.impl = this;
      q.deadline.set_callback(&Impl::on_request_deadline, &q);
      q.retry_timer.set_callback(&Impl::on_retry_due, &q);
      q.attempt_timer.set_callback(&Impl::on_attempt_deadline, &q);
      q.tx = new (std::nothrow) char[config.max_request_bytes];
      q.response = new (std::nothrow) char[config.max_response_bytes ? config.max_response_bytes : 1];
      if (!q.tx || !q.response) panic("HttpClient: out of memory at start-up");
    }
    pump_timer.set_callback(&Impl::on_pump, this);
    init_tls();
  }

  void init_tls() {
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&ca);
    mbedtls_ssl_config_init(&ssl_conf);
    tls_ready = true;
    static const unsigned char kPersonal[] = "tern-http-client";
    if (mbedtls_ctr_drbg_seed(&drbg, &kernel_entropy, nullptr, kPersonal, sizeof kPersonal - 1) != 0 ||
        mbedtls_ssl_config_defaults(&ssl_conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
      init_error = Errc::tls;
      return;
    }
    mbedtls_ssl_conf_rng(&ssl_conf, mbedtls_ctr_drbg_random, &drbg);
    // mbedTLS 2.28 offers secp521r1 first and servers often take it; the faster curves
    // first make handshakes cheaper on small devices.
    static const mbedtls_ecp_group_id kCurves[] = {MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1,
                                                   MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
    mbedtls_ssl_conf_curves(&ssl_conf, kCurves);
    if (config.insecure_skip_verify_DANGEROUS) {
      mbedtls_ssl_conf_authmode(&ssl_conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
      // A bundle may hold certificates mbedTLS cannot parse: > 0 means "some were
      // skipped", which is fine as long as at least one loaded.
      int rc = config.ca_file ? mbedtls_x509_crt_parse_file(&ca, config.ca_file) : -1;
      if (rc < 0 || ca.version == 0) {
        init_error = Errc::tls;
        return;
      }
      mbedtls_ssl_conf_ca_chain(&ssl_conf, &ca, nullptr);
      mbedtls_ssl_conf_authmode(&ssl_conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
  }

  ~Impl() {
    // A callback run from here may call request() again: refuse it (Errc::shutdown at
    // the call) so nothing is accepted that could not end.
    closing = true;
    cancel_all(Errc::cancelled);
    reactor.wheel().cancel(pump_timer);
    for (std::size_t i = 0; i < config.max_connections; ++i) {
      Conn& c = conns[i];
      close_conn(c);
      mbedtls_ssl_free(&c.ssl);
      delete c.parser;
    }
    for (std::size_t i = 0; i < req_capacity; ++i) {
      delete[] reqs[i].tx;
      delete[] reqs[i].response;
    }
    for (std::size_t i = 0; i < session_capacity; ++i) {
      if (!sessions[i]) continue;
      mbedtls_ssl_session_free(&sessions[i]->session);
      delete sessions[i];
    }
    delete[] conns;
    delete[] reqs;
    delete[] sessions;
    if (dns_base) evdns_base_free(dns_base, 1);
    if (tls_ready) {
      mbedtls_ssl_config_free(&ssl_conf);
      mbedtls_x509_crt_free(&ca);
      mbedtls_ctr_drbg_free(&drbg);
    }
  }

  // ---- accepting requests ----

  Errc submit(const HttpRequest& in, HttpCallback cb) {
    if (closing) return reject(Errc::shutdown);
    if (init_error != Errc::ok) return reject(init_error);
    if (!cb || !is_token(in.method)) return reject(Errc::invalid_argument);
    ParsedUrl url;
    if (parse_url(in.url, &url) != Errc::ok) return reject(Errc::invalid_argument);
    if (in.header_count > kMaxRequestHeaders) return reject(Errc::invalid_argument);
    if (config.retry && validate(*config.retry) != Errc::ok) return reject(Errc::invalid_argument);
    for (std::size_t i = 0; i < in.header_count; ++i) {
      const HttpHeader& h = in.headers[i];
      if (!is_token(h.name) || has_ctl(h.value)) return reject(Errc::invalid_argument);
    }
    // At most queue_length requests wait beyond what can start now: a connection each,
    // so with fewer connections than max_in_flight, the connections bound it. A request
    // waiting out a retry backoff counts as waiting: it queues again when that ends.
    const std::size_t can_run = std::min(config.max_in_flight, config.max_connections);
    const std::size_t starts_now = can_run > stats.in_flight ? can_run - stats.in_flight : 0;
    if (stats.queued + stats.backing_off >= config.queue_length + starts_now) {
      return reject(Errc::full);
    }
    Request* q = nullptr;
    for (std::size_t i = 0; i < req_capacity && !q; ++i) {
      if (reqs[i].state == ReqState::free) q = &reqs[i];
    }
    if (!q) return reject(Errc::full);  // max_in_flight + queue_length accepted already
    // Serialize now: the caller's views may not outlive this call.
    Writer w{q->tx, config.max_request_bytes};
    w.put(in.method);
    w.put(" ");
    if (url.target.front() == '?') w.put("/");  // "https://host?q" asks for "/?q"
    w.put(url.target);
    w.put(" HTTP/1.1\r\nHost: ");
    bool v6 = std::strchr(url.origin.host, ':') != nullptr;
    if (v6) w.put("[");
    const std::size_t host_off = w.len;
    w.put(url.origin.host);
    if (v6) w.put("]");
    if (url.origin.port != (url.origin.tls ? 443 : 80)) {
      w.put(":");
      w.put_uint(url.origin.port);
    }
    w.put("\r\n");
    bool has_length = false;
    for (std::size_t i = 0; i < in.header_count; ++i) {
      const HttpHeader& h = in.headers[i];
      if (ascii_iequal(h.name, "Host") || ascii_iequal(h.name, "Content-Length") ||
          ascii_iequal(h.name, "Transfer-Encoding") || ascii_iequal(h.name, "Connection")) {
        continue;  // the client owns framing and connection management
      }
      w.put(h.name);
      w.put(": ");
      w.put(h.value);
      w.put("\r\n");
    }
    if (!in.body.empty() || in.method == "POST" || in.method == "PUT" || in.method == "PATCH") {
      w.put("Content-Length: ");
      w.put_uint(in.body.size());
      w.put("\r\n");
      has_length = true;
    }
    (void)has_length;
    w.put("\r\n");
    w.put(in.body);
    if (w.overflow) return reject(Errc::too_large);
    // Last of all, so a half-open breaker's trial goes to a request that is accepted.
    if (!breaker_allows(url.origin.view(), *q)) return reject(Errc::circuit_open);

    q->state = ReqState::queued;
    q->tls = url.origin.tls;
    q->port = url.origin.port;
    q->host_off = static_cast<std::uint32_t>(host_off);
    q->host_len = static_cast<std::uint16_t>(std::strlen(url.origin.host));
    q->tx_len = w.len;
    q->tx_off = 0;
    q->body_len = 0;
    q->head = in.method == "HEAD";
    q->idempotent = idempotent(in.method);
    q->retried = false;
    q->reused_conn = false;
    q->reached_origin = false;
    q->conn = nullptr;
    q->cb = std::move(cb);
    q->seq = next_seq++;
    q->attempt = 1;
    if (config.retry) q->backoff = Backoff(*config.retry);
    Duration timeout = in.timeout > Duration::zero() ? in.timeout : config.request_timeout;
    reactor.wheel().arm(q->deadline, reactor.now() + timeout);
    ++stats.requests;
    ++stats.queued;
    schedule_pump();
    return Errc::ok;
  }

  Errc reject(Errc e) {
    ++stats.rejected;
    return e;
  }

  void schedule_pump() {
    if (!pump_timer.armed()) reactor.wheel().arm(pump_timer, Instant(0));
  }

  static void on_pump(void* ctx) {
    Impl* impl = static_cast<Impl*>(ctx);
    Guard g(impl);
    if (!impl->closing) impl->pump();
  }

  // ---- ending requests (exactly once) ----

  // "host:port" for the breaker set; false if it does not fit a BreakerKey.
  static bool origin_key(const OriginView& o, char* out, std::size_t cap) {
    int n = std::snprintf(out, cap, "%.*s:%u", static_cast<int>(o.host.size()), o.host.data(),
                          static_cast<unsigned>(o.port));
    return n > 0 && static_cast<std::size_t>(n) < cap;
  }

  // Feeds the origin's breaker and the retry budget with one try's outcome, and decides
  // whether to try again. True: the request is backing off (no outcome delivered yet).
  bool retry_instead(Request& q, const Result<HttpResponse>& outcome, bool may_retry) {
    Errc e = outcome.ok() ? (outcome->status >= 500 ? Errc::failed : Errc::ok) : outcome.error();
    Instant now = reactor.now();
    if (config.breakers) {
      // Every try was admitted by the breaker and reports exactly once; one that ended
      // saying nothing about the origin gives its half-open trial back.
      const bool says_something =
          e != Errc::cancelled && e != Errc::shutdown && (e == Errc::ok || q.reached_origin);
      char key[kBreakerKeyMax + 1];
      if (origin_key(q.origin(), key, sizeof key)) {
        if (!says_something) {
          (void)config.breakers->record_abandoned(std::string_view(key), q.breaker_period);
        } else if (e == Errc::ok) {
          (void)config.breakers->record_success(std::string_view(key), now, Duration::zero(),
                                                q.breaker_period);
        } else {
          (void)config.breakers->record_failure(std::string_view(key), now, q.breaker_period);
        }
      }
    }
    const RetryPolicy* p = config.retry;
    if (!p || e == Errc::ok) {
      if (p && p->budget && e == Errc::ok) p->budget->record_success();
      return false;
    }
    if (!p->retry_on(e)) return false;
    if (p->budget) p->budget->record_failure();
    if (!may_retry || closing || q.attempt >= p->max_attempts || (!q.idempotent && !config.retry_non_idempotent)) {
      return false;
    }
    Duration delay = q.backoff.next(rng);
    if (!q.deadline.armed() || now + delay >= reactor.wheel().deadline(q.deadline)) return false;
    if (p->budget && !p->budget->allow_retry()) return false;
    // Give back the slot while waiting; the try after the backoff queues again.
    leave_queue_and_connection(q);
    q.state = ReqState::backing_off;
    ++stats.backing_off;
    ++q.attempt;
    q.retried = false;
    ++stats.retries;
    reactor.wheel().arm(q.retry_timer, now + delay);
    schedule_pump();
    return true;
  }

  // Takes `q` out of the queued or in-flight count and off its connection, as it stops
  // waiting (backoff) or ends; the caller sets its new state.
  void leave_queue_and_connection(Request& q) {
    if (q.state == ReqState::queued) {
      --stats.queued;
    } else if (q.state == ReqState::active) {
      --stats.in_flight;
    } else if (q.state == ReqState::backing_off) {
      --stats.backing_off;
    }
    if (q.conn) q.conn->req = nullptr;
    q.conn = nullptr;
  }

  // Asks the origin's breaker (if any) to admit one try of `q`; counts a refusal.
  bool breaker_allows(const OriginView& o, Request& q) {
    if (!config.breakers) return true;
    char key[kBreakerKeyMax + 1];
    if (!origin_key(o, key, sizeof key)) return true;
    if (config.breakers->allow(std::string_view(key), reactor.now(), &q.breaker_period) !=
        Errc::circuit_open) {
      return true;
    }
    ++stats.circuit_open;
    return false;
  }

  static void on_retry_due(void* ctx) {
    Request& q = *static_cast<Request*>(ctx);
    Impl& impl = *q.impl;
    Guard g(&impl);
    if (q.state != ReqState::backing_off) return;
    if (!impl.breaker_allows(q.origin(), q)) {
      // The origin's breaker opened while we waited: no further tries.
      impl.finish(q, Errc::circuit_open, false);
      return;
    }
    q.state = ReqState::queued;
    --impl.stats.backing_off;
    q.reached_origin = false;
    q.seq = impl.next_seq++;
    ++impl.stats.queued;
    impl.schedule_pump();
  }

  void finish(Request& q, Result<HttpResponse> outcome, bool may_retry = true) {
    if (q.state == ReqState::free) return;
    reactor.wheel().cancel(q.attempt_timer);  // this try is over, whatever comes next
    if (q.state != ReqState::backing_off && retry_instead(q, outcome, may_retry)) return;
    reactor.wheel().cancel(q.deadline);
    reactor.wheel().cancel(q.retry_timer);
    leave_queue_and_connection(q);
    q.state = ReqState::free;
    HttpCallback cb = std::move(q.cb);
    if (outcome.ok()) {
      ++stats.responses;
    } else {
      ++stats.failed;
      if (outcome.error() == Errc::timeout) ++stats.timed_out;
    }
    schedule_pump();  // a slot just freed
    cb(std::move(outcome));
  }

  // A try ran out of its own time (RetryPolicy::attempt_timeout) before the request's
  // deadline: it fails with timeout, and the policy decides whether another try follows.
  static void on_attempt_deadline(void* ctx) {
    Request& q = *static_cast<Request*>(ctx);
    Impl& impl = *q.impl;
    Guard g(&impl);
    Conn* c = q.conn;
    if (c) impl.close_conn(*c);  // a half-done exchange: not reusable
    impl.finish(q, Errc::timeout);
  }

  static void on_request_deadline(void* ctx) {
    Request& q = *static_cast<Request*>(ctx);
    Impl& impl = *q.impl;
    Guard g(&impl);
    Conn* c = q.conn;
    // The connection carried a half-done exchange: it cannot be reused.
    if (c) impl.close_conn(*c);
    impl.finish(q, Errc::timeout, false);
  }

  void cancel_all(Errc why) {
    for (std::size_t i = 0; i < req_capacity; ++i) {
      Request& q = reqs[i];
      if (q.state == ReqState::free) continue;
      if (q.conn) close_conn(*q.conn);
      finish(q, why, false);
    }
  }

  // ---- scheduling ----

  std::size_t conns_for(const OriginView& o) const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < config.max_connections; ++i) {
      if (conns[i].state != ConnState::free && conns[i].origin.same(o)) ++n;
    }
    return n;
  }

  // True if the pooled connection is still usable: nothing to read and no EOF.
  bool healthy(Conn& c) {
    // Always peek, even for a connection parked this very turn: a FIN or stray bytes
    // may have arrived with the answer (mbedTLS reads one record at a time), and only
    // the socket shows them.
    char probe;
    ssize_t n = ::recv(c.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return !c.ssl_setup || mbedtls_ssl_get_bytes_avail(&c.ssl) == 0;
    }
    return false;  // EOF, an error, or unexpected bytes (e.g. a TLS close_notify)
  }

  // Could a request for `o` go on the wire now? (No side effects.)
  bool can_serve(const OriginView& o) const {
    bool spare = false;
    for (std::size_t i = 0; i < config.max_connections; ++i) {
      const Conn& c = conns[i];
      if (c.state == ConnState::idle && c.origin.same(o)) return true;
      if (c.state == ConnState::free || c.state == ConnState::idle) spare = true;
    }
    return spare && conns_for(o) < config.max_per_origin;
  }

  void pump() {
    // Requests made during this pump (from a callback that start() ran synchronously)
    // wait for the next turn: a callback that asks again on every error would otherwise
    // keep the reactor in this loop, with no timer or I/O running.
    const std::uint64_t horizon = next_seq;
    while (stats.in_flight < config.max_in_flight && stats.queued > 0) {
      // The oldest queued request that can get a connection now: FIFO per origin, and
      // an origin at its connection limit does not hold up the others.
      Request* pick = nullptr;
      for (std::size_t i = 0; i < req_capacity; ++i) {
        Request& q = reqs[i];
        if (q.state != ReqState::queued || q.seq >= horizon || (pick && pick->seq < q.seq)) continue;
        if (can_serve(q.origin())) pick = &q;
      }
      if (!pick) break;
      bool fresh = false;
      Conn* conn = acquire_conn(pick->origin(), &fresh);
      if (!conn) break;
      start(*pick, *conn, fresh);
    }
    // A request left for the next turn is pumped then if it could start (one that
    // cannot waits for a connection to free up, which pumps again).
    if (stats.in_flight >= config.max_in_flight) return;
    for (std::size_t i = 0; i < req_capacity; ++i) {
      Request& q = reqs[i];
      if (q.state == ReqState::queued && q.seq >= horizon && can_serve(q.origin())) {
        schedule_pump();
        return;
      }
    }
  }

  // A healthy pooled connection for `o`, else a free slot (closing the first idle
  // connection of another origin if none is free). nullptr when neither exists.
  Conn* acquire_conn(const OriginView& o, bool* fresh) {
    *fresh = false;
    for (std::size_t i = 0; i < config.max_connections; ++i) {
      Conn& c = conns[i];
      if (c.state != ConnState::idle || !c.origin.same(o)) continue;
      if (healthy(c)) return &c;
      ++stats.stale_closed;
      close_conn(c);
    }
    if (conns_for(o) >= config.max_per_origin) return nullptr;
    Conn* idle_other = nullptr;
    for (std::size_t i = 0; i < config.max_connections; ++i) {
      Conn& c = conns[i];
      if (c.state == ConnState::free) {
        *fresh = true;
        return &c;
      }
      if (c.state == ConnState::idle && !idle_other) idle_other = &c;
    }
    if (!idle_other) return nullptr;
    close_conn(*idle_other);
    *fresh = true;
    return idle_other;
  }

  void start(Request& q, Conn& c, bool fresh) {
    --stats.queued;
    ++stats.in_flight;
    q.state = ReqState::active;
    q.conn = &c;
    c.req = &q;
    q.reached_origin = !fresh;
    // Cut to the request's deadline, which fires first anyway when it is sooner.
    if (config.retry && config.retry->attempt_timeout != Duration::max() && q.deadline.armed()) {
      const Instant limit = reactor.now() + config.retry->attempt_timeout;
      if (limit < reactor.wheel().deadline(q.deadline)) reactor.wheel().arm(q.attempt_timer, limit);
    }
    if (!fresh) {
      ++stats.reuses;
      q.reused_conn = true;
      reactor.wheel().cancel(c.timer);  // the idle timeout
      c.state = ConnState::busy;
      begin_exchange(c);
      return;
    }
    q.reused_conn = false;
    c.origin.assign(q.origin());
    c.served = 0;
    ++stats.open_connections;
    c.connect_deadline = reactor.now() + config.connect_timeout;
    reactor.wheel().arm(c.timer, c.connect_deadline);
    c.addr_count = 0;
    c.addr_next = 0;
    unsigned char ip[16];
    const std::size_t ip_len = ip_literal(c.origin.host, ip);
    if (ip_len == 0) {
      resolve(c);
      return;
    }
    ConnectAddress& a = c.addrs[0];
    if (ip_len == 4) {
      a.v4 = sockaddr_in{};
      a.v4.sin_family = AF_INET;
      a.v4.sin_port = htons(c.origin.port);
      std::memcpy(&a.v4.sin_addr, ip, 4);
      a.len = sizeof a.v4;
    } else {
      a.v6 = sockaddr_in6{};
      a.v6.sin6_family = AF_INET6;
      a.v6.sin6_port = htons(c.origin.port);
      std::memcpy(&a.v6.sin6_addr, ip, 16);
      a.len = sizeof a.v6;
    }
    c.addr_count = 1;
    connect_next(c);
  }

  // ---- DNS ----

  void resolve(Conn& c) {
    c.state = ConnState::resolving;
    // Made at the first host name (reading /etc/resolv.conf then), so a client that
    // only ever connects to IP literals carries no resolver (~1.5 KB). A lookup allocates
    // anyway, like the TLS handshake that follows.
    if (!dns_base) {
      dns_base = evdns_base_new(reactor.port_state().base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
      if (!dns_base) dns_base = evdns_base_new(reactor.port_state().base, 0);
      if (dns_base && config.hosts_file && evdns_base_load_hosts(dns_base, config.hosts_file) != 0) {
        evdns_base_free(dns_base, 1);  // a later host name tries the file again
        dns_base = nullptr;
      }
    }
    DnsCookie* cookie = dns_base ? take_dns_cookie(&c) : nullptr;
    if (!cookie) {
      fail_conn(c, Errc::dns);
      return;
    }
    c.dns_cookie = cookie;
    evutil_addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    char port[8];
    std::snprintf(port, sizeof port, "%u", static_cast<unsigned>(c.origin.port));
    c.dns = nullptr;
    // The origin's name going unanswered or unknown is the origin's failure too.
    if (c.req) c.req->reached_origin = true;
    evdns_getaddrinfo_request* r =
        evdns_getaddrinfo(dns_base, c.origin.host, port, &hints, &Impl::on_resolved, cookie);
    // A NULL return means the callback already ran (cached, /etc/hosts or an error).
    if (r && c.state == ConnState::resolving) c.dns = r;
  }

  static void on_resolved(int result, evutil_addrinfo* res, void* arg) {
    auto* cookie = static_cast<DnsCookie*>(arg);
    auto* waiting = static_cast<Conn*>(cookie->conn);
    cookie->in_use = false;
    cookie->conn = nullptr;
    if (!waiting || result == EVUTIL_EAI_CANCEL) {  // the connection gave up meanwhile
      if (res) evutil_freeaddrinfo(res);
      return;
    }
    Conn& c = *waiting;
    c.dns = nullptr;
    c.dns_cookie = nullptr;
    Impl& impl = *c.impl;
    Guard g(&impl);
    if (c.state != ConnState::resolving) {
      if (res) evutil_freeaddrinfo(res);
      return;
    }
    if (result != 0 || !res) {
      if (res) evutil_freeaddrinfo(res);
      impl.fail_conn(c, Errc::dns);
      return;
    }
    c.addr_count = 0;
    c.addr_next = 0;
    for (evutil_addrinfo* ai = res; ai && c.addr_count < kMaxConnectAddresses; ai = ai->ai_next) {
      ConnectAddress& a = c.addrs[c.addr_count];
      if (ai->ai_family == AF_INET && ai->ai_addrlen == sizeof a.v4) {
        std::memcpy(&a.v4, ai->ai_addr, sizeof a.v4);
      } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen == sizeof a.v6) {
        std::memcpy(&a.v6, ai->ai_addr, sizeof a.v6);
      } else {
        continue;
      }
      a.len = static_cast<socklen_t>(ai->ai_addrlen);
      ++c.addr_count;
    }
    evutil_freeaddrinfo(res);
    if (c.addr_count == 0) {
      impl.fail_conn(c, Errc::dns);
      return;
    }
    impl.connect_next(c);
  }

  // ---- TCP ----

  // Starts a connect to the next address not yet tried; an address that fails at once
  // (no socket for its family, unreachable, refused) gives way to the one after it. When
  // none is left the request ends with Errc::io. An attempt that hangs (an address that
  // drops packets) gives way too, when its share of the time left runs out: the time
  // left before c.connect_deadline split evenly over the addresses not yet tried.
  void connect_next(Conn& c) {
    c.state = ConnState::connecting;
    while (c.addr_next < c.addr_count) {
      if (c.addr_next > 0) ++stats.connect_failovers;
      const ConnectAddress& a = c.addrs[c.addr_next++];
      c.fd = ::socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
      if (c.fd < 0) continue;
      int one = 1;
      (void)::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ++stats.connections_opened;
      if (c.req) c.req->reached_origin = true;
      if (::connect(c.fd, &a.sa, a.len) != 0 && errno != EINPROGRESS) {
        close_socket(c);
        continue;
      }
      const Instant now = reactor.now();
      const int after_this = c.addr_count - c.addr_next;
      Instant until = c.connect_deadline;
      if (after_this > 0 && now < c.connect_deadline) {
        until = now + Duration((c.connect_deadline - now).us / (after_this + 1));
      }
      reactor.wheel().arm(c.timer, until);
      set_interest(c, kWritable);  // last: on failure it ends the connection, timer included
      return;
    }
    fail_conn(c, Errc::io);
  }

  void set_interest(Conn& c, unsigned events) {
    if (c.watching && c.interest == events) return;
    if (c.watching) {
      if (reactor.modify(c.watch, events) == Errc::ok) {
        c.interest = events;
        return;
      }
      (void)reactor.unwatch(c.watch);
      c.watching = false;
    }
    Result<WatchHandle> h = reactor.watch(c.fd, events, [&c](unsigned ev) {
      Guard g(c.impl);
      c.impl->on_io(c, ev);
    });
    if (!h) {
      if (c.req) c.req->reached_origin = false;  // our shortage, not the origin's fault
      fail_conn(c, Errc::io);
      return;
    }
    c.watch = *h;
    c.watching = true;
    c.interest = events;
  }

  void on_io(Conn& c, unsigned events) {
    switch (c.state) {
      case ConnState::connecting: on_connected(c); break;
      case ConnState::handshaking: handshake(c); break;
      case ConnState::busy: drive(c, events); break;
      case ConnState::idle:
        // The server closed (or wrote to) a pooled connection: it cannot be reused.
        ++stats.stale_closed;
        close_conn(c);
        schedule_pump();
        break;
      default: break;
    }
  }

  void on_connected(Conn& c) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      // Refused, unreachable or reset before it was established: the next address.
      close_socket(c);
      connect_next(c);
      return;
    }
    if (!c.origin.tls) {
      reactor.wheel().cancel(c.timer);
      c.state = ConnState::busy;
      begin_exchange(c);
      return;
    }
    // TLS: the slot's context is set up once and reset for every new connection.
    int rc = 0;
    if (!c.ssl_setup) {
      rc = mbedtls_ssl_setup(&c.ssl, &ssl_conf);
      c.ssl_setup = rc == 0;
    } else {
      rc = mbedtls_ssl_session_reset(&c.ssl);
    }
    // No SNI for an IP literal (RFC 6066 §3); NULL also clears the name a previous
    // connection of this slot left (a session reset keeps it). verify_peer_name then
    // does the whole name check, since mbedTLS checks none without a host name.
    unsigned char ip[16];
    if (rc == 0) rc = mbedtls_ssl_set_hostname(&c.ssl, ip_literal(c.origin.host, ip) ? nullptr : c.origin.host);
    if (rc != 0) {
      fail_conn(c, Errc::tls);
      return;
    }
    mbedtls_ssl_set_bio(&c.ssl, &c, &Impl::bio_send, &Impl::bio_recv, nullptr);
    c.transport_eof = false;
    mbedtls_ssl_set_verify(&c.ssl, &Impl::verify_peer_name, &c);
    c.resumed = false;
    if (SavedSession* saved = find_session(c.origin.view())) (void)mbedtls_ssl_set_session(&c.ssl, &saved->session);
    ++stats.tls_handshakes;
    c.state = ConnState::handshaking;
    reactor.wheel().arm(c.timer, reactor.now() + config.tls_timeout);
    handshake(c);
  }

  // For an IP-literal origin (sent without a host name, so mbedTLS matched no name) the
  // leaf must carry an iPAddress SAN equal to the address (see cert_has_ip_san), else it
  // fails as a name mismatch, like a host name that matches none of its DNS names.
  // mbedTLS checks host names itself.
  static int verify_peer_name(void* ctx, mbedtls_x509_crt* crt, int depth, std::uint32_t* flags) {
    Conn& c = *static_cast<Conn*>(ctx);
    if (depth != 0) return 0;
    unsigned char ip[16];
    std::size_t ip_len = ip_literal(c.origin.host, ip);
    if (ip_len == 0) return 0;
    if (!cert_has_ip_san(crt, ip, ip_len)) *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
  }

  static int bio_send(void* ctx, const unsigned char* buf, std::size_t len) {
    Conn& c = *static_cast<Conn*>(ctx);
    ssize_t n = ::send(c.fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_WRITE;
    return MBEDTLS_ERR_NET_SEND_FAILED;
  }

  static int bio_recv(void* ctx, unsigned char* buf, std::size_t len) {
    Conn& c = *static_cast<Conn*>(ctx);
    ssize_t n = ::recv(c.fd, buf, len, 0);
    if (n == 0 && len > 0) c.transport_eof = true;
    if (n >= 0) return static_cast<int>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_READ;
    return MBEDTLS_ERR_NET_RECV_FAILED;
  }

  // mbedtls_ssl_handshake() one step at a time, to see which way the ServerHello took it.
  // mbedTLS 2.28 has no "was resumed" query, and neither the verify callback (not run
  // without verification) nor the session id (a ticket resumption brings a fresh one)
  // tells; but a client that resumes goes from the ServerHello straight to the server's
  // ChangeCipherSpec, while a full handshake goes on to the server's Certificate.
  void handshake(Conn& c) {
    int rc = 0;
    while (c.ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
      const int before = c.ssl.state;
      rc = mbedtls_ssl_handshake_step(&c.ssl);
      if (before == MBEDTLS_SSL_SERVER_HELLO && c.ssl.state == MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC) {
        c.resumed = true;
      }
      if (rc != 0) break;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ) {
      set_interest(c, kReadable);
      return;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
      set_interest(c, kWritable);
      return;
    }
    if (rc != 0) {
      fail_conn(c, rc == MBEDTLS_ERR_NET_RECV_FAILED || rc == MBEDTLS_ERR_NET_SEND_FAILED ? Errc::io : Errc::tls);
      return;
    }
    reactor.wheel().cancel(c.timer);
    if (c.resumed) ++stats.tls_resumed;
    save_session(c);
    c.state = ConnState::busy;
    begin_exchange(c);
  }

  // ---- TLS sessions, one per origin ----

  SavedSession* find_session(const OriginView& o) {
    for (std::size_t i = 0; i < session_capacity; ++i) {
      if (sessions[i] && sessions[i]->valid && sessions[i]->origin.same(o)) return sessions[i];
    }
    return nullptr;
  }

  // Keeps the connection's new session as its origin's, replacing the origin's previous
  // one, or in an unused entry, or a new one (up to tls_session_cache), or in place of the
  // least recently saved. Only after a handshake, which allocates anyway: an entry (and
  // mbedTLS's copy of the session's ticket) is made at most once per cache slot, so the
  // total stays bounded and a client that never resumes pays nothing.
  void save_session(Conn& c) {
    const OriginView o = c.origin.view();
    SavedSession* e = find_session(o);
    for (std::size_t i = 0; i < session_capacity && !e; ++i) {  // an unused entry
      if (sessions[i] && !sessions[i]->valid) e = sessions[i];
    }
    for (std::size_t i = 0; i < session_capacity && !e; ++i) {  // a new one
      if (sessions[i]) continue;
      sessions[i] = new (std::nothrow) SavedSession;
      if (!sessions[i]) break;  // out of memory: the least recently saved makes way
      mbedtls_ssl_session_init(&sessions[i]->session);
      e = sessions[i];
    }
    if (!e) {  // all in use: the least recently saved makes way
      for (std::size_t i = 0; i < session_capacity; ++i) {
        if (sessions[i] && (!e || sessions[i]->saved_at < e->saved_at)) e = sessions[i];
      }
      if (!e) return;
    }
    mbedtls_ssl_session_free(&e->session);
    mbedtls_ssl_session_init(&e->session);
    e->valid = mbedtls_ssl_get_session(&c.ssl, &e->session) == 0;
#if defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE) && MBEDTLS_VERSION_MAJOR < 3
    // Resuming needs the master secret and the ticket or session id, not the peer's
    // certificate, which the full handshake verified (mbedTLS's documentation of its
    // session cache suggests the same): the saved copy drops it, 1-2 KB.
    if (e->session.peer_cert) {
      mbedtls_x509_crt_free(e->session.peer_cert);
      mbedtls_free(e->session.peer_cert);
      e->session.peer_cert = nullptr;
    }
#endif
    e->origin = c.origin;
    e->saved_at = ++session_clock;
  }

  // ---- one request/response exchange ----

  void begin_exchange(Conn& c) {
    Request* q = c.req;
    if (!q) {
      park(c);
      return;
    }
    q->tx_off = 0;
    q->body_len = 0;
    c.got_response_bytes = false;
    c.parser->reset(q->head, q->response, config.max_response_bytes);
    drive(c, kWritable);
  }

  void drive(Conn& c, unsigned events) {
    Request* q = c.req;
    if (!q) {
      close_conn(c);
      return;
    }
    if (q->tx_off < q->tx_len) {
      if (!write_some(c, *q)) return;
      if (q->tx_off < q->tx_len) {
        set_interest(c, kWritable);
        return;
      }
      set_interest(c, kReadable);
      return;  // the answer cannot be there yet: wait for readability
    }
    if (events & kReadable) read_some(c, *q);
  }

  // False when the connection failed (already handled).
  bool write_some(Conn& c, Request& q) {
    while (q.tx_off < q.tx_len) {
      const char* p = q.tx + q.tx_off;
      std::size_t n = q.tx_len - q.tx_off;
      if (c.origin.tls) {
        // mbedTLS requires a WANT_WRITE to be retried with the same arguments: the
        // unsent remainder from tx_off is exactly that.
        int rc = mbedtls_ssl_write(&c.ssl, reinterpret_cast<const unsigned char*>(p), n);
        if (rc == MBEDTLS_ERR_SSL_WANT_WRITE || rc == MBEDTLS_ERR_SSL_WANT_READ) return true;
        if (rc < 0) return exchange_failed(c, q, Errc::io);
        q.tx_off += static_cast<std::size_t>(rc);
      } else {
        ssize_t rc = ::send(c.fd, p, n, MSG_NOSIGNAL);
        if (rc < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
          return exchange_failed(c, q, Errc::io);
        }
        q.tx_off += static_cast<std::size_t>(rc);
      }
    }
    return true;
  }

  void read_some(Conn& c, Request& q) {
    // A stack buffer: mbedTLS already holds the whole record, and plain TCP bytes go
    // straight into the parser, so a per-connection buffer would only cost memory.
    char rx[4096];
    const std::size_t chunk = config.read_buffer_bytes < sizeof rx ? config.read_buffer_bytes : sizeof rx;
    // Read until the socket and mbedTLS's own buffer are drained: bytes left decrypted
    // inside mbedTLS would never make the socket readable again. Bounded all the same,
    // since every byte goes to a response limited by max_response_bytes.
    for (;;) {
      int n;
      // A close-delimited body is whole only if the stream really ended: over TLS, with
      // the peer's close_notify. mbedTLS reads a bare TCP FIN as 0 too, and that is
      // what an attacker who cuts the connection would send (RFC 9112 §9.8).
      bool clean_eof = !c.origin.tls;
      if (c.origin.tls) {
        n = mbedtls_ssl_read(&c.ssl, reinterpret_cast<unsigned char*>(rx), chunk);
        if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE) return;
        if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
          n = 0;
          clean_eof = true;
        } else if (n == 0 && !c.transport_eof) {
          // Empty records (legal, sent e.g. against IV prediction), not the end of the
          // stream: read on. mbedTLS fails a long run of them itself, so this ends.
          continue;
        }
        if (n < 0) {
          exchange_failed(c, q, n == MBEDTLS_ERR_NET_RECV_FAILED || n == MBEDTLS_ERR_NET_CONN_RESET ? Errc::io : Errc::tls);
          return;
        }
      } else {
        ssize_t r = ::recv(c.fd, rx, chunk, 0);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
          exchange_failed(c, q, Errc::io);
          return;
        }
        n = static_cast<int>(r);
      }
      if (n == 0) {  // EOF
        Errc e = c.got_response_bytes ? c.parser->on_eof() : Errc::io;
        if (e == Errc::ok && !clean_eof) e = Errc::tls;  // truncated: see clean_eof
        if (e == Errc::ok && c.parser->complete()) {
          deliver(c, q, false);
        } else {
          exchange_failed(c, q, e == Errc::ok ? Errc::io : e);
        }
        return;
      }
      c.got_response_bytes = true;
      // The body follows the head in the response arena.
      BodySink sink = [&q, &c, this](const char* data, std::size_t len) -> Errc {
        std::size_t at = c.parser->head_bytes() + q.body_len;
        if (len > config.max_response_bytes - at) return Errc::too_large;
        std::memcpy(q.response + at, data, len);
        q.body_len += len;
        return Errc::ok;
      };
      Result<std::size_t> used = c.parser->feed(rx, static_cast<std::size_t>(n), sink);
      if (!used) {
        exchange_failed(c, q, used.error());
        return;
      }
      if (c.parser->complete()) {
        // Bytes after the response mean a confused peer: do not reuse the connection.
        bool leftovers = *used < static_cast<std::size_t>(n);
        deliver(c, q, !leftovers && c.parser->keep_alive());
        return;
      }
    }
  }

  void deliver(Conn& c, Request& q, bool keep) {
    ++c.served;
    HttpResponse resp;
    resp.status = c.parser->status();
    resp.body = std::string_view(q.response + c.parser->head_bytes(), q.body_len);
    resp.parser = c.parser;
    c.req = nullptr;
    q.conn = nullptr;
    if (keep && (config.max_requests_per_connection == 0 || c.served < config.max_requests_per_connection)) {
      park(c);
    } else {
      close_conn(c);
    }
    // The head (in the request slot's arena) and the parser's index of it stay until
    // either is reused by another exchange, which cannot start before the callback
    // returns (pump runs on a later turn).
    finish(q, resp);
  }

  // A pooled connection waits for its next request, watched so a close is noticed.
  void park(Conn& c) {
    c.state = ConnState::idle;
    set_interest(c, kReadable);
    if (c.state == ConnState::idle) reactor.wheel().arm(c.timer, reactor.now() + config.idle_timeout);
    schedule_pump();
  }

  // Returns false (for write_some's callers).
  bool exchange_failed(Conn& c, Request& q, Errc e) {
    bool stale = q.reused_conn && !c.got_response_bytes && (e == Errc::io || e == Errc::tls);
    close_conn(c);
    if (stale) ++stats.stale_closed;
    if (stale && q.idempotent && !q.retried) {
      // The server had closed a pooled connection we could not see closing yet: try
      // once more on a fresh one, keeping the request's place and deadline.
      ++stats.stale_retries;
      q.retried = true;
      q.conn = nullptr;
      q.reached_origin = false;                  // start() decides again
      reactor.wheel().cancel(q.attempt_timer);  // start() arms it again
      q.state = ReqState::queued;
      --stats.in_flight;
      ++stats.queued;
      schedule_pump();
      return false;
    }
    finish(q, e);
    return false;
  }

  // ---- connection lifetime ----

  static void on_conn_timer(void* ctx) {
    Conn& c = *static_cast<Conn*>(ctx);
    Impl& impl = *c.impl;
    Guard g(&impl);
    if (c.state == ConnState::idle) {
      impl.close_conn(c);
      return;
    }
    // A connect attempt's share of the time ran out, but not the deadline: the next address.
    if (c.state == ConnState::connecting && c.addr_next < c.addr_count &&
        impl.reactor.now() < c.connect_deadline) {
      impl.close_socket(c);
      impl.connect_next(c);
      return;
    }
    impl.fail_conn(c, Errc::timeout);
  }

  // Ends the connection and, if it carried a request, that request with `e`.
  void fail_conn(Conn& c, Errc e) {
    Request* q = c.req;
    close_conn(c);
    if (q) finish(*q, e);
  }

  // Stops watching the socket and closes it; the slot keeps its state.
  void close_socket(Conn& c) {
    if (c.watching) {
      (void)reactor.unwatch(c.watch);
      c.watching = false;
    }
    c.interest = 0;
    if (c.fd >= 0) {
      ::close(c.fd);
      c.fd = -1;
    }
  }

  void close_conn(Conn& c) {
    if (c.state == ConnState::free) return;
    reactor.wheel().cancel(c.timer);
    if (c.dns_cookie) {
      c.dns_cookie->conn = nullptr;  // a late answer (or the cancel) finds nobody
      c.dns_cookie = nullptr;
    }
    if (c.dns) {
      evdns_getaddrinfo_request* r = c.dns;
      c.dns = nullptr;
      evdns_getaddrinfo_cancel(r);
    }
    if (c.fd >= 0 && c.origin.tls && c.ssl_setup && c.state == ConnState::idle) {
      (void)mbedtls_ssl_close_notify(&c.ssl);
    }
    close_socket(c);
    if (c.req) c.req->conn = nullptr;
    c.req = nullptr;
    c.state = ConnState::free;
    c.interest = 0;
    --stats.open_connections;
  }
};

// ---- public surface ----

HttpClient::HttpClient(Reactor& reactor, const HttpClientConfig& config)
    : impl_(new (std::nothrow) Impl(reactor, config)) {
  if (!impl_) panic("HttpClient: out of memory at start-up");
  impl_->init();
}

HttpClient::~HttpClient() {
  if (impl_->depth > 0) {
    // Destroyed from inside one of our callbacks: end everything now, free later (the
    // outermost Guard deletes the Impl once the callbacks on the stack have returned).
    impl_->closing = true;
    impl_->destroy_requested = true;
    impl_->cancel_all(Errc::cancelled);
    return;
  }
  delete impl_;
}

Errc HttpClient::request(const HttpRequest& req, HttpCallback on_response) {
  return impl_->submit(req, std::move(on_response));
}

void HttpClient::cancel_all() {
  Impl::Guard g(impl_);
  impl_->cancel_all(Errc::cancelled);
}

const HttpClientStats& HttpClient::stats() const { return impl_->stats; }

Errc HttpClient::init_error() const { return impl_->init_error; }

}  // namespace tern
