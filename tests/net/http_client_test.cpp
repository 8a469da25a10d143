// HttpClient against a real, fault-injecting upstream (tests/tools/upstream.py)
// on loopback, over TLS with throwaway certificates
// (tests/tools/make_certs.sh), on a real Reactor with the Linux backend. Every
// fault gives the documented Errc to exactly that request and the client
// recovers: the next request on the same client succeeds.
//
// meson passes TERN_UPSTREAM (upstream.py), TERN_MAKE_CERTS (make_certs.sh),
// TERN_PYTHON and TERN_SCRATCH (a directory for the certificates). Timing is
// never asserted: every wait has a generous hard deadline so that a hang fails
// instead of hanging.
#include "tern/net/http_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "tern/reactor/reactor.hpp"
#include "tern/resilience/circuit_breaker.hpp"
#include "tern/resilience/retry.hpp"
#include "tern_test.hpp"

extern char** environ;

namespace tern {
// GoogleTest prints an Errc by name.
inline void PrintTo(Errc e, std::ostream* os) { *os << errc_name(e); }
}  // namespace tern

namespace {

using tern::Errc;
using tern::HttpClient;
using tern::HttpClientConfig;
using tern::HttpRequest;
using tern::Reactor;
using Clock = std::chrono::steady_clock;

// ---- child processes ----

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// Runs argv to completion; returns its exit status (or -1).
int run_command(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0)
    return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// One upstream.py process. It exits when its stdin closes (so also when this
// test process dies), on SIGTERM, or after --max-seconds.
class Upstream {
 public:
  bool start(const std::vector<std::string>& extra_args) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return false;
    if (::pipe2(out, O_CLOEXEC) != 0) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    std::vector<std::string> args = {
        env_or("TERN_PYTHON", "python3"),
        env_or("TERN_UPSTREAM", "tests/tools/upstream.py"), "--max-seconds",
        "300"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (const std::string& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int rc = posix_spawnp(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    if (rc != 0) {
      pid_ = -1;
      ::close(out[0]);
      return false;
    }
    // The first line: "PORT <p> name=<p> ...".
    std::string line;
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (line.find('\n') == std::string::npos && Clock::now() < deadline) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char buf[512];
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    if (line.rfind("PORT ", 0) != 0) return false;
    std::size_t pos = 0;
    line = line.substr(0, line.find('\n'));
    while (pos < line.size()) {
      std::size_t end = line.find(' ', pos);
      if (end == std::string::npos) end = line.size();
      std::string tok = line.substr(pos, end - pos);
      std::size_t eq = tok.find('=');
      if (eq != std::string::npos)
        ports_[tok.substr(0, eq)] = tok.substr(eq + 1);
      pos = end + 1;
    }
    return !ports_.empty();
  }

  void stop() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      ::usleep(20000);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // The port of listener `name` ("good", "wrong-host", "unknown-ca",
  // "other-ip", "decoy-ip-san", "plain", "good6"), or "" ("none" when ::1
  // could not be bound).
  std::string port(const std::string& name) const {
    auto it = ports_.find(name);
    return it == ports_.end() ? std::string() : it->second;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  std::map<std::string, std::string> ports_;
};

// Certificates and upstreams, once for the whole test program.
class NetEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string scratch = env_or("TERN_SCRATCH", env_or("TMPDIR", "/tmp"));
    (void)run_command({"mkdir", "-p", scratch});
    std::string templ = scratch + "/http_client_test.XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) {
      error = "mkdtemp failed in " + scratch;
      return;
    }
    dir = buf.data();
    std::string make_certs =
        env_or("TERN_MAKE_CERTS", "tests/tools/make_certs.sh");
    if (run_command({"/bin/sh", make_certs, dir + "/certs"}) != 0) {
      error = "make_certs.sh failed";
      return;
    }
    ca_file = dir + "/certs/ca.pem";
    // Names for the client's resolver (HttpClientConfig::hosts_file), in the
    // order it tries them: 127.0.0.2-5 refuse (the tests hold those ports
    // bound, never listening), 127.0.0.1 is the upstream.
    hosts_file = dir + "/hosts";
    if (FILE* f = std::fopen(hosts_file.c_str(), "w")) {
      std::fputs("127.0.0.2 failover.test\n127.0.0.1 failover.test\n", f);
      for (const char* a :
           {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.1"})
        std::fprintf(f, "%s five.test\n", a);
      std::fclose(f);
    } else {
      error = "cannot write " + hosts_file;
      return;
    }
    if (!main.start({"--certs", dir + "/certs", "--cert", "good", "--cert",
                     "wrong-host", "--cert", "unknown-ca", "--cert", "other-ip",
                     "--cert", "decoy-ip-san", "--plain", "--ipv6"})) {
      error = "upstream.py did not start (TERN_UPSTREAM, TERN_PYTHON)";
      return;
    }
    if (!idle.start({"--certs", dir + "/certs", "--cert", "good",
                     "--idle-close-ms", "150"})) {
      error = "upstream.py --idle-close-ms did not start";
      return;
    }
  }
  void TearDown() override {
    main.stop();
    idle.stop();
    if (!dir.empty()) (void)run_command({"rm", "-rf", dir});
  }

  std::string error;
  std::string dir;
  std::string ca_file;
  std::string hosts_file;
  // good, wrong-host, unknown-ca, other-ip, decoy-ip-san, plain (and ::1 copies)
  Upstream main;
  Upstream idle;  // good, closing keep-alive connections idle for 150 ms
};

NetEnvironment* g_env = nullptr;

// ---- the client under test ----

struct Outcome {
  int calls = 0;
  Errc err = Errc::ok;
  int status = 0;
  std::string body;
  std::string content_type;
  bool done() const { return calls > 0; }
};

tern::HttpCallback capture(Outcome* o) {
  return [o](tern::Result<tern::HttpResponse> r) {
    ++o->calls;
    if (!r) {
      o->err = r.error();
      return;
    }
    o->err = Errc::ok;
    o->status = r->status;
    o->body.assign(r->body.data(), r->body.size());
    if (auto ct = r->header("content-type"))
      o->content_type.assign(ct->data(), ct->size());
  };
}

class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(g_env, nullptr);
    ASSERT_EQ(g_env->error, "");
    config_.ca_file = g_env->ca_file.c_str();
  }

  static std::string url(const std::string& listener, const std::string& path,
                         const std::string& host = "127.0.0.1") {
    const Upstream& up =
        listener.rfind("idle", 0) == 0 ? g_env->idle : g_env->main;
    std::string name = listener.rfind("idle", 0) == 0 ? "good" : listener;
    std::string scheme = name.rfind("plain", 0) == 0 ? "http://" : "https://";
    return scheme + host + ":" + up.port(name) + path;
  }

  // Runs the reactor until pred() holds or `limit` passes; false on the hard
  // deadline.
  template <typename Pred>
  bool run_until(Pred pred,
                 std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    auto end = Clock::now() + limit;
    while (!pred()) {
      if (Clock::now() > end) return false;
      reactor_.run_once(tern::ms(50));
    }
    return true;
  }
  // Runs the reactor for about `d` (to let the server do something meanwhile).
  void run_for(std::chrono::milliseconds d) {
    auto end = Clock::now() + d;
    while (Clock::now() < end) reactor_.run_once(tern::ms(20));
  }

  // Sends one request and runs the reactor until its single outcome.
  Outcome fetch(HttpClient& client, HttpRequest req) {
    Outcome o;
    Errc e = client.request(req, capture(&o));
    EXPECT_EQ(e, Errc::ok) << req.url;
    if (e != Errc::ok) {
      o.err = e;
      return o;
    }
    EXPECT_EQ(o.calls, 0) << "the callback ran inside request()";
    EXPECT_TRUE(run_until([&] { return o.done(); }))
        << "no outcome for " << req.url;
    run_for(std::chrono::milliseconds(0));
    EXPECT_EQ(o.calls, 1) << req.url;
    return o;
  }
  Outcome get(HttpClient& client, const std::string& u,
              tern::Duration timeout = {}) {
    HttpRequest req;
    req.url = u;
    req.timeout = timeout;
    return fetch(client, req);
  }
  Outcome get_with_header(HttpClient& client, const std::string& u,
                          std::string_view name, std::string_view value,
                          tern::Duration timeout = {}) {
    HttpRequest req;
    req.url = u;
    req.headers[0] = {name, value};
    req.header_count = 1;
    req.timeout = timeout;
    return fetch(client, req);
  }
  // The pool recovered: a normal request on the same client succeeds.
  void expect_recovers(HttpClient& client,
                       const std::string& listener = "good") {
    Outcome o = get(client, url(listener, "/health"));
    EXPECT_EQ(o.err, Errc::ok);
    EXPECT_EQ(o.status, 200);
    EXPECT_NE(o.body.find("\"ok\""), std::string::npos) << o.body;
  }
  // A GET of failover.test (the hosts file: 127.0.0.2, then 127.0.0.1, the upstream)
  // reaches the upstream on the second address, after one failover, two connections.
  void expect_failover_to_upstream(HttpClient& client, const std::string& port) {
    Outcome o = get(client, "http://failover.test:" + port + "/health");
    ASSERT_EQ(o.err, Errc::ok);
    EXPECT_EQ(o.status, 200);
    EXPECT_EQ(client.stats().connect_failovers, 1u);
    EXPECT_EQ(client.stats().connections_opened, 2u);
    expect_quiescent(client);
  }
  // Nothing left over, and every accepted request ended exactly once.
  void expect_quiescent(HttpClient& client) {
    const auto& s = client.stats();
    EXPECT_EQ(s.in_flight, 0u);
    EXPECT_EQ(s.queued, 0u);
    EXPECT_EQ(s.backing_off, 0u);
    EXPECT_EQ(s.requests, s.responses + s.failed);
  }

