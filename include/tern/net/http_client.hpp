// HttpClient: HTTP/1.1 over TLS (mbedTLS) or plain TCP, on a Reactor, with bounded
// concurrency (a semaphore of max_in_flight), a bounded FIFO wait queue, a keep-alive pool
// per origin with a health check before reuse, and deadlines for connect, TLS and the
// whole request. Every accepted request's callback runs exactly once, never from inside
// request(). Linux port only.
//
//   tern::HttpClient client(reactor, tern::HttpClientConfig{.max_in_flight = 8});
//   tern::HttpRequest req{.method = "POST", .url = "https://127.0.0.1:8443/v1/embeddings",
//                         .body = json, .timeout = tern::seconds(10)};
//   req.headers[0] = {"Content-Type", "application/json"};
//   req.header_count = 1;
//   (void)client.request(req, [](tern::Result<tern::HttpResponse> r) { ... });
//
// Memory: every connection slot (TLS context, parser state and header index) and every
// request slot (serialized request; response arena for the head and body) is allocated
// once in the constructor. With a warm pool, keep-alive traffic allocates nothing; only a
// new TLS handshake does (mbedTLS's record buffers, ~33 KB per connection with its
// default build, and the peer certificate), bounded by max_connections; the last session
// of each of tls_session_cache origins is kept once, for resumption by any connection to
// that origin. See examples/embed_client and docs/BENCHMARKS.md ("Where the memory goes").
//
// Certificates: a host name is sent as SNI and matched against the certificate's DNS
// names (by mbedTLS); an IP literal (https://127.0.0.1/, https://[::1]/) is never sent
// as SNI (RFC 6066 §3) and must equal one of the certificate's iPAddress names (checked
// by tern, since mbedTLS 2.28 does not).
//
// Addresses: a host name may resolve to several addresses; the first
// kMaxConnectAddresses are tried in the resolver's order until a TCP connect succeeds,
// all within connect_timeout. An attempt that is refused moves on at once; one that
// hangs moves on when its share of the time left runs out (the time left split evenly
// over the addresses not yet tried), so one address that drops packets cannot use up
// the whole deadline.

#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/time.hpp"
#include "tern/net/http_parser.hpp"
#include "tern/reactor/reactor.hpp"
#include "tern/resilience/circuit_breaker.hpp"
#include "tern/resilience/retry.hpp"

