// embed_client: many embedding requests over HTTPS to an OpenAI-style /v1/embeddings
// endpoint, with bounded concurrency, a keep-alive pool and batching — the fix for the
// seed RAG system that hung at 5+ concurrent calls with one thread per request.
//
//   embed_client --url https://127.0.0.1:8443/v1/embeddings --ca ca.pem
//                --requests 1000 --concurrency 8 --batch 16 --timeout-ms 5000
//
// Without --url it starts the local test upstream (tests/tools/upstream.py, with
// certificates made by tests/tools/make_certs.sh) and talks to that, so it works on a
// machine with no network. Prints a summary and exits non-zero if any text did not get
// exactly one outcome.
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cjson/cJSON.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tern/net/http_client.hpp"
#include "tern/net/json.hpp"
#include "tern/resilience/batcher.hpp"

extern char** environ;

namespace {

struct Options {
  std::string url;
  std::string ca;
  int requests = 1000;
  int concurrency = 8;
  int batch = 16;
  int timeout_ms = 5000;
  bool require_ok = false;  // exit non-zero unless every text got an embedding
};

constexpr std::size_t kMaxBatch = 64;
constexpr std::size_t kMaxConcurrency = 64;

struct Text {
  char s[32];
};

struct Embedding {
  int dims = 0;
  double first = 0;
};

using Embedder = tern::Batcher<Text, Embedding, kMaxBatch, kMaxConcurrency>;

int usage() {
  std::fprintf(stderr,
               "usage: embed_client [--url URL --ca FILE] [--requests N] [--concurrency C]\n"
               "                    [--batch B] [--timeout-ms T] [--require-ok]\n"
               "  C <= %zu, B <= %zu; without --url a local upstream is started.\n",
               kMaxConcurrency, kMaxBatch);
  return 2;
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--url" && next(&v)) {
      o->url = v;
    } else if (a == "--ca" && next(&v)) {
      o->ca = v;
    } else if (a == "--requests" && next(&v)) {
      o->requests = std::atoi(v.c_str());
    } else if (a == "--concurrency" && next(&v)) {
      o->concurrency = std::atoi(v.c_str());
    } else if (a == "--batch" && next(&v)) {
      o->batch = std::atoi(v.c_str());
    } else if (a == "--timeout-ms" && next(&v)) {
      o->timeout_ms = std::atoi(v.c_str());
    } else if (a == "--require-ok") {
      o->require_ok = true;
    } else {
      return false;
    }
  }
  return o->requests > 0 && o->concurrency > 0 && o->concurrency <= static_cast<int>(kMaxConcurrency) &&
         o->batch > 0 && o->batch <= static_cast<int>(kMaxBatch) && o->timeout_ms > 0 &&
         (o->url.empty() || !o->ca.empty() || o->url.rfind("http://", 0) == 0);
}

// The local upstream: make certificates, start upstream.py, read its port.
struct LocalUpstream {
  pid_t pid = -1;
  int out_fd = -1;
  int in_fd = -1;
  std::string dir;

  bool start(Options* o) {
    char tmpl[] = "/tmp/tern-embed-XXXXXX";
    if (!mkdtemp(tmpl)) return false;
    dir = tmpl;
    std::string tools = TERN_SOURCE_DIR "/tests/tools";
    std::string certs = "sh " + tools + "/make_certs.sh " + dir;
    if (std::system(certs.c_str()) != 0) return false;
    int out[2], in[2];
    if (pipe(out) != 0) return false;
    if (pipe(in) != 0) {
      close(out[0]);
      close(out[1]);
      return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    std::string script = tools + "/upstream.py";
    const char* args[] = {"/usr/bin/python3", script.c_str(), "--certs", dir.c_str(), "--max-seconds", "600", nullptr};
    int rc = posix_spawn(&pid, args[0], &fa, nullptr, const_cast<char**>(args), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(in[0]);
    // Owned from here: the destructor closes them (and reaps the upstream if it ran).
    out_fd = out[0];
    in_fd = in[1];  // closing it (our exit) makes the upstream exit: stdin EOF
    if (rc != 0) {
      pid = -1;
      return false;
    }
    char line[256];
    std::size_t n = 0;
    while (n + 1 < sizeof line) {
      // The upstream prints its port within a second or two; a stuck one is an error,
      // not a wait until the test harness gives up.
      pollfd p{out_fd, POLLIN, 0};
      if (poll(&p, 1, 30000) != 1) return false;
      ssize_t r = read(out_fd, line + n, 1);
      if (r <= 0) return false;
      if (line[n] == '\n') break;
      ++n;
    }
    line[n] = '\0';
    int port = 0;
    if (std::sscanf(line, "PORT %d", &port) != 1) return false;
    o->url = "https://127.0.0.1:" + std::to_string(port) + "/v1/embeddings";
    o->ca = dir + "/ca.pem";
    return true;
  }

  ~LocalUpstream() {
    if (in_fd >= 0) close(in_fd);
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
    if (out_fd >= 0) close(out_fd);
    if (!dir.empty()) std::system(("rm -rf " + dir).c_str());
  }
};

struct Summary {
  int http_requests = 0;
  int http_ok = 0;
  int texts_ok = 0;
  int outcomes = 0;
  std::size_t most_in_flight = 0;  // HTTP requests on the wire at once, at its highest
  const tern::HttpClient* client = nullptr;  // for that count (no room in a 32-bit capture)
  int by_errc[32] = {};
  std::vector<double> latency_ms;
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, &opt)) return usage();
  signal(SIGPIPE, SIG_IGN);
  LocalUpstream local;
  if (opt.url.empty()) {
    if (!local.start(&opt)) {
      std::fprintf(stderr, "embed_client: could not start the local upstream\n");
      return 1;
    }
    std::printf("embed_client: started the local upstream at %s\n", opt.url.c_str());
  }