  Reactor reactor_;
  HttpClientConfig config_;
};

// ---- the basics ----

TEST_F(HttpClientTest, GetOverHttpsReturnsStatusBodyAndHeaders) {
  HttpClient client(reactor_, config_);
  ASSERT_EQ(client.init_error(), Errc::ok);
  Outcome o = get(client, url("good", "/health"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(o.body, "{\"status\": \"ok\"}");
  EXPECT_EQ(o.content_type, "application/json");
  EXPECT_EQ(client.stats().tls_handshakes, 1u);
  expect_quiescent(client);
}

TEST_F(HttpClientTest, GetOverPlainHttp) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("plain", "/health"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(client.stats().tls_handshakes, 0u);
}

TEST_F(HttpClientTest, LocalhostResolvesAndVerifiesByDnsName) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/health", "localhost"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
}

TEST_F(HttpClientTest, EmbeddingsPostReturnsOneVectorPerInput) {
  HttpClient client(reactor_, config_);
  HttpRequest req;
  req.method = "POST";
  std::string u = url("good", "/v1/embeddings");
  req.url = u;
  std::string body =
      R"({"input": ["hello world", "tern"], "model": "test-embed"})";
  req.body = body;
  req.headers[0] = {"Content-Type", "application/json"};
  req.header_count = 1;
  Outcome o = fetch(client, req);
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  EXPECT_NE(o.body.find("\"object\": \"list\""), std::string::npos) << o.body;
  EXPECT_NE(o.body.find("\"model\": \"test-embed\""), std::string::npos)
      << o.body;
  EXPECT_NE(o.body.find("\"index\": 1"), std::string::npos) << o.body;
  EXPECT_EQ(o.body.find("\"index\": 2"), std::string::npos) << o.body;
  // sha256("hello world") starts b94d 27b9: -0.552338, 0.310333.
  EXPECT_NE(o.body.find("[-0.552338, 0.310333,"), std::string::npos) << o.body;
}

TEST_F(HttpClientTest, RequestHeadAndHostAreSerializedAsGiven) {
  HttpClient client(reactor_, config_);
  Outcome o =
      get_with_header(client, url("good", "/echo?x=1"), "X-Trace", "abc 123");
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_NE(o.body.find("\"method\": \"GET\""), std::string::npos) << o.body;
  EXPECT_NE(o.body.find("\"target\": \"/echo?x=1\""), std::string::npos)
      << o.body;
  EXPECT_NE(o.body.find("\"x-trace\": \"abc 123\""), std::string::npos)
      << o.body;
  EXPECT_NE(
      o.body.find("\"host\": \"127.0.0.1:" + g_env->main.port("good") + "\""),
      std::string::npos)
      << o.body;
}

TEST_F(HttpClientTest, HeadRequestHasNoBodyAndKeepsTheConnection) {
  HttpClient client(reactor_, config_);
  HttpRequest req;
  req.method = "HEAD";
  std::string u = url("plain", "/bytes/100");
  req.url = u;
  Outcome o = fetch(client, req);
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(o.body, "");
  expect_recovers(client, "plain");
  EXPECT_EQ(client.stats().connections_opened, 1u);
}

// ---- faults: each gives its Errc to exactly that request, and the pool
// recovers ----

TEST_F(HttpClientTest, DelayBeyondTheRequestTimeoutIsTimeout) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/delay?ms=3000"), tern::ms(300));
  EXPECT_EQ(o.err, Errc::timeout);
  EXPECT_EQ(client.stats().timed_out, 1u);
  expect_recovers(client);
  expect_quiescent(client);
}

TEST_F(HttpClientTest, DelayWithinTheTimeoutIsAResponse) {
  HttpClient client(reactor_, config_);
  Outcome o = get_with_header(client, url("good", "/health"), "X-Fault",
                              "delay=100", tern::seconds(10));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
}

// A timeout too long for the clock to reach (now + it would overflow) means no
// deadline, not one in the past: for the request's own timeout and for every
// configured one, the idle timeout of the pooled connection included.
TEST_F(HttpClientTest, TimeoutsBeyondTheClockRangeMeanNoDeadline) {
  const tern::Duration forever(INT64_MAX);
  {
    HttpClient client(reactor_, config_);
    Outcome o = get(client, url("good", "/health"), forever);
    EXPECT_EQ(o.err, Errc::ok);
    EXPECT_EQ(o.status, 200);
    expect_quiescent(client);
  }
  config_.connect_timeout = forever;
  config_.tls_timeout = forever;
  config_.request_timeout = forever;
  config_.idle_timeout = forever;
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/health"));  // request_timeout applies
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  for (int i = 0; i < 5; ++i) reactor_.run_once(tern::ms(1));  // a due idle timer fires
  o = get(client, url("good", "/health"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(client.stats().connections_opened, 1u) << "the pooled connection was closed";
  EXPECT_EQ(client.stats().reuses, 1u);
  expect_quiescent(client);
}

TEST_F(HttpClientTest, ResetMidBodyIsIo) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/reset"));
  EXPECT_EQ(o.err, Errc::io);
  expect_recovers(client);
  expect_quiescent(client);
}

TEST_F(HttpClientTest, ResetMidBodyOverPlainHttpIsIo) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("plain", "/fault/reset"));
  EXPECT_EQ(o.err, Errc::io);
  expect_recovers(client, "plain");
}

TEST_F(HttpClientTest, TruncatedChunkedBodyIsProtocol) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/truncated-chunked"));
  EXPECT_EQ(o.err, Errc::protocol);
  expect_recovers(client);
}

// The server closes TCP without a TLS close_notify (many do): still a truncated
// body.
TEST_F(HttpClientTest, TruncatedChunkedBodyEndedByBareFinIsProtocol) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/truncated-chunked-fin"));
  EXPECT_EQ(o.err, Errc::protocol);
  expect_recovers(client);
}

TEST_F(HttpClientTest, TruncatedChunkedOverPlainHttpIsProtocol) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("plain", "/fault/truncated-chunked"));
  EXPECT_EQ(o.err, Errc::protocol);
  expect_recovers(client, "plain");
}

TEST_F(HttpClientTest, SlowDripWithAShortTimeoutIsTimeout) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/drip?bytes=30"), tern::ms(1500));
  EXPECT_EQ(o.err, Errc::timeout);
  expect_recovers(client);
  expect_quiescent(client);
}

TEST_F(HttpClientTest, Status500IsDeliveredAsAResponse) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/500"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 500);
  EXPECT_NE(o.body.find("injected 500"), std::string::npos) << o.body;
  expect_recovers(client);
  // A 5xx with keep-alive does not cost the connection.
  EXPECT_EQ(client.stats().connections_opened, 1u);
}

TEST_F(HttpClientTest, Status503IsDeliveredAsAResponse) {
  HttpClient client(reactor_, config_);
  HttpRequest req;
  req.method = "POST";
  std::string u = url("good", "/v1/embeddings");
  req.url = u;
  req.body = R"({"input": "x"})";
  req.headers[0] = {"X-Fault", "503"};
  req.header_count = 1;
  Outcome o = fetch(client, req);
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 503);
  EXPECT_NE(o.body.find("injected 503"), std::string::npos) << o.body;
  expect_recovers(client);
}

TEST_F(HttpClientTest, OversizeHeadersAreTooLarge) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/oversize-headers"));
  EXPECT_EQ(o.err, Errc::too_large);
  expect_recovers(client);
}

// max_response_bytes is one arena for the head as the client keeps it (reason phrase,
// field names and values) and the body after it: a response fits exactly when both
// together do.
TEST_F(HttpClientTest, ResponseOverTheArenaIsTooLarge) {
  std::size_t head = 0;
  {
    HttpClient probe(reactor_, config_);
    HttpRequest req;
    std::string u = url("good", "/bytes/4096");
    req.url = u;
    int calls = 0;
    ASSERT_EQ(probe.request(req, [&](tern::Result<tern::HttpResponse> r) {
                ++calls;
                ASSERT_TRUE(r.ok());
                ASSERT_EQ(r->body.size(), 4096u);
                const tern::HttpResponseParser& p = *r->parser;
                head = p.reason().size();
                for (std::size_t i = 0; i < p.header_count(); ++i) {
                  head += p.header_at(i).name.size() + p.header_at(i).value.size();
                }
              }),
              Errc::ok);
    ASSERT_TRUE(run_until([&] { return calls == 1; }));
  }
  // "OK", Content-Type: application/octet-stream, Content-Length: 4096.
  ASSERT_EQ(head, 2u + 12u + 24u + 14u + 4u);

  config_.max_response_bytes = head + 4096;
  {
    HttpClient client(reactor_, config_);
    Outcome o = get(client, url("good", "/bytes/5000"));
    EXPECT_EQ(o.err, Errc::too_large);
    Outcome ok = get(client, url("good", "/bytes/4096"));
    EXPECT_EQ(ok.err, Errc::ok);
    EXPECT_EQ(ok.body.size(), 4096u);
    EXPECT_EQ(ok.content_type, "application/octet-stream");
  }
  config_.max_response_bytes = head + 4095;  // one byte short
  {
    HttpClient client(reactor_, config_);
    Outcome o = get(client, url("good", "/bytes/4096"));
    EXPECT_EQ(o.err, Errc::too_large);
    Outcome ok = get(client, url("good", "/bytes/4095"));
    EXPECT_EQ(ok.err, Errc::ok);
    EXPECT_EQ(ok.body.size(), 4095u);
    expect_recovers(client);
  }
  // A head that does not fit the arena is too_large as well, however small the limit
  // on raw header bytes says it may be.
  config_.max_response_bytes = 40;
  {
    HttpClient client(reactor_, config_);
    Outcome o = get(client, url("good", "/bytes/1"));
    EXPECT_EQ(o.err, Errc::too_large);
  }
}

// A response bigger than 64 reads of the read buffer, whose tail sits decrypted
// inside mbedTLS (not in the socket) when a read round ends: it must not wait
// for the socket.
TEST_F(HttpClientTest, LargeTlsResponseThroughASmallReadBufferCompletes) {
  config_.read_buffer_bytes = 1000;
  config_.max_response_bytes = 1 << 20;
  HttpClient client(reactor_, config_);
  for (int size : {64500, 65000, 100000, 200000, 300000}) {
    Outcome o = get(client, url("good", "/bytes/" + std::to_string(size)),
                    tern::seconds(5));
    EXPECT_EQ(o.err, Errc::ok) << size;
    EXPECT_EQ(o.body.size(), static_cast<std::size_t>(size));
  }
}

TEST_F(HttpClientTest, ConnectionClosedWithoutAnswerIsIo) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/close"));
  EXPECT_EQ(o.err, Errc::io);
  expect_recovers(client);
}

TEST_F(HttpClientTest, ConnectionRefusedIsIoAndNotInsideRequest) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  ::close(s);  // bound, never listened: nothing accepts on this port now
  HttpClient client(reactor_, config_);
  Outcome o = get(
      client, "https://127.0.0.1:" + std::to_string(ntohs(sa.sin_port)) + "/");
  EXPECT_EQ(o.err, Errc::io);
  expect_recovers(client);
}

// ---- keep-alive: idle closes, stale connections ----

TEST_F(HttpClientTest, IdleClosedKeepAliveConnectionIsNotReused) {
  HttpClient client(reactor_, config_);
  expect_recovers(client, "idle");
  run_for(std::chrono::milliseconds(
      600));  // the server closes it after 150 ms idle
  expect_recovers(client, "idle");
  const auto& s = client.stats();
  EXPECT_GT(s.stale_closed + s.stale_retries, 0u);
  EXPECT_EQ(s.connections_opened, 2u);
  EXPECT_EQ(s.failed, 0u);
}

// The server closes a reused connection as the request arrives (the race a
// health check cannot see): an idempotent GET is retried once on a fresh
// connection and succeeds.
TEST_F(HttpClientTest, StaleReusedConnectionRetriesAnIdempotentGetOnce) {
  HttpClient client(reactor_, config_);
  expect_recovers(client);
  Outcome o = get(client, url("good", "/fault/close-if-reused"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(client.stats().stale_retries, 1u);
  EXPECT_EQ(client.stats().connections_opened, 2u);
  expect_recovers(client);
}

TEST_F(HttpClientTest, StaleReusedConnectionDoesNotRetryAPost) {
  HttpClient client(reactor_, config_);
  expect_recovers(client);
  HttpRequest req;
  req.method = "POST";
  std::string u = url("good", "/fault/close-if-reused");
  req.url = u;
  req.body = "{}";
  Outcome o = fetch(client, req);
  EXPECT_EQ(o.err, Errc::io);
  EXPECT_EQ(client.stats().stale_retries, 0u);
  expect_recovers(client);
}

TEST_F(HttpClientTest, SequentialRequestsReuseFewConnections) {
  HttpClient client(reactor_, config_);
  constexpr int kRequests = 60;
  for (int i = 0; i < kRequests; ++i) {
    Outcome o = get(client, url("good", "/health"));
    ASSERT_EQ(o.err, Errc::ok) << i;
  }
  const auto& s = client.stats();
  EXPECT_LE(s.connections_opened, 2u);
  EXPECT_GE(s.reuses, static_cast<std::uint64_t>(kRequests - 2));
  EXPECT_EQ(s.responses, static_cast<std::uint64_t>(kRequests));
  EXPECT_LE(s.open_connections, 2u);
}

TEST_F(HttpClientTest, MaxRequestsPerConnectionOpensAFreshOne) {
  config_.max_requests_per_connection = 3;
  HttpClient client(reactor_, config_);
  for (int i = 0; i < 9; ++i)
    ASSERT_EQ(get(client, url("plain", "/health")).err, Errc::ok);
  EXPECT_EQ(client.stats().connections_opened, 3u);
  EXPECT_EQ(client.stats().reuses, 6u);
}

// ---- certificates ----

TEST_F(HttpClientTest, WrongHostNameCertificateIsTls) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("wrong-host", "/health"));
  EXPECT_EQ(o.err, Errc::tls);
  expect_recovers(client);
}