namespace tern {

struct HttpClientConfig {
  std::size_t max_in_flight = 8;        // requests on the wire at once (the semaphore)
  std::size_t max_connections = 8;      // pooled connection slots, all origins together
  std::size_t max_per_origin = 8;       // connections to one scheme://host:port
  // Requests waiting beyond those that can start now (full: Errc::full). What can start
  // is max_in_flight, or max_connections when fewer; a per-origin limit is not counted.
  std::size_t queue_length = 32;
  // Timeouts so long that now + timeout would pass Instant::never() (Duration(INT64_MAX))
  // mean no limit.
  Duration connect_timeout = seconds(5);  // DNS + every TCP connect attempt
  Duration tls_timeout = seconds(5);      // the handshake
  Duration request_timeout = seconds(30); // default whole-request deadline
  Duration idle_timeout = seconds(30);    // a pooled connection unused this long closes
  std::size_t max_requests_per_connection = 0;  // then reconnect; 0: no limit
  // Every request slot (max_in_flight + queue_length of them) holds these two buffers.
  std::size_t max_request_bytes = 4096;   // request line + headers + body, serialized
  // The response arena: the response's head as kept for HttpResponse::header() (the
  // reason phrase and every header field's name and value, without separators, line
  // endings or the whitespace around values: a head of R raw bytes takes less than R)
  // and then its decoded body. A response that does not fit is Errc::too_large; the body
  // can use whatever the head leaves.
  std::size_t max_response_bytes = 16384;
  std::size_t read_buffer_bytes = 4096;   // bytes per read (a stack buffer, at most 4096)
  // Response head limits, checked as it arrives: max_header_bytes bounds the raw bytes of
  // the status line and header lines (and of the trailer lines and chunk extensions), over
  // it is Errc::too_large; max_headers the header fields, over it too_large (each
  // connection keeps an index of max_headers entries, 16 B each). The head is kept in the
  // request slot's arena (max_response_bytes), never in a buffer of max_header_bytes.
  // limits.max_body is replaced by max_response_bytes.
  HttpLimits limits{.max_header_bytes = 4096, .max_headers = 32, .max_body = 16384};
  // Origins (scheme, host, port) whose last TLS session is kept for resumption, shared by
  // all of that origin's connections; the least recently saved goes first. Each entry
  // costs ~430 B, and while it holds a session the session's copy of the peer certificate
  // (1-2 KB, allocated at a handshake). 0: no resumption.
  std::size_t tls_session_cache = 4;
  const char* ca_file = "/etc/ssl/certs/ca-certificates.crt";
  // Optional: a file in /etc/hosts format whose entries the resolver adds to
  // /etc/hosts's (fixed names on a device; the tests give one name two addresses).
  // Read when the resolver is made, at the first host name; while it cannot be
  // read, requests to host names end with Errc::dns.
  const char* hosts_file = nullptr;
  // Optional resilience. `retry`: a failed request (an error the policy's retry_on
  // accepts, or a 5xx status, seen as Errc::failed) is tried again after the policy's
  // backoff, within its own deadline and budget — idempotent methods only unless
  // retry_non_idempotent. A try that outlasts the policy's attempt_timeout fails with
  // timeout (its connection closed) and may be retried. `breakers`: one breaker per
  // origin ("host:port"); a request to an open origin fails at the call with
  // Errc::circuit_open and takes no slot; only tries that reached the origin (its name
  // was looked up, a connect made, or a pooled connection used) count, not one that
  // timed out in the client's queue or met a local shortage. Both must outlive the client.
  const RetryPolicy* retry = nullptr;
  bool retry_non_idempotent = false;
  BreakerSetBase* breakers = nullptr;
  std::uint64_t seed = 1;  // for the backoff's jitter
  // DANGER: accepts any certificate for any host name. For tests against throwaway
  // servers only; never in a product.
  bool insecure_skip_verify_DANGEROUS = false;
};

inline constexpr std::size_t kMaxRequestHeaders = 16;
// Resolved addresses a connection tries in turn (the resolver's first ones).
inline constexpr std::size_t kMaxConnectAddresses = 4;

struct HttpRequest {
  std::string_view method = "GET";
  std::string_view url;                 // http://host[:port]/path or https://...
  HttpHeader headers[kMaxRequestHeaders] = {};
  std::size_t header_count = 0;
  std::string_view body;
  // zero: HttpClientConfig::request_timeout; past the clock's range (Duration(INT64_MAX)):
  // no deadline.
  Duration timeout = Duration::zero();
};

// A response as seen inside the callback; its views die when the callback returns.
struct HttpResponse {
  int status = 0;
  std::string_view body;
  const HttpResponseParser* parser = nullptr;  // headers
  std::optional<std::string_view> header(std::string_view name) const {
    return parser ? parser->header(name) : std::nullopt;
  }
};

using HttpCallback = InplaceFunction<void(Result<HttpResponse>), 4 * sizeof(void*)>;

struct HttpClientStats {
  std::uint64_t requests = 0;           // accepted
  std::uint64_t responses = 0;          // ended with a response (any status)
  std::uint64_t failed = 0;             // ended with an error (timeouts included)
  std::uint64_t timed_out = 0;
  std::uint64_t rejected = 0;           // refused at request(): full / invalid / too_large
  std::uint64_t connections_opened = 0;  // sockets opened (every connect attempt)
  std::uint64_t connect_failovers = 0;   // a connect failed and the next address was tried
  std::uint64_t tls_handshakes = 0;
  std::uint64_t tls_resumed = 0;        // handshakes that resumed a saved session
  std::uint64_t reuses = 0;             // requests sent on a pooled connection
  std::uint64_t stale_closed = 0;       // pooled connections found closed by the peer
  std::uint64_t stale_retries = 0;      // idempotent requests retried after a stale reuse
  std::uint64_t retries = 0;            // tries again under HttpClientConfig::retry
  std::uint64_t circuit_open = 0;       // refused at the call by an open breaker
  std::size_t in_flight = 0;
  std::size_t queued = 0;
  std::size_t backing_off = 0;          // waiting out a retry backoff, to queue again
  std::size_t open_connections = 0;
};

class HttpClient {
 public:
  // Loads the CA file (unless verification is off) and allocates every slot. A CA file
  // that cannot be loaded leaves the client unusable: every request() returns Errc::tls
  // (see init_error()).
  HttpClient(Reactor& reactor, const HttpClientConfig& config = HttpClientConfig{});
  // Cancels what is queued or in flight (callbacks run with Errc::cancelled) and closes
  // every connection.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Queues `req` (copied: the caller's views may die after this returns). on_response
  // runs exactly once — the response (any status), or Errc timeout, io (connection
  // reset, or refused at every address tried), tls (handshake or certificate), dns,
  // protocol (malformed response), too_large (response over a limit), cancelled — if
  // this returns ok.
  // Errors at the call (no callback): full (queue full), invalid_argument (bad URL,
  // CR/LF in a header, empty callback), too_large (request over max_request_bytes),
  // tls (the client could not load its CA file), circuit_open (the origin's breaker is
  // open; with HttpClientConfig::breakers), shutdown (called while the client is
  // being destroyed, e.g. from a callback its destructor runs).
  Errc request(const HttpRequest& req, HttpCallback on_response);

  // Ends every queued and in-flight request with Errc::cancelled.
  void cancel_all();

  const HttpClientStats& stats() const;
  Errc init_error() const;

  struct Impl;

 private:
  Impl* impl_;
};

}  // namespace tern