  tern::Reactor reactor(tern::ReactorConfig{.max_timers = 16, .max_posted = 64, .max_watches = 80});
  tern::HttpClientConfig hc;
  hc.max_in_flight = static_cast<std::size_t>(opt.concurrency);
  hc.max_connections = static_cast<std::size_t>(opt.concurrency);
  hc.max_per_origin = static_cast<std::size_t>(opt.concurrency);
  hc.queue_length = kMaxConcurrency;
  hc.ca_file = opt.ca.empty() ? hc.ca_file : opt.ca.c_str();
  hc.request_timeout = tern::ms(opt.timeout_ms);
  tern::HttpClient client(reactor, hc);
  if (client.init_error() != tern::Errc::ok) {
    std::fprintf(stderr, "embed_client: cannot load CA file %s\n", hc.ca_file);
    return 1;
  }
  tern::JsonPool json;
  Summary sum;
  sum.client = &client;
  sum.latency_ms.reserve(static_cast<std::size_t>(opt.requests));
  std::string url = opt.url;

  // One batch = one POST. The texts are serialised at once (the span dies after this).
  Embedder embedder(reactor, {.max_delay = tern::ms(2)}, [&](std::span<Text> texts, Embedder::Ticket ticket) {
    static char body[kMaxBatch * 48 + 128];
    tern::JsonDoc doc(cJSON_CreateObject());
    cJSON_AddStringToObject(doc.get(), "model", "tern-embed");
    cJSON* input = cJSON_AddArrayToObject(doc.get(), "input");
    for (const Text& t : texts) cJSON_AddItemToArray(input, cJSON_CreateString(t.s));
    tern::Result<std::size_t> n = tern::json_print(doc.get(), body, sizeof body);
    if (!n) {
      (void)ticket.fail_all(n.error());
      return;
    }
    tern::HttpRequest req;
    req.method = "POST";
    req.url = url;
    req.headers[0] = {"Content-Type", "application/json"};
    req.header_count = 1;
    req.body = std::string_view(body, *n);
    ++sum.http_requests;
    tern::Errc e = client.request(req, [&sum, ticket](tern::Result<tern::HttpResponse> r) mutable {
      // This one has just left the count: with it, that many were on the wire.
      const std::size_t out = sum.client->stats().in_flight + 1;
      if (out > sum.most_in_flight) sum.most_in_flight = out;
      if (!r) {
        (void)ticket.fail_all(r.error());
        return;
      }
      if (r->status != 200) {
        (void)ticket.fail_all(tern::Errc::failed);
        return;
      }
      tern::Result<tern::JsonDoc> parsed = tern::json_parse(r->body);
      if (!parsed) {
        (void)ticket.fail_all(parsed.error());
        return;
      }
      ++sum.http_ok;
      const cJSON* data = cJSON_GetObjectItemCaseSensitive(parsed->get(), "data");
      const cJSON* item = nullptr;
      cJSON_ArrayForEach(item, data) {
        const cJSON* index = cJSON_GetObjectItemCaseSensitive(item, "index");
        const cJSON* vec = cJSON_GetObjectItemCaseSensitive(item, "embedding");
        if (!cJSON_IsNumber(index) || !cJSON_IsArray(vec)) continue;
        Embedding emb;
        emb.dims = cJSON_GetArraySize(vec);
        const cJSON* first = cJSON_GetArrayItem(vec, 0);
        emb.first = cJSON_IsNumber(first) ? first->valuedouble : 0;
        (void)ticket.complete(static_cast<std::size_t>(index->valueint), emb);
      }
      (void)ticket.finish();  // any text the server skipped ends with no_reply
    });
    if (e != tern::Errc::ok) (void)ticket.fail_all(e);
  });

  struct App {
    Summary* sum;
    tern::Reactor* reactor;
    int requests;
  } app{&sum, &reactor, opt.requests};