TEST_F(HttpClientTest, UnknownCaCertificateIsTls) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("unknown-ca", "/health"));
  EXPECT_EQ(o.err, Errc::tls);
  expect_recovers(client);
}

TEST_F(HttpClientTest, VerificationIsOnByDefault) {
  HttpClient client(
      reactor_);  // the system CA bundle, which does not know the test CA
  if (client.init_error() != Errc::ok) {
    // No system bundle on this machine: refused at the call, never an
    // unverified session.
    Outcome o;
    HttpRequest req;
    std::string u = url("good", "/health");
    req.url = u;
    EXPECT_EQ(client.request(req, capture(&o)), Errc::tls);
    return;
  }
  Outcome o = get(client, url("good", "/health"));
  EXPECT_EQ(o.err, Errc::tls);
}

TEST_F(HttpClientTest, MissingCaFileRefusesEveryRequestWithTls) {
  config_.ca_file = "/nonexistent/ca.pem";
  HttpClient client(reactor_, config_);
  EXPECT_EQ(client.init_error(), Errc::tls);
  Outcome o;
  HttpRequest req;
  std::string u = url("good", "/health");
  req.url = u;
  EXPECT_EQ(client.request(req, capture(&o)), Errc::tls);
  run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(o.calls, 0);
}

TEST_F(HttpClientTest, SkipVerifyAcceptsAnUnknownCa) {
  config_.insecure_skip_verify_DANGEROUS = true;
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("unknown-ca", "/health"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
}

// An IP-literal origin is checked against the certificate's iPAddress names
// only: other-ip is signed by the trusted CA, valid for the name localhost and
// has CN 127.0.0.1, but its IP SANs are 127.0.0.2 and ::2.
TEST_F(HttpClientTest, IpLiteralWithoutAMatchingIpSanIsTls) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("other-ip", "/health"));
  EXPECT_EQ(o.err, Errc::tls);
  std::string p6 = g_env->main.port("other-ip6");
  if (!p6.empty() && p6 != "none") {
    o = get(client, "https://[::1]:" + p6 + "/health");
    EXPECT_EQ(o.err, Errc::tls);
  }
  // The same certificate, for the name it carries:
  o = get(client, url("other-ip", "/health", "localhost"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  expect_quiescent(client);
}

// decoy-ip-san is signed by the trusted CA and its only SAN is
// DNS:decoy.example, but a private extension listed before it holds the bytes of
// a subjectAltName for IP:127.0.0.1. Only the real SAN may match the address.
TEST_F(HttpClientTest, IpSanBytesInsideAnotherExtensionDoNotMatchAnIpLiteral) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("decoy-ip-san", "/health"));
  EXPECT_EQ(o.err, Errc::tls);
  // good, whose SAN does list IP:127.0.0.1, still matches that address.
  o = get(client, url("good", "/health"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  expect_quiescent(client);
}

// ---- SNI (upstream.py's /sni tells what the handshake carried) ----

TEST_F(HttpClientTest, IpLiteralOriginSendsNoSni) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/sni"));
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.body, "{\"sni\": \"none\"}");
  std::string p6 = g_env->main.port("good6");
  if (!p6.empty() && p6 != "none") {
    o = get(client, "https://[::1]:" + p6 + "/sni");
    ASSERT_EQ(o.err, Errc::ok);
    EXPECT_EQ(o.body, "{\"sni\": \"none\"}");
  }
}

TEST_F(HttpClientTest, HostNameOriginSendsItAsSni) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/sni", "localhost"));
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.body, "{\"sni\": \"localhost\"}");
}

// One connection slot: the IP-literal connection reuses the TLS context that
// carried "localhost", whose name must not leak into the next handshake.
TEST_F(HttpClientTest, SlotThatHeldAHostNameSendsNoSniForAnIpLiteral) {
  config_.max_connections = 1;
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/sni", "localhost"));
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.body, "{\"sni\": \"localhost\"}");
  o = get(client, url("good", "/sni"));
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.body, "{\"sni\": \"none\"}");
  o = get(client, url("good", "/sni", "localhost"));
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.body, "{\"sni\": \"localhost\"}");
  EXPECT_EQ(client.stats().tls_handshakes, 3u);
}

// ---- several addresses for one name ----

// Holds addr:port bound but never listening, so a connect there is refused.
class RefusingPort {
 public:
  RefusingPort(const char* addr, const std::string& port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa_.sin_family = AF_INET;
    sa_.sin_port = htons(static_cast<std::uint16_t>(std::stoi(port)));
    ok_ = fd_ >= 0 && ::inet_pton(AF_INET, addr, &sa_.sin_addr) == 1 &&
          ::bind(fd_, reinterpret_cast<sockaddr*>(&sa_), sizeof sa_) == 0;
  }
  ~RefusingPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  bool ok() const { return ok_; }
  int fd() const { return fd_; }
  const sockaddr_in& address() const { return sa_; }

 private:
  int fd_ = -1;
  sockaddr_in sa_{};
  bool ok_ = false;
};

// failover.test is 127.0.0.2 (refused) then 127.0.0.1 (the upstream).
TEST_F(HttpClientTest, RefusedConnectFailsOverToTheNextResolvedAddress) {
  std::string port = g_env->main.port("plain");
  RefusingPort refuse("127.0.0.2", port);
  ASSERT_TRUE(refuse.ok());
  config_.hosts_file = g_env->hosts_file.c_str();
  HttpClient client(reactor_, config_);
  expect_failover_to_upstream(client, port);
}

// Listens on addr:port with a backlog of one and fills it with a connection that is
// never accepted, so that the kernel drops further SYNs: a connect to it hangs, like one
// to an address that silently drops packets.
class HangingPort {
 public:
  HangingPort(const char* addr, const std::string& port) : bound_(addr, port) {
    filler_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in& sa = bound_.address();
    ok_ = bound_.ok() && filler_fd_ >= 0 && ::listen(bound_.fd(), 0) == 0 &&
          ::connect(filler_fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
  }
  ~HangingPort() {
    if (filler_fd_ >= 0) ::close(filler_fd_);
  }
  HangingPort(const HangingPort&) = delete;
  HangingPort& operator=(const HangingPort&) = delete;
  bool ok() const { return ok_; }

 private:
  RefusingPort bound_;  // the same bound socket, made to listen
  int filler_fd_ = -1;
  bool ok_ = false;
};

// failover.test is 127.0.0.2 (hangs) then 127.0.0.1 (the upstream): the first attempt
// gets half of connect_timeout, then the second address is tried within the rest.
TEST_F(HttpClientTest, HangingConnectFailsOverWithinTheConnectDeadline) {
  std::string port = g_env->main.port("plain");
  HangingPort hang("127.0.0.2", port);
  ASSERT_TRUE(hang.ok());
  config_.hosts_file = g_env->hosts_file.c_str();
  config_.connect_timeout = tern::ms(1000);
  HttpClient client(reactor_, config_);
  expect_failover_to_upstream(client, port);
}

// five.test is 127.0.0.2-5 (all refused) then 127.0.0.1: only the first
// kMaxConnectAddresses are kept, so the upstream is never reached.
TEST_F(HttpClientTest, WhenEveryKeptAddressRefusesTheRequestIsIo) {
  static_assert(tern::kMaxConnectAddresses == 4);
  std::string port = g_env->main.port("plain");
  RefusingPort r2("127.0.0.2", port), r3("127.0.0.3", port),
      r4("127.0.0.4", port), r5("127.0.0.5", port);
  ASSERT_TRUE(r2.ok() && r3.ok() && r4.ok() && r5.ok());
  config_.hosts_file = g_env->hosts_file.c_str();
  HttpClient client(reactor_, config_);
  Outcome o = get(client, "http://five.test:" + port + "/health");
  EXPECT_EQ(o.err, Errc::io);
  EXPECT_EQ(client.stats().connect_failovers, 3u);
  EXPECT_EQ(client.stats().connections_opened, 4u);
  EXPECT_EQ(client.stats().open_connections, 0u);
  expect_quiescent(client);
  expect_recovers(client);
}

TEST_F(HttpClientTest, UnreadableHostsFileIsDns) {
  config_.hosts_file = "/nonexistent/hosts";
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/health", "localhost"));
  EXPECT_EQ(o.err, Errc::dns);
  expect_recovers(client);  // IP literals need no resolver
}

// ---- IPv6 ----

TEST_F(HttpClientTest, Ipv6LoopbackLiteral) {
  HttpClient client(reactor_, config_);
  std::string p6 = g_env->main.port("good6");
  if (p6.empty() || p6 == "none") {
    // ::1 cannot be bound here: the client must say so, not hang or crash.
    Outcome o =
        get(client, "https://[::1]:" + g_env->main.port("good") + "/health");
    EXPECT_TRUE(o.err == Errc::io || o.err == Errc::dns)
        << tern::errc_name(o.err);
    return;
  }
  Outcome o = get(client, "https://[::1]:" + p6 + "/echo");
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  EXPECT_NE(o.body.find("\"host\": \"[::1]:" + p6 + "\""), std::string::npos)
      << o.body;
}

TEST_F(HttpClientTest, Ipv6LoopbackPlain) {
  HttpClient client(reactor_, config_);
  std::string p6 = g_env->main.port("plain6");
  if (p6.empty() || p6 == "none") {
    Outcome o =
        get(client, "http://[::1]:" + g_env->main.port("plain") + "/health");
    EXPECT_TRUE(o.err == Errc::io || o.err == Errc::dns)
        << tern::errc_name(o.err);
    return;
  }
  Outcome o = get(client, "http://[::1]:" + p6 + "/health");
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
}

// ---- refused at the call ----

TEST_F(HttpClientTest, HeaderValueWithCrOrLfIsInvalidArgument) {
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/health");
  const char* bad_values[] = {"a\r\nX-Injected: 1", "a\nb", "a\rb",
                              "x\r\n\r\nGET / HTTP/1.1"};
  for (const char* v : bad_values) {
    Outcome o;
    HttpRequest req;
    req.url = u;
    req.headers[0] = {"X-Ok", v};
    req.header_count = 1;
    EXPECT_EQ(client.request(req, capture(&o)), Errc::invalid_argument) << v;
  }
  const char* bad_names[] = {"X Bad", "X:Bad", "X\r\nBad", ""};
  for (const char* n : bad_names) {
    Outcome o;
    HttpRequest req;
    req.url = u;
    req.headers[0] = {n, "v"};
    req.header_count = 1;
    EXPECT_EQ(client.request(req, capture(&o)), Errc::invalid_argument) << n;
  }
  run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(client.stats().requests, 0u);
  EXPECT_EQ(client.stats().rejected, 8u);
  expect_recovers(client);
}

TEST_F(HttpClientTest, BadUrlsAreInvalidArgument) {
  HttpClient client(reactor_, config_);
  const char* bad[] = {
      "",
      "127.0.0.1:443/",
      "ftp://127.0.0.1/",
      "https://",
      "https:///path",
      "https://:443/",
      "https://127.0.0.1:/",
      "https://127.0.0.1:0/",
      "https://127.0.0.1:65536/",
      "https://127.0.0.1:99999/",
      "https://127.0.0.1:123456/",
      "https://127.0.0.1:8a/",
      "https://[::1/",
      "https://[::1]x/",
      "https://user@127.0.0.1/",
      "https://exa mple.com/",
      "https://127.0.0.1/pa th",
      "https://127.0.0.1/a\r\nX-Injected: 1",
      "https://127.0.0.1/\x7f",
  };
  for (const char* u : bad) {
    Outcome o;
    HttpRequest req;
    req.url = u;
    EXPECT_EQ(client.request(req, capture(&o)), Errc::invalid_argument)
        << "'" << u << "'";
  }
  run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(client.stats().requests, 0u);
}

// A fragment is never sent (RFC 9110 §4.2.4): refused, or stripped from the
// target.
TEST_F(HttpClientTest, UrlFragmentIsNotSentOnTheWire) {
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/echo#frag");
  Outcome o;
  HttpRequest req;
  req.url = u;
  Errc e = client.request(req, capture(&o));
  if (e == Errc::invalid_argument) return;
  ASSERT_EQ(e, Errc::ok);
  ASSERT_TRUE(run_until([&] { return o.done(); }));
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_NE(o.body.find("\"target\": \"/echo\""), std::string::npos) << o.body;
}

TEST_F(HttpClientTest, BadMethodAndEmptyCallbackAreInvalidArgument) {
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/health");
  HttpRequest req;
  req.url = u;
  req.method = "GE T";
  Outcome o;
  EXPECT_EQ(client.request(req, capture(&o)), Errc::invalid_argument);
  req.method = "GET";
  EXPECT_EQ(client.request(req, tern::HttpCallback{}), Errc::invalid_argument);
  req.header_count = tern::kMaxRequestHeaders + 1;
  EXPECT_EQ(client.request(req, capture(&o)), Errc::invalid_argument);
}

TEST_F(HttpClientTest, RequestOverMaxRequestBytesIsTooLargeAtTheCall) {
  config_.max_request_bytes = 512;
  HttpClient client(reactor_, config_);
  std::string body(600, 'x');
  std::string u = url("good", "/v1/embeddings");
  HttpRequest req;
  req.method = "POST";
  req.url = u;
  req.body = body;
  Outcome o;
  EXPECT_EQ(client.request(req, capture(&o)), Errc::too_large);
  run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(o.calls, 0);
  expect_recovers(client);
}

// ---- concurrency ----

struct Tally {
  std::vector<int> calls;
  std::vector<Errc> errs;
  std::vector<int> status;
  std::vector<bool> matched;
  int done = 0;
  std::size_t max_in_flight = 0;
  std::size_t max_open = 0;
};

struct TallyCallback {
  Tally* t;
  int i;
  const HttpClient* client;
  void operator()(tern::Result<tern::HttpResponse> r) const {
    ++t->calls[static_cast<std::size_t>(i)];
    ++t->done;
    t->max_in_flight =
        std::max(t->max_in_flight, client->stats().in_flight + 1);
    t->max_open = std::max(t->max_open, client->stats().open_connections);
    if (!r) {
      t->errs[static_cast<std::size_t>(i)] = r.error();
      return;
    }
    t->status[static_cast<std::size_t>(i)] = r->status;
    std::string want = "\"model\": \"m-" + std::to_string(i) + "\"";
    t->matched[static_cast<std::size_t>(i)] =
        r->body.find(want) != std::string_view::npos;
  }
};

class HttpClientConcurrency : public HttpClientTest,
                              public ::testing::WithParamInterface<int> {};

TEST_P(HttpClientConcurrency, AllCompleteExactlyOnceThroughALimitOfEight) {
  const int n = GetParam();
  config_.max_in_flight = 8;
  config_.max_connections = 8;
  config_.max_per_origin = 8;
  config_.queue_length = 256;
  HttpClient client(reactor_, config_);
  Tally t;
  t.calls.assign(static_cast<std::size_t>(n), 0);
  t.errs.assign(static_cast<std::size_t>(n), Errc::ok);
  t.status.assign(static_cast<std::size_t>(n), 0);
  t.matched.assign(static_cast<std::size_t>(n), false);
  std::string u = url("good", "/v1/embeddings");
  std::vector<std::string> bodies;
  for (int i = 0; i < n; ++i) {
    bodies.push_back(R"({"input": ["text )" + std::to_string(i) +
                     R"("], "model": "m-)" + std::to_string(i) + "\"}");
  }
  for (int i = 0; i < n; ++i) {
    HttpRequest req;
    req.method = "POST";
    req.url = u;
    req.body = bodies[static_cast<std::size_t>(i)];
    req.headers[0] = {"Content-Type", "application/json"};
    req.header_count = 1;
    req.timeout = tern::seconds(30);
    ASSERT_EQ(client.request(req, TallyCallback{&t, i, &client}), Errc::ok)
        << i;
  }
  bodies.clear();  // the client copied them
  EXPECT_EQ(t.done, 0);
  ASSERT_TRUE(run_until([&] { return t.done >= n; }, std::chrono::seconds(60)))
      << t.done << " of " << n << " completed";
  run_for(std::chrono::milliseconds(100));
  for (int i = 0; i < n; ++i) {
    auto k = static_cast<std::size_t>(i);
    EXPECT_EQ(t.calls[k], 1) << i;
    EXPECT_EQ(t.errs[k], Errc::ok) << i;
    EXPECT_EQ(t.status[k], 200) << i;
    EXPECT_TRUE(t.matched[k])
        << "request " << i << " got another request's response";
  }
  EXPECT_LE(t.max_in_flight, 8u);
  EXPECT_LE(t.max_open, 8u);
  EXPECT_LE(client.stats().connections_opened, 8u);
  EXPECT_EQ(client.stats().responses, static_cast<std::uint64_t>(n));
  expect_quiescent(client);
}

INSTANTIATE_TEST_SUITE_P(Counts, HttpClientConcurrency,
                         ::testing::Values(5, 10, 50, 200));

// Submits `req` once per outcome slot; returns how many were accepted (the others must
// be refused with Errc::full).
template <std::size_t N>
int submit_each(HttpClient& client, const HttpRequest& req, Outcome (&o)[N]) {
  int accepted = 0;
  for (Outcome& x : o) {
    Errc e = client.request(req, capture(&x));
    if (e == Errc::ok) {
      ++accepted;
    } else {
      EXPECT_EQ(e, Errc::full);
    }
  }
  return accepted;
}

bool all_done(const Outcome* o, int n) {
  for (int i = 0; i < n; ++i) {
    if (!o[i].done()) return false;
  }
  return true;
}

TEST_F(HttpClientTest, QueueFullIsFullAtTheCallAndLosesNothing) {
  config_.max_in_flight = 2;
  config_.queue_length = 3;
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/fault/delay?ms=100");
  Outcome o[6];
  HttpRequest req;
  req.url = u;
  const int accepted = submit_each(client, req, o);
  EXPECT_EQ(accepted, 5);
  EXPECT_EQ(client.stats().rejected, 1u);
  ASSERT_TRUE(run_until([&] { return all_done(o, accepted); }));
  run_for(std::chrono::milliseconds(50));
  for (int i = 0; i < accepted; ++i) {
    EXPECT_EQ(o[i].calls, 1) << i;
    EXPECT_EQ(o[i].err, Errc::ok) << i;
    EXPECT_EQ(o[i].status, 200) << i;
  }
  EXPECT_EQ(o[5].calls, 0);
  // Room again once they ended.
  expect_recovers(client);
}

// With fewer connections than max_in_flight, the connections bound what starts: the
// queue holds queue_length more, not max_in_flight + queue_length.
TEST_F(HttpClientTest, QueueLengthCountsFromWhatTheConnectionsCanCarry) {
  config_.max_in_flight = 4;
  config_.max_connections = 1;
  config_.max_per_origin = 1;
  config_.queue_length = 2;
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/fault/delay?ms=50");
  Outcome o[6];
  HttpRequest req;
  req.url = u;
  const int accepted = submit_each(client, req, o);
  EXPECT_EQ(accepted, 3);  // one on the connection, two waiting
  EXPECT_EQ(client.stats().rejected, 3u);
  ASSERT_TRUE(run_until([&] { return all_done(o, accepted); }));
  for (int i = 0; i < accepted; ++i) {
    EXPECT_EQ(o[i].calls, 1) << i;
    EXPECT_EQ(o[i].status, 200) << i;
  }
  for (int i = accepted; i < 6; ++i) EXPECT_EQ(o[i].calls, 0) << i;
  expect_recovers(client);
}

TEST_F(HttpClientTest, QueuedRequestTimesOutWithoutDisturbingTheOneInFlight) {
  config_.max_in_flight = 1;
  HttpClient client(reactor_, config_);
  std::string slow = url("good", "/fault/delay?ms=800");
  std::string quick = url("good", "/health");
  Outcome a, b;
  HttpRequest ra;
  ra.url = slow;
  ra.timeout = tern::seconds(10);
  HttpRequest rb;
  rb.url = quick;
  rb.timeout = tern::ms(200);
  ASSERT_EQ(client.request(ra, capture(&a)), Errc::ok);
  ASSERT_EQ(client.request(rb, capture(&b)), Errc::ok);
  ASSERT_TRUE(run_until([&] { return a.done() && b.done(); }));
  EXPECT_EQ(b.err, Errc::timeout);
  EXPECT_EQ(a.err, Errc::ok);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.calls + b.calls, 2);
}

TEST_F(HttpClientTest, CancelAllEndsQueuedAndInFlightWithCancelled) {
  config_.max_in_flight = 2;
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/fault/delay?ms=2000");
  Outcome o[5];
  HttpRequest req;
  req.url = u;
  for (Outcome& x : o) ASSERT_EQ(client.request(req, capture(&x)), Errc::ok);
  run_for(std::chrono::milliseconds(200));  // two on the wire, three queued
  client.cancel_all();
  for (Outcome& x : o) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.err, Errc::cancelled);
  }
  expect_quiescent(client);
  EXPECT_EQ(client.stats().open_connections, 0u);
  expect_recovers(client);
}

TEST_F(HttpClientTest, DestructorCancelsWhatIsOutstanding) {
  Outcome o[3];
  {
    HttpClient client(reactor_, config_);
    std::string u = url("good", "/fault/delay?ms=2000");
    HttpRequest req;
    req.url = u;
    for (Outcome& x : o) ASSERT_EQ(client.request(req, capture(&x)), Errc::ok);
    run_for(std::chrono::milliseconds(200));
  }
  for (Outcome& x : o) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.err, Errc::cancelled);
  }
  run_for(std::chrono::milliseconds(
      100));  // nothing of the client may fire any more
}

// A callback may start the next request (re-entrancy).
TEST_F(HttpClientTest, CallbackMayIssueTheNextRequest) {
  HttpClient client(reactor_, config_);
  struct Chain {
    HttpClient* client;
    std::string url;
    int remaining;
    int ok = 0;
    int calls = 0;
  } chain{&client, url("good", "/health"), 20};
  struct Next {
    Chain* c;
    void operator()(tern::Result<tern::HttpResponse> r) const {
      ++c->calls;
      if (r && r->status == 200) ++c->ok;
      if (--c->remaining > 0) {
        HttpRequest req;
        req.url = c->url;
        EXPECT_EQ(c->client->request(req, Next{c}), Errc::ok);
      }
    }
  };
  HttpRequest req;
  req.url = chain.url;
  ASSERT_EQ(client.request(req, Next{&chain}), Errc::ok);
  ASSERT_TRUE(run_until([&] { return chain.remaining == 0; }));
  EXPECT_EQ(chain.calls, 20);
  EXPECT_EQ(chain.ok, 20);
  EXPECT_EQ(client.stats().connections_opened, 1u);
}