  // Feed the texts as room appears, `batch` at a time, so at most `concurrency` batches
  // are in the air and one is gathering.
  int next = 0;
  const std::size_t window = static_cast<std::size_t>(opt.batch) * static_cast<std::size_t>(opt.concurrency + 1);
  // Returns true when it stopped at a batch boundary (more to add on the next turn).
  auto feed = [&]() -> bool {
    while (next < opt.requests && embedder.stats().waiting < window) {
      Text t{};
      std::snprintf(t.s, sizeof t.s, "text number %d", next);
      tern::Instant started = reactor.now();
      // One pointer and the start time: small enough for a 32-bit target's callbacks.
      auto id = embedder.add(t, started + tern::ms(opt.timeout_ms), [a = &app, started](tern::Result<Embedding> r) {
        Summary& sum = *a->sum;
        ++sum.outcomes;
        if (r.ok() && r->dims > 0) {
          ++sum.texts_ok;
        } else {
          tern::Errc err = r.ok() ? tern::Errc::protocol : r.error();
          ++sum.by_errc[static_cast<int>(err)];
        }
        sum.latency_ms.push_back(static_cast<double>((a->reactor->now() - started).us) / 1000.0);
        if (sum.outcomes == a->requests) a->reactor->stop();
      });
      if (!id) break;  // full: retried when outcomes free room
      ++next;
      if (embedder.stats().pending >= static_cast<std::size_t>(opt.batch)) {
        embedder.flush();  // this batch is complete: the next texts start a new one
        return true;
      }
    }
    return false;
  };
  tern::Timer feeder;
  struct FeedCtx {
    decltype(feed)* f;
    tern::Reactor* r;
    tern::Timer* t;
  } ctx{&feed, &reactor, &feeder};
  // A batch boundary with more to add: the next batch goes on the next turn (a posted
  // call), not at the next 1 ms tick, so batches reach the wire as fast as the client
  // takes them and concurrency is really used. Otherwise the feeder looks again in 1 ms.
  static void (*const feed_step)(FeedCtx*) = [](FeedCtx* c) {
    if ((*c->f)() && c->r->post([c] { feed_step(c); }) == tern::Errc::ok) return;
    c->r->wheel().arm(*c->t, c->r->now() + tern::ms(1));
  };
  feeder.set_callback([](void* p) { feed_step(static_cast<FeedCtx*>(p)); }, &ctx);
  reactor.wheel().arm(feeder, reactor.now());
  tern::Instant t0 = reactor.now();
  auto guard = reactor.after(tern::ms(opt.timeout_ms) * 4 + tern::seconds(opt.requests / 50 + 10), [&] {
    std::fprintf(stderr, "embed_client: gave up waiting (a bug: every text has a deadline)\n");
    reactor.stop();
  });
  reactor.run();
  reactor.wheel().cancel(feeder);
  double seconds = static_cast<double>((reactor.now() - t0).us) / 1e6;

  std::sort(sum.latency_ms.begin(), sum.latency_ms.end());
  auto pct = [&](double p) {
    if (sum.latency_ms.empty()) return 0.0;
    std::size_t i = static_cast<std::size_t>(p * static_cast<double>(sum.latency_ms.size() - 1));
    return sum.latency_ms[i];
  };
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const tern::HttpClientStats& s = client.stats();
  std::printf("texts              %d (batch %d, concurrency %d) in %.2f s\n", opt.requests, opt.batch,
              opt.concurrency, seconds);
  std::printf("http requests      %d (ok %d)\n", sum.http_requests, sum.http_ok);
  std::printf("texts ok           %d\n", sum.texts_ok);
  for (int i = 0; i < 32; ++i) {
    if (sum.by_errc[i]) std::printf("texts failed       %d (%s)\n", sum.by_errc[i], tern::errc_name(static_cast<tern::Errc>(i)));
  }
  std::printf("connections opened %llu, reuses %llu, TLS handshakes %llu (resumed %llu)\n",
              static_cast<unsigned long long>(s.connections_opened), static_cast<unsigned long long>(s.reuses),
              static_cast<unsigned long long>(s.tls_handshakes), static_cast<unsigned long long>(s.tls_resumed));
  std::printf("latency per text   p50 %.2f ms, p99 %.2f ms\n", pct(0.50), pct(0.99));
  std::printf("most in flight     %zu HTTP requests at once (concurrency %d)\n", sum.most_in_flight,
              opt.concurrency);
  std::printf("peak RSS           %ld KiB\n", ru.ru_maxrss);
  bool exactly_once = sum.outcomes == opt.requests && next == opt.requests;
  std::printf("outcomes           %d of %d texts: %s\n", sum.outcomes, opt.requests,
              exactly_once ? "each exactly once" : "MISSING OUTCOMES");
  (void)guard;
  if (!exactly_once) return 1;
  // How much concurrency was used depends on timing (the upstream's speed against the
  // client's): reported above, not checked.
  return opt.require_ok && sum.texts_ok != opt.requests ? 1 : 0;
}