// ---- pool limits and lifetimes ----

TEST_F(HttpClientTest, ClientIdleTimeoutClosesPooledConnections) {
  config_.idle_timeout = tern::ms(100);
  HttpClient client(reactor_, config_);
  expect_recovers(client);
  EXPECT_EQ(client.stats().open_connections, 1u);
  ASSERT_TRUE(run_until([&] { return client.stats().open_connections == 0; },
                        std::chrono::seconds(10)));
  expect_recovers(client);
  EXPECT_EQ(client.stats().connections_opened, 2u);
  EXPECT_EQ(client.stats().failed, 0u);
}

TEST_F(HttpClientTest, MaxPerOriginBoundsConnectionsToOneOrigin) {
  config_.max_in_flight = 8;
  config_.max_per_origin = 2;
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/fault/delay?ms=50");
  Outcome o[12];
  HttpRequest req;
  req.url = u;
  for (Outcome& x : o) ASSERT_EQ(client.request(req, capture(&x)), Errc::ok);
  std::size_t max_open = 0;
  ASSERT_TRUE(run_until([&] {
    max_open = std::max(max_open, client.stats().open_connections);
    for (Outcome& x : o) {
      if (!x.done()) return false;
    }
    return true;
  }));
  for (Outcome& x : o) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.err, Errc::ok);
  }
  EXPECT_LE(max_open, 2u);
  EXPECT_LE(client.stats().connections_opened, 2u);
}

// An origin at its connection limit does not hold up requests for another
// origin.
TEST_F(HttpClientTest, SaturatedOriginDoesNotHoldUpAnother) {
  config_.max_in_flight = 4;
  config_.max_connections = 4;
  config_.max_per_origin = 1;
  HttpClient client(reactor_, config_);
  std::string slow = url("good", "/fault/delay?ms=400");
  std::string other = url("plain", "/health");
  Outcome a[4], b;
  int order = 0, b_order = 0, last_a_order = 0;
  struct Ordered {
    Outcome* o;
    int* order;
    int* mine;
    void operator()(tern::Result<tern::HttpResponse> r) const {
      ++o->calls;
      o->err = r ? Errc::ok : r.error();
      *mine = ++*order;
    }
  };
  HttpRequest ra;
  ra.url = slow;
  for (Outcome& x : a)
    ASSERT_EQ(client.request(ra, Ordered{&x, &order, &last_a_order}), Errc::ok);
  HttpRequest rb;
  rb.url = other;
  ASSERT_EQ(client.request(rb, Ordered{&b, &order, &b_order}), Errc::ok);
  ASSERT_TRUE(run_until([&] { return order == 5; }));
  EXPECT_EQ(b.err, Errc::ok);
  for (Outcome& x : a) EXPECT_EQ(x.err, Errc::ok);
  EXPECT_LT(b_order, last_a_order) << "B waited behind all of A";
}

TEST_F(HttpClientTest, StalledTlsHandshakeIsTimeout) {
  // Listens but never accepts: TCP connects through the backlog, TLS never
  // answers.
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(s, 8), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  std::string u =
      "https://127.0.0.1:" + std::to_string(ntohs(sa.sin_port)) + "/";
  config_.tls_timeout = tern::ms(200);
  {
    HttpClient client(reactor_, config_);
    Outcome o = get(client, u, tern::seconds(20));
    EXPECT_EQ(o.err, Errc::timeout);
    // The request deadline, shorter than the handshake's, ends it too.
    config_.tls_timeout = tern::seconds(20);
    HttpClient client2(reactor_, config_);
    Outcome o2 = get(client2, u, tern::ms(200));
    EXPECT_EQ(o2.err, Errc::timeout);
    expect_recovers(client2);
    EXPECT_EQ(client2.stats().open_connections, 1u);
  }
  ::close(s);
}

// The plain server waits for the end of a request head that never comes: the
// handshake times out (a server that answers with an HTTP error instead makes
// it tls).
TEST_F(HttpClientTest, HttpsToAPlainHttpServerFails) {
  config_.tls_timeout = tern::ms(300);
  HttpClient client(reactor_, config_);
  Outcome o =
      get(client, "https://127.0.0.1:" + g_env->main.port("plain") + "/health");
  EXPECT_TRUE(o.err == Errc::tls || o.err == Errc::timeout)
      << tern::errc_name(o.err);
  expect_recovers(client);
}

TEST_F(HttpClientTest, PlainHttpToATlsServerFails) {
  HttpClient client(reactor_, config_);
  Outcome o =
      get(client, "http://127.0.0.1:" + g_env->main.port("good") + "/health");
  EXPECT_TRUE(o.err == Errc::protocol || o.err == Errc::io)
      << tern::errc_name(o.err);
  expect_recovers(client);
}

TEST_F(HttpClientTest, TlsSessionIsResumedOnReconnect) {
  config_.max_requests_per_connection = 1;  // every request on a new connection
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/echo");
  Outcome first = get(client, u);
  ASSERT_EQ(first.err, Errc::ok);
  EXPECT_NE(first.body.find("\"tls_session_reused\": false"), std::string::npos)
      << first.body;
  Outcome second = get(client, u);
  ASSERT_EQ(second.err, Errc::ok);
  EXPECT_EQ(client.stats().tls_handshakes, 2u);
  EXPECT_NE(second.body.find("\"tls_session_reused\": true"), std::string::npos)
      << "the server saw a full handshake: " << second.body;
  EXPECT_EQ(client.stats().tls_resumed, 1u) << "stats disagree with the server";
}

// The session is kept per origin, not per connection: a second connection to the
// origin, in another slot while the first is still open, resumes the first one's.
TEST_F(HttpClientTest, TlsSessionIsSharedByTheConnectionsOfAnOrigin) {
  config_.max_connections = config_.max_per_origin = 2;
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/echo");
  Outcome first = get(client, u);
  ASSERT_EQ(first.err, Errc::ok);
  ASSERT_EQ(client.stats().open_connections, 1u);  // pooled
  // Two at once: one reuses the pooled connection, the other opens a second.
  HttpRequest req;
  req.url = u;
  Outcome a, b;
  ASSERT_EQ(client.request(req, capture(&a)), Errc::ok);
  ASSERT_EQ(client.request(req, capture(&b)), Errc::ok);
  ASSERT_TRUE(run_until([&] { return a.done() && b.done(); }));
  ASSERT_EQ(a.err, Errc::ok);
  ASSERT_EQ(b.err, Errc::ok);
  EXPECT_EQ(client.stats().open_connections, 2u);
  EXPECT_EQ(client.stats().reuses, 1u);
  EXPECT_EQ(client.stats().tls_handshakes, 2u);
  EXPECT_EQ(client.stats().tls_resumed, 1u);
  const std::string& fresh = a.body.find("\"served\": 0") != std::string::npos ? a.body : b.body;
  EXPECT_NE(fresh.find("\"served\": 0"), std::string::npos) << a.body << b.body;
  EXPECT_NE(fresh.find("\"tls_session_reused\": true"), std::string::npos)
      << "the second connection made a full handshake: " << fresh;
}

// An origin never gets another origin's session (127.0.0.1 and localhost reach the same
// server here, which would accept it), and the cache keeps the most recent origins.
TEST_F(HttpClientTest, TlsSessionCacheIsPerOriginAndKeepsTheMostRecent) {
  config_.max_requests_per_connection = 1;  // every request on a new connection
  config_.tls_session_cache = 1;
  HttpClient client(reactor_, config_);
  std::string by_ip = url("good", "/echo");
  std::string by_name = url("good", "/echo", "localhost");
  const char* kFull = "\"tls_session_reused\": false";
  Outcome o = get(client, by_ip);
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_NE(o.body.find(kFull), std::string::npos) << o.body;
  o = get(client, by_name);  // another origin: full, and it takes the only entry
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_NE(o.body.find(kFull), std::string::npos) << "resumed another origin's session";
  o = get(client, by_ip);  // its session was pushed out
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_NE(o.body.find(kFull), std::string::npos) << o.body;
  EXPECT_EQ(client.stats().tls_resumed, 0u);
  o = get(client, by_ip);
  ASSERT_EQ(o.err, Errc::ok);
  EXPECT_NE(o.body.find("\"tls_session_reused\": true"), std::string::npos) << o.body;
  EXPECT_EQ(client.stats().tls_handshakes, 4u);
  EXPECT_EQ(client.stats().tls_resumed, 1u);
}

TEST_F(HttpClientTest, NoTlsSessionCacheMeansNoResumption) {
  config_.max_requests_per_connection = 1;
  config_.tls_session_cache = 0;
  HttpClient client(reactor_, config_);
  for (int i = 0; i < 2; ++i) {
    Outcome o = get(client, url("good", "/echo"));
    ASSERT_EQ(o.err, Errc::ok);
    EXPECT_NE(o.body.find("\"tls_session_reused\": false"), std::string::npos) << o.body;
  }
  EXPECT_EQ(client.stats().tls_handshakes, 2u);
  EXPECT_EQ(client.stats().tls_resumed, 0u);
}

// Without verification no certificate callback runs, in full handshakes as in
// resumed ones: resumption is still counted only when it happened.
TEST_F(HttpClientTest, SkipVerifyCountsOnlyHandshakesThatResumed) {
  config_.insecure_skip_verify_DANGEROUS = true;
  config_.max_requests_per_connection = 1;  // every request on a new connection
  config_.tls_session_cache = 0;
  {
    HttpClient client(reactor_, config_);
    Outcome o = get(client, url("good", "/echo"));
    ASSERT_EQ(o.err, Errc::ok);
    EXPECT_NE(o.body.find("\"tls_session_reused\": false"), std::string::npos) << o.body;
    EXPECT_EQ(client.stats().tls_handshakes, 1u);
    EXPECT_EQ(client.stats().tls_resumed, 0u);
  }
  config_.tls_session_cache = 1;
  HttpClient client(reactor_, config_);
  Outcome first = get(client, url("good", "/echo"));
  ASSERT_EQ(first.err, Errc::ok);
  EXPECT_NE(first.body.find("\"tls_session_reused\": false"), std::string::npos) << first.body;
  EXPECT_EQ(client.stats().tls_resumed, 0u);
  Outcome second = get(client, url("good", "/echo"));
  ASSERT_EQ(second.err, Errc::ok);
  EXPECT_NE(second.body.find("\"tls_session_reused\": true"), std::string::npos) << second.body;
  EXPECT_EQ(client.stats().tls_handshakes, 2u);
  EXPECT_EQ(client.stats().tls_resumed, 1u) << "stats disagree with the server";
}

TEST_F(HttpClientTest, CloseDelimitedBodyIsDeliveredAndTheConnectionNotReused) {
  HttpClient client(reactor_, config_);
  for (const char* listener : {"good", "plain"}) {
    Outcome o = get(client, url(listener, "/fault/close-delimited?bytes=5000"));
    EXPECT_EQ(o.err, Errc::ok) << listener;
    EXPECT_EQ(o.body, std::string(5000, 'c')) << listener;
    expect_recovers(client, listener);
  }
  EXPECT_EQ(client.stats().connections_opened, 4u);
}

// Over TLS, a close-delimited body is whole only with the peer's close_notify: a bare
// FIN (which anyone on the path can forge) may have cut it short.
TEST_F(HttpClientTest, CloseDelimitedTlsBodyEndedByBareFinIsNotAResponse) {
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/fault/close-delimited-fin?bytes=5000"));
  EXPECT_EQ(o.err, Errc::tls);
  expect_quiescent(client);
  expect_recovers(client);
  // Plain HTTP has no close alert: there the FIN is the end of the body.
  o = get(client, url("plain", "/fault/close-delimited-fin?bytes=5000"));
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.body.size(), 5000u);
}

// ---- empty TLS records (RFC 5246 §6.2.1 allows them) ----

// A one-connection TLS server made with mbedTLS, since upstream.py's Python TLS
// cannot send an empty record. To the first request it answers `head`,
// kEmptyRecords empty application-data records, "hello", then close_notify
// unless told not to, and closes. The answer goes out in one send, so the empty
// records reach the client back to back, which is when mbedtls_ssl_read returns
// 0 for them. It stops by itself: accept waits at most 10 s, and each socket
// read or write as long.
class EmptyRecordServer {
 public:
  // The most mbedTLS takes in a row: a fourth fails the connection.
  static constexpr int kEmptyRecords = 3;

  EmptyRecordServer(const std::string& certs, std::string head,
                    bool close_notify)
      : head_(std::move(head)), close_notify_(close_notify) {
    mbedtls_entropy_init(&entropy_);
    mbedtls_ctr_drbg_init(&drbg_);
    mbedtls_x509_crt_init(&cert_);
    mbedtls_pk_init(&key_);
    mbedtls_ssl_config_init(&conf_);
    if (mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_, nullptr,
                              0) != 0 ||
        mbedtls_x509_crt_parse_file(&cert_, (certs + "/good.pem").c_str()) !=
            0 ||
#if MBEDTLS_VERSION_MAJOR < 3
        mbedtls_pk_parse_keyfile(&key_, (certs + "/good.key").c_str(),
                                 nullptr) != 0 ||
#else
        mbedtls_pk_parse_keyfile(&key_, (certs + "/good.key").c_str(), nullptr,
                                 mbedtls_ctr_drbg_random, &drbg_) != 0 ||
#endif
        mbedtls_ssl_config_defaults(&conf_, MBEDTLS_SSL_IS_SERVER,
                                    MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0 ||
        mbedtls_ssl_conf_own_cert(&conf_, &cert_, &key_) != 0) {
      error_ = "mbedTLS server setup failed";
      return;
    }
    mbedtls_ssl_conf_rng(&conf_, mbedtls_ctr_drbg_random, &drbg_);
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (listen_fd_ < 0 ||
        ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(listen_fd_, 1) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) !=
            0) {
      error_ = "cannot listen on 127.0.0.1";
      return;
    }
    port_ = std::to_string(ntohs(sa.sin_port));
    thread_ = std::thread([this] { error_ = serve(); });
  }
  ~EmptyRecordServer() {
    join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    mbedtls_ssl_config_free(&conf_);
    mbedtls_pk_free(&key_);
    mbedtls_x509_crt_free(&cert_);
    mbedtls_ctr_drbg_free(&drbg_);
    mbedtls_entropy_free(&entropy_);
  }
  EmptyRecordServer(const EmptyRecordServer&) = delete;
  EmptyRecordServer& operator=(const EmptyRecordServer&) = delete;

  const std::string& port() const { return port_; }
  // Waits for the server to end: "" if it answered as planned, else why not.
  std::string join() {
    if (thread_.joinable()) thread_.join();
    return error_;
  }

 private:
  struct Peer {
    int fd;
    // While set, what mbedTLS writes is kept here instead of sent.
    std::string* held;
  };
  static int bio_send(void* ctx, const unsigned char* buf, std::size_t len) {
    Peer& p = *static_cast<Peer*>(ctx);
    if (p.held) {
      p.held->append(reinterpret_cast<const char*>(buf), len);
      return static_cast<int>(len);
    }
    ssize_t n = ::send(p.fd, buf, len, MSG_NOSIGNAL);
    return n >= 0 ? static_cast<int>(n) : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
  }
  static int bio_recv(void* ctx, unsigned char* buf, std::size_t len) {
    ssize_t n = ::recv(static_cast<Peer*>(ctx)->fd, buf, len, 0);
    return n >= 0 ? static_cast<int>(n) : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
  }

  std::string serve() {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 10000) != 1) return "no connection within 10 s";
    Peer peer{::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC), nullptr};
    if (peer.fd < 0) return "accept failed";
    // Blocking I/O, each call bounded: a stuck client ends the server.
    timeval tv{10, 0};
    (void)::setsockopt(peer.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)::setsockopt(peer.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    mbedtls_ssl_context ssl;
    mbedtls_ssl_init(&ssl);
    std::string result = answer(ssl, peer);
    mbedtls_ssl_free(&ssl);
    ::close(peer.fd);
    return result;
  }

  std::string answer(mbedtls_ssl_context& ssl, Peer& peer) {
    if (mbedtls_ssl_setup(&ssl, &conf_) != 0) return "mbedtls_ssl_setup failed";
    mbedtls_ssl_set_bio(&ssl, &peer, bio_send, bio_recv, nullptr);
    int rc = mbedtls_ssl_handshake(&ssl);
    if (rc != 0) return "handshake failed: " + std::to_string(rc);
    std::string request;
    while (request.find("\r\n\r\n") == std::string::npos) {
      unsigned char buf[1024];
      rc = mbedtls_ssl_read(&ssl, buf, sizeof buf);
      if (rc <= 0 || request.size() > 16384) return "no request head";
      request.append(reinterpret_cast<const char*>(buf),
                     static_cast<std::size_t>(rc));
    }
    std::string wire;
    peer.held = &wire;
    const unsigned char hello[] = {'h', 'e', 'l', 'l', 'o'};
    if (mbedtls_ssl_write(&ssl,
                          reinterpret_cast<const unsigned char*>(head_.data()),
                          head_.size()) != static_cast<int>(head_.size()))
      return "head not written";
    for (int i = 0; i < kEmptyRecords; ++i) {
      // "Attempting to write 0 bytes will result in an empty TLS application
      // record being sent" (mbedTLS 2.28, mbedtls_ssl_write). Checked all the
      // same: at least a record header must have come out.
      const std::size_t before = wire.size();
      if (mbedtls_ssl_write(&ssl, hello, 0) != 0 || wire.size() < before + 5)
        return "empty record not written";
    }
    if (mbedtls_ssl_write(&ssl, hello, sizeof hello) !=
        static_cast<int>(sizeof hello))
      return "body not written";
    if (close_notify_ && mbedtls_ssl_close_notify(&ssl) != 0)
      return "no close_notify";
    peer.held = nullptr;
    for (std::size_t off = 0; off < wire.size();) {
      ssize_t n =
          ::send(peer.fd, wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return "send failed";
      off += static_cast<std::size_t>(n);
    }
    return "";
  }

  std::string head_;
  bool close_notify_;
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
  mbedtls_x509_crt cert_;
  mbedtls_pk_context key_;
  mbedtls_ssl_config conf_;
  int listen_fd_ = -1;
  std::string port_;
  std::string error_;
  std::thread thread_;
};

// mbedtls_ssl_read returns 0 for two empty records in a row, as for a FIN: the
// response must go on past them.
TEST_F(HttpClientTest, EmptyTlsRecordsInsideAResponseAreSkipped) {
  EmptyRecordServer server(g_env->dir + "/certs",
                           "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                           /*close_notify=*/true);
  ASSERT_NE(server.port(), "") << server.join();
  HttpClient client(reactor_, config_);
  Outcome o = get(client, "https://127.0.0.1:" + server.port() + "/");
  EXPECT_EQ(server.join(), "");
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(o.body, "hello");
  expect_quiescent(client);
}

// A close-delimited body: the empty records do not end it, and its end is the
// close_notify that follows.
TEST_F(HttpClientTest, EmptyTlsRecordsDoNotEndACloseDelimitedBody) {
  EmptyRecordServer server(g_env->dir + "/certs",
                           "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                           /*close_notify=*/true);
  ASSERT_NE(server.port(), "") << server.join();
  HttpClient client(reactor_, config_);
  Outcome o = get(client, "https://127.0.0.1:" + server.port() + "/");
  EXPECT_EQ(server.join(), "");
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.body, "hello");
}

// Skipping empty records must not turn a bare FIN into a clean end: without
// close_notify the close-delimited body may have been cut.
TEST_F(HttpClientTest, EmptyTlsRecordsThenABareFinIsNotAResponse) {
  EmptyRecordServer server(g_env->dir + "/certs",
                           "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                           /*close_notify=*/false);
  ASSERT_NE(server.port(), "") << server.join();
  HttpClient client(reactor_, config_);
  Outcome o = get(client, "https://127.0.0.1:" + server.port() + "/");
  EXPECT_EQ(server.join(), "");
  EXPECT_EQ(o.err, Errc::tls);
}

// A peer that answers with 100 Continue forever gets too_large, not the reactor.
TEST_F(HttpClientTest, EndlessInterimResponsesAreTooLarge) {
  HttpClient client(reactor_, config_);
  for (const char* listener : {"plain", "good"}) {
    Outcome o = get(client, url(listener, "/fault/interim-flood?bytes=1000000"), tern::seconds(5));
    EXPECT_EQ(o.err, Errc::too_large) << listener;
    expect_quiescent(client);
    expect_recovers(client, listener);
  }
}

TEST_F(HttpClientTest, LargeRequestBodyIsSentCompletely) {
  config_.max_request_bytes = 2 << 20;
  HttpClient client(reactor_, config_);
  std::string body(1500000, 'b');
  for (const char* listener : {"good", "plain"}) {
    HttpRequest req;
    req.method = "POST";
    std::string u = url(listener, "/echo");
    req.url = u;
    req.body = body;
    Outcome o = fetch(client, req);
    ASSERT_EQ(o.err, Errc::ok) << listener;
    EXPECT_NE(o.body.find("\"body_bytes\": 1500000"), std::string::npos)
        << o.body;
  }
}

TEST_F(HttpClientTest, FewerConnectionsThanRequestsInFlight) {
  config_.max_in_flight = 8;
  config_.max_connections = 2;
  HttpClient client(reactor_, config_);
  std::string u = url("good", "/health");
  Outcome o[20];
  HttpRequest req;
  req.url = u;
  for (Outcome& x : o) ASSERT_EQ(client.request(req, capture(&x)), Errc::ok);
  ASSERT_TRUE(run_until([&] {
    for (Outcome& x : o) {
      if (!x.done()) return false;
    }
    return true;
  }));
  for (Outcome& x : o) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.err, Errc::ok);
  }
  EXPECT_LE(client.stats().connections_opened, 2u);
  expect_quiescent(client);
}

// One connection slot, two origins: the idle connection of one makes way for
// the other.
TEST_F(HttpClientTest, IdleConnectionOfAnotherOriginMakesWay) {
  config_.max_connections = 1;
  HttpClient client(reactor_, config_);
  expect_recovers(client, "good");
  expect_recovers(client, "plain");
  expect_recovers(client, "good");
  EXPECT_EQ(client.stats().connections_opened, 3u);
  EXPECT_EQ(client.stats().open_connections, 1u);
}

// ---- optional resilience: RetryPolicy and per-origin breakers ----

class HttpClientResilience : public HttpClientTest {
 protected:
  // Requests /fault/flaky saw for `key` (server-side, all listeners).
  int hits(const std::string& key) {
    HttpClient probe(reactor_, HttpClientConfig{});
    Outcome o = get(probe, url("plain", "/stats?key=" + key));
    std::size_t at = o.body.find("\"hits\": ");
    return at == std::string::npos ? -1 : std::atoi(o.body.c_str() + at + 8);
  }
  static std::string key(const char* what) {
    static int n = 0;
    return std::string(what) + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(++n);
  }
  // One GET of /fault/flaky?<query>&key=<fresh key> with a retry policy set: it ends
  // without error, with `status`, after `retries` retries, the upstream having seen
  // `tries` requests for the key; nothing is left in the client.
  void expect_flaky(HttpClient& client, const std::string& query, int status, std::uint64_t retries,
                    int tries, tern::Duration timeout = {}) {
    std::string k = key("flaky");
    Outcome o = get(client, url("good", "/fault/flaky?" + query + "&key=" + k), timeout);
    EXPECT_EQ(o.err, Errc::ok) << query;
    EXPECT_EQ(o.status, status) << query;
    EXPECT_EQ(client.stats().retries, retries) << query;
    EXPECT_EQ(hits(k), tries) << query;
    expect_quiescent(client);
  }
  // Breakers that open at the first failure, for 200 ms, then admit one trial.
  static tern::BreakerConfig one_trial_breaker() {
    return tern::BreakerConfig{.failure_threshold = 1, .open_duration = tern::ms(200), .half_open_calls = 1};
  }
  // Opens the "good" origin's breaker with a 503 through `client`, then waits until it
  // is half-open.
  void open_until_half_open(HttpClient& client) {
    EXPECT_EQ(get(client, url("good", "/fault/503")).status, 503);
    run_for(std::chrono::milliseconds(400));
  }
  tern::RetryPolicy policy_{.max_attempts = 3,
                            .base_delay = tern::ms(10),
                            .max_delay = tern::ms(50),
                            .jitter = tern::Jitter::none};
};

TEST_F(HttpClientResilience, RetryPolicyRetriesA503UntilItSucceeds) {
  config_.retry = &policy_;
  HttpClient client(reactor_, config_);
  expect_flaky(client, "fail=2", 200, 2, 3);
}

TEST_F(HttpClientResilience, RetryPolicyDeliversTheLast5xxWhenAttemptsRunOut) {
  config_.retry = &policy_;
  HttpClient client(reactor_, config_);
  expect_flaky(client, "fail=100", 503, 2, 3);
}

TEST_F(HttpClientResilience, RetryPolicyRetriesAConnectionClosedWithoutAnswer) {
  config_.retry = &policy_;
  HttpClient client(reactor_, config_);
  expect_flaky(client, "fail=1&mode=close", 200, 1, 2);
}

// A request waiting out a backoff queues again when it ends, so it counts against
// queue_length: with one connection free and queue_length 1, one more request fits.
TEST_F(HttpClientResilience, ARequestInBackoffCountsAsWaiting) {
  tern::RetryPolicy slow{.max_attempts = 2, .base_delay = tern::ms(300), .max_delay = tern::ms(300),
                         .jitter = tern::Jitter::none};
  config_.retry = &slow;
  config_.max_in_flight = 4;
  config_.max_connections = 1;
  config_.queue_length = 1;
  HttpClient client(reactor_, config_);
  std::string failing = url("good", "/fault/503");
  std::string good = url("good", "/fault/delay?ms=10");
  HttpRequest req;
  req.url = failing;
  Outcome o[3];
  ASSERT_EQ(client.request(req, capture(&o[0])), Errc::ok);
  ASSERT_TRUE(run_until([&] { return client.stats().backing_off == 1; }));
  req.url = good;
  EXPECT_EQ(client.request(req, capture(&o[1])), Errc::ok);   // starts on the free connection
  EXPECT_EQ(client.request(req, capture(&o[2])), Errc::full); // the backoff holds the one place
  ASSERT_TRUE(run_until([&] { return o[0].done() && o[1].done(); }));
  EXPECT_EQ(o[0].status, 503);
  EXPECT_EQ(o[1].status, 200);
  EXPECT_EQ(o[2].calls, 0);
  EXPECT_EQ(client.stats().retries, 1u);
  expect_quiescent(client);
}

TEST_F(HttpClientResilience, PostIsRetriedOnlyWhenAllowed) {
  config_.retry = &policy_;
  HttpClient client(reactor_, config_);
  std::string k1 = key("post");
  std::string u1 = url("good", "/fault/flaky?fail=1&key=" + k1);
  HttpRequest req;
  req.method = "POST";
  req.url = u1;
  req.body = "{}";
  Outcome o = fetch(client, req);
  EXPECT_EQ(o.status, 503);
  EXPECT_EQ(hits(k1), 1);

  config_.retry_non_idempotent = true;
  HttpClient lenient(reactor_, config_);
  std::string k2 = key("post");
  std::string u2 = url("good", "/fault/flaky?fail=1&key=" + k2);
  req.url = u2;
  Outcome o2 = fetch(lenient, req);
  EXPECT_EQ(o2.status, 200);
  EXPECT_EQ(hits(k2), 2);
}

TEST_F(HttpClientResilience, OpenBreakerRefusesAtTheCallAndSparesOtherOrigins) {
  tern::BreakerSet<4> breakers(tern::BreakerConfig{.failure_threshold = 3});
  config_.breakers = &breakers;
  HttpClient client(reactor_, config_);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(get(client, url("good", "/fault/503")).status, 503);
  Outcome o;
  std::string u = url("good", "/health");
  HttpRequest req;
  req.url = u;
  EXPECT_EQ(client.request(req, capture(&o)), Errc::circuit_open);
  EXPECT_EQ(client.stats().circuit_open, 1u);
  expect_recovers(client, "plain");  // another origin, another breaker
  run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(o.calls, 0);
}

// A try that hangs ends at RetryPolicy::attempt_timeout and the next try goes out,
// well inside the request's own deadline.
TEST_F(HttpClientResilience, HangingTryEndsAtTheAttemptTimeoutAndIsRetried) {
  tern::RetryPolicy policy = policy_;
  policy.attempt_timeout = tern::ms(300);
  config_.retry = &policy;
  HttpClient client(reactor_, config_);
  expect_flaky(client, "mode=hang&fail=1", 200, 1, 2, tern::seconds(5));
}

// The half-open trial is a request its client cancels (here: destroys) before any
// answer: the trial is given back, and the next request probes the origin at once.
TEST_F(HttpClientResilience, CancelledHalfOpenTrialGivesTheTrialBack) {
  tern::BreakerSet<4> breakers(one_trial_breaker());
  config_.breakers = &breakers;
  {
    HttpClient client(reactor_, config_);
    open_until_half_open(client);
  }
  Outcome trial;
  {
    HttpClient client(reactor_, config_);
    std::string u = url("good", "/fault/delay?ms=3000");
    HttpRequest req;
    req.url = u;
    ASSERT_EQ(client.request(req, capture(&trial)), Errc::ok);  // admitted as the trial
    run_for(std::chrono::milliseconds(50));
  }  // cancelled with the client
  EXPECT_EQ(trial.err, Errc::cancelled);
  HttpClient client(reactor_, config_);
  Outcome o = get(client, url("good", "/health"));
  EXPECT_EQ(o.err, Errc::ok);  // not circuit_open
  EXPECT_EQ(o.status, 200);
}

// Requests that time out in the client's own queue never reached the origin: they do
// not count against its breaker, which stays closed for the next request.
TEST_F(HttpClientResilience, QueueTimeoutsDoNotOpenTheOriginBreaker) {
  tern::BreakerSet<4> breakers(tern::BreakerConfig{.failure_threshold = 2});
  config_.breakers = &breakers;
  config_.max_in_flight = 1;
  HttpClient client(reactor_, config_);
  std::string slow = url("good", "/fault/delay?ms=600"), quick = url("good", "/health");
  {
    // Three requests at once that reach the origin first: the slots the test's requests
    // take below have each held such a request before.
    HttpRequest w;
    w.url = quick;
    Outcome w1, w2, w3;
    ASSERT_EQ(client.request(w, capture(&w1)), Errc::ok);
    ASSERT_EQ(client.request(w, capture(&w2)), Errc::ok);
    ASSERT_EQ(client.request(w, capture(&w3)), Errc::ok);
    ASSERT_TRUE(run_until([&] { return w1.done() && w2.done() && w3.done(); }));
    ASSERT_EQ(w3.status, 200);
  }
  HttpRequest s;
  s.url = slow;
  HttpRequest q;
  q.url = quick;
  q.timeout = tern::ms(100);
  Outcome so, a, b;
  ASSERT_EQ(client.request(s, capture(&so)), Errc::ok);
  ASSERT_EQ(client.request(q, capture(&a)), Errc::ok);
  ASSERT_EQ(client.request(q, capture(&b)), Errc::ok);
  ASSERT_TRUE(run_until([&] { return so.done() && a.done() && b.done(); }));
  EXPECT_EQ(a.err, Errc::timeout);
  EXPECT_EQ(b.err, Errc::timeout);
  EXPECT_EQ(so.status, 200);
  Outcome d = get(client, quick);
  EXPECT_EQ(d.err, Errc::ok);  // not circuit_open
  EXPECT_EQ(d.status, 200);
}

// A call refused at request() for its own fault (a bad header, a full queue)
// must not use up the half-open trial: the breaker admits exactly P trials,
// each needs an outcome.
TEST_F(HttpClientResilience,
       HalfOpenTrialIsNotUsedUpByARequestRefusedAtTheCall) {
  tern::BreakerSet<4> breakers(one_trial_breaker());
  config_.breakers = &breakers;
  HttpClient client(reactor_, config_);
  open_until_half_open(client);
  std::string u = url("good", "/health");
  HttpRequest bad;
  bad.url = u;
  bad.headers[0] = {"X-Bad", "a\r\nb"};
  bad.header_count = 1;
  Outcome refused;
  EXPECT_EQ(client.request(bad, capture(&refused)), Errc::invalid_argument);
  HttpRequest good;
  good.url = u;
  Outcome o;
  Errc e = client.request(good, capture(&o));
  ASSERT_EQ(e, Errc::ok)
      << "the half-open trial went to a request that never went out";
  ASSERT_TRUE(run_until([&] { return o.done(); }));
  EXPECT_EQ(o.status, 200);
}

// Retries of one request do not go through the breaker they just opened.
TEST_F(HttpClientResilience, RetriesStopWhenTheBreakerOpens) {
  tern::BreakerSet<4> breakers(tern::BreakerConfig{.failure_threshold = 2});
  tern::RetryPolicy many = policy_;
  many.max_attempts = 5;
  config_.retry = &many;
  config_.breakers = &breakers;
  HttpClient client(reactor_, config_);
  std::string k = key("breaker");
  Outcome o = get(client, url("good", "/fault/flaky?fail=100&key=" + k));
  EXPECT_TRUE(o.err == Errc::circuit_open ||
              (o.err == Errc::ok && o.status == 503))
      << tern::errc_name(o.err);
  EXPECT_EQ(hits(k), 2)
      << "tries went out after the origin's breaker had opened";
}

// ---- re-entrancy: the callback may cancel or destroy the client ----

TEST_F(HttpClientTest, CancelAllInsideACallback) {
  config_.max_in_flight = 2;
  HttpClient client(reactor_, config_);
  std::string quick = url("good", "/health");
  std::string slow = url("good", "/fault/delay?ms=3000");
  Outcome rest[3];
  struct CancelOthers {
    HttpClient* client;
    int* calls;
    void operator()(tern::Result<tern::HttpResponse>) const {
      ++*calls;
      client->cancel_all();
    }
  };
  int first_calls = 0;
  HttpRequest r1;
  r1.url = quick;
  ASSERT_EQ(client.request(r1, CancelOthers{&client, &first_calls}), Errc::ok);
  HttpRequest r2;
  r2.url = slow;
  for (Outcome& x : rest) ASSERT_EQ(client.request(r2, capture(&x)), Errc::ok);
  ASSERT_TRUE(run_until([&] { return first_calls == 1 && rest[2].done(); }));
  run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(first_calls, 1);
  for (Outcome& x : rest) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.err, Errc::cancelled);
  }
  expect_quiescent(client);
  expect_recovers(client);
}

struct DestroyClient {
  std::unique_ptr<HttpClient>* owner;
  Outcome* o;
  void operator()(tern::Result<tern::HttpResponse> r) const {
    ++o->calls;
    o->err = r ? Errc::ok : r.error();
    owner->reset();
  }
};

TEST_F(HttpClientTest, DestroyingTheClientInsideAResponseCallbackIsSafe) {
  auto client = std::make_unique<HttpClient>(reactor_, config_);
  std::string u = url("good", "/health");
  Outcome o;
  HttpRequest req;
  req.url = u;
  ASSERT_EQ(client->request(req, DestroyClient{&client, &o}), Errc::ok);
  ASSERT_TRUE(run_until([&] { return o.done(); }));
  run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(client, nullptr);
}

TEST_F(HttpClientTest, DestroyingTheClientInsideAnErrorCallbackIsSafe) {
  // Refused at once on loopback: the error is reported from the client's own
  // scheduling.
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  ::close(s);
  std::string refused =
      "http://127.0.0.1:" + std::to_string(ntohs(sa.sin_port)) + "/";
  auto client = std::make_unique<HttpClient>(reactor_, config_);
  Outcome o, other;
  HttpRequest req;
  req.url = refused;
  ASSERT_EQ(client->request(req, DestroyClient{&client, &o}), Errc::ok);
  ASSERT_EQ(client->request(req, capture(&other)), Errc::ok);
  ASSERT_TRUE(run_until([&] { return o.done(); }));
  run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::io);
  EXPECT_EQ(other.calls, 1);
  EXPECT_EQ(other.err, Errc::cancelled);
}

TEST_F(HttpClientTest, DestroyingTheClientInsideATimeoutCallbackIsSafe) {
  auto client = std::make_unique<HttpClient>(reactor_, config_);
  std::string u = url("good", "/fault/delay?ms=3000");
  Outcome o, other;
  HttpRequest req;
  req.url = u;
  req.timeout = tern::ms(100);
  ASSERT_EQ(client->request(req, DestroyClient{&client, &o}), Errc::ok);
  req.timeout = tern::seconds(10);
  ASSERT_EQ(client->request(req, capture(&other)), Errc::ok);
  ASSERT_TRUE(run_until([&] { return o.done(); }));
  run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::timeout);
  EXPECT_EQ(other.calls, 1);
  EXPECT_EQ(other.err, Errc::cancelled);
}

// The reactor has one watch slot: the second connection cannot be watched. That
// request fails (from the client's own scheduling, inside its pump), the other
// one completes.
TEST_F(HttpClientTest, ReactorOutOfWatchSlotsFailsOnlyThatRequest) {
  tern::ReactorConfig rc;
  rc.max_watches = 1;
  Reactor small(rc);
  HttpClient client(small, config_);
  std::string u = url("plain", "/fault/delay?ms=100");
  Outcome a, b;
  HttpRequest req;
  req.url = u;
  ASSERT_EQ(client.request(req, capture(&a)), Errc::ok);
  ASSERT_EQ(client.request(req, capture(&b)), Errc::ok);
  auto end = Clock::now() + std::chrono::seconds(20);
  while (!(a.done() && b.done()) && Clock::now() < end)
    small.run_once(tern::ms(50));
  ASSERT_TRUE(a.done() && b.done());
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(a.err, Errc::ok);
  EXPECT_NE(b.err, Errc::ok);
  EXPECT_EQ(client.stats().in_flight, 0u);
  EXPECT_EQ(client.stats().open_connections, 1u)
      << "the failed connection is still counted";
}

TEST_F(HttpClientTest, DestroyingTheClientInsideACallbackFromItsPumpIsSafe) {
  tern::ReactorConfig rc;
  rc.max_watches = 1;
  Reactor small(rc);
  auto client = std::make_unique<HttpClient>(small, config_);
  std::string u = url("plain", "/fault/delay?ms=100");
  Outcome a, b, c;
  HttpRequest req;
  req.url = u;
  ASSERT_EQ(client->request(req, capture(&a)), Errc::ok);
  ASSERT_EQ(client->request(req, DestroyClient{&client, &b}),
            Errc::ok);  // cannot be watched
  ASSERT_EQ(client->request(req, capture(&c)), Errc::ok);
  auto end = Clock::now() + std::chrono::seconds(20);
  while (!b.done() && Clock::now() < end) small.run_once(tern::ms(50));
  for (int i = 0; i < 5; ++i) small.run_once(tern::ms(20));
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(client, nullptr);
}

TEST_F(HttpClientTest, DestroyingTheClientInsideACancelledCallbackIsSafe) {
  auto client = std::make_unique<HttpClient>(reactor_, config_);
  std::string u = url("good", "/fault/delay?ms=2000");
  Outcome a, b, c;
  HttpRequest req;
  req.url = u;
  ASSERT_EQ(client->request(req, DestroyClient{&client, &a}), Errc::ok);
  ASSERT_EQ(client->request(req, capture(&b)), Errc::ok);
  ASSERT_EQ(client->request(req, capture(&c)), Errc::ok);
  run_for(std::chrono::milliseconds(100));
  client->cancel_all();
  EXPECT_EQ(client, nullptr);
  for (Outcome* o : {&a, &b, &c}) {
    EXPECT_EQ(o->calls, 1);
    EXPECT_EQ(o->err, Errc::cancelled);
  }
  run_for(std::chrono::milliseconds(100));
}

// A request made from a callback that the destructor runs must not be accepted
// and then forgotten: it is refused, or it too ends (exactly once).
TEST_F(HttpClientTest, RequestFromACallbackDuringDestructionIsNotLost) {
  struct State {
    HttpClient* client = nullptr;
    std::string url;
    Outcome late;
    Errc late_accept = Errc::ok;
    int first_calls = 0;
  } st;
  st.url = url("good", "/fault/delay?ms=2000");
  struct Resubmit {
    State* st;
    void operator()(tern::Result<tern::HttpResponse>) const {
      ++st->first_calls;
      HttpRequest req;
      req.url = st->url;
      st->late_accept = st->client->request(req, capture(&st->late));
    }
  };
  {
    HttpClient client(reactor_, config_);
    st.client = &client;
    HttpRequest req;
    req.url = st.url;
    ASSERT_EQ(client.request(req, Resubmit{&st}), Errc::ok);
    run_for(std::chrono::milliseconds(100));
  }
  run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(st.first_calls, 1);
  if (st.late_accept == Errc::ok) {
    EXPECT_EQ(st.late.calls, 1)
        << "accepted during destruction, and never ended";
  } else {
    EXPECT_EQ(st.late.calls, 0);
  }
}

// The health check before reuse peeks even at a connection parked this turn: a close
// that came right behind the answer must keep a POST (never retried) off it.
TEST_F(HttpClientTest, PooledConnectionClosedWithItsAnswerIsNotReusedForAPost) {
  config_.max_connections = 1;
  HttpClient client(reactor_, config_);
  Outcome a, b;
  const std::string ua = url("plain", "/fault/answer-then-close?ms=300");
  const std::string ub = url("plain", "/health");
  HttpRequest ra;
  ra.url = ua;
  HttpRequest rb;
  rb.method = "POST";
  rb.url = ub;
  rb.body = "x";
  ASSERT_EQ(client.request(ra, capture(&a)), Errc::ok);
  ASSERT_EQ(client.request(rb, capture(&b)), Errc::ok);  // waits for the one connection
  run_for(std::chrono::milliseconds(100));                // A is on the wire
  ::usleep(700 * 1000);  // meanwhile the server answers A and closes: both arrive at once
  ASSERT_TRUE(run_until([&] { return a.done() && b.done(); }));
  EXPECT_EQ(a.err, Errc::ok);
  EXPECT_EQ(b.err, Errc::ok) << "a POST sent on a connection whose FIN had arrived";
  EXPECT_EQ(b.status, 200);
  expect_quiescent(client);
}

// Bytes a broken server sends after a complete answer (a body on HEAD, in a TLS record
// of its own) are never taken for the next request's answer.
TEST_F(HttpClientTest, BytesAfterAHeadResponseAreNotTheNextResponse) {
  config_.max_connections = 1;
  HttpClient client(reactor_, config_);
  Outcome a, b;
  const std::string ua = url("good", "/fault/head-body?ms=300");
  const std::string ub = url("good", "/health");
  HttpRequest ra;
  ra.method = "HEAD";
  ra.url = ua;
  HttpRequest rb;
  rb.url = ub;
  ASSERT_EQ(client.request(ra, capture(&a)), Errc::ok);
  ASSERT_EQ(client.request(rb, capture(&b)), Errc::ok);
  run_for(std::chrono::milliseconds(100));
  ::usleep(700 * 1000);
  ASSERT_TRUE(run_until([&] { return a.done() && b.done(); }));
  EXPECT_EQ(a.err, Errc::ok);
  EXPECT_EQ(b.err, Errc::ok);
  EXPECT_EQ(b.body, "{\"status\": \"ok\"}") << "B got the bytes the server sent after A";
  expect_quiescent(client);
}

// A callback that asks again on every (synchronous) failure does not keep the reactor
// in one turn: the new request starts on a later turn.
TEST_F(HttpClientTest, RequestFromAnErrorCallbackStartsOnALaterTurn) {
  config_.hosts_file = "/nonexistent/hosts";  // every host-name try fails at once with dns
  struct State {
    HttpClient* client = nullptr;
    Reactor* reactor = nullptr;
    int calls = 0;
    std::uint64_t last_turn = 0;
    int max_in_one_turn = 0, in_this_turn = 0;
  } st;
  HttpClient client(reactor_, config_);
  st.client = &client;
  st.reactor = &reactor_;
  struct Again {
    State* st;
    void operator()(tern::Result<tern::HttpResponse>) const {
      ++st->calls;
      std::uint64_t t = st->reactor->stats().turns;
      st->in_this_turn = t == st->last_turn ? st->in_this_turn + 1 : 1;
      st->last_turn = t;
      st->max_in_one_turn = std::max(st->max_in_one_turn, st->in_this_turn);
      if (st->calls >= 200) return;  // bounded, so the test cannot hang
      HttpRequest req;
      req.url = "http://nowhere.test/";
      EXPECT_EQ(st->client->request(req, Again{st}), Errc::ok);
    }
  };
  HttpRequest req;
  req.url = "http://nowhere.test/";
  ASSERT_EQ(client.request(req, Again{&st}), Errc::ok);
  reactor_.run_once(tern::ms(50));
  EXPECT_LE(st.calls, 2) << "one turn ran " << st.calls << " request/fail cycles";
  ASSERT_TRUE(run_until([&] { return st.calls >= 200; }));
  EXPECT_LE(st.max_in_one_turn, 2);
  expect_quiescent(client);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  g_env = new NetEnvironment;
  ::testing::AddGlobalTestEnvironment(g_env);  // owned by GoogleTest
  return RUN_ALL_TESTS();
}
