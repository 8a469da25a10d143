// libFuzzer target for HttpResponseParser (built and run by scripts/fuzz).
//
// Input layout: byte 0 picks the options (HEAD request, EOF at the end, which small
// limits, the mode), bytes 1-3 pick the sizes of the pieces the rest is fed in.
// - Raw mode (bit 6 clear): the rest is what the "server" sent. The same bytes are parsed
//   four ways (one feed, one byte at a time, the chosen pieces, and the chosen pieces
//   with the head in lent storage and the body stored after it, as HttpClient does), each
//   parse going on to the pipelined responses that follow a complete one, and all must
//   agree exactly. Along the way the parser's invariants are checked, and with lent
//   storage that the stored body was never overwritten.
// - Round-trip mode (bit 6 set): the rest describes a valid response (status, version,
//   framing, line endings, chunk sizes, extensions, trailers, body bytes); the harness
//   writes it out and checks that the parser gives back exactly what was encoded.
// A violation aborts, which libFuzzer reports as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tern/net/http_parser.hpp"

#define TERN_FUZZ_TARGET "http_parser_fuzz"
#include "fuzz_check.hpp"

namespace {

using tern::Errc;

struct Options {
  bool head = false;
  bool eof = false;
  tern::HttpLimits limits;
  std::size_t pieces[3] = {1, 1, 1};
};

constexpr std::size_t kMaxResponses = 4;  // pipelined responses followed per input

bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
         (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);  // strchr finds the NUL
}

// Parses `data` fed in pieces of `piece(k)` bytes, following pipelined responses, and
// returns a transcript of everything observable. Checks invariants on the way.
template <typename PieceSize>
std::string parse(const Options& opt, const char* data, std::size_t n, PieceSize piece,
                  bool lent = false) {
  tern::HttpResponseParser p(opt.limits, lent ? tern::HeadStorage::lent : tern::HeadStorage::owned);
  // Lent: as large as the limits allow, so the outcome must be the owned parser's.
  std::string storage(lent ? opt.limits.max_header_bytes + opt.limits.max_body : 0, '\0');
  std::string out;
  std::string body;
  struct State {
    tern::HttpResponseParser* p;
    std::string* storage;
    std::string* body;
    std::size_t delivered;
  } st{&p, &storage, &body, 0};
  tern::BodySink sink = [s = &st](const char* d, std::size_t len) {
    CHECK(len > 0);
    CHECK(d != nullptr);
    s->body->append(d, len);
    if (!s->storage->empty()) {
      std::size_t at = s->p->head_bytes() + s->delivered;
      CHECK(s->p->headers_complete());
      CHECK(at + len <= s->storage->size());
      std::memcpy(s->storage->data() + at, d, len);
    }
    s->delivered += len;
    return Errc::ok;
  };
  std::size_t& delivered = st.delivered;
  std::size_t pos = 0, k = 0;
  for (std::size_t response = 0; response < kMaxResponses; ++response) {
    if (lent) {
      p.reset(opt.head, storage.data(), storage.size());
    } else {
      p.reset(opt.head);
    }
    body.clear();
    delivered = 0;
    Errc err = Errc::ok;
    bool ended = false;  // complete inside the data: the rest is the next response
    while (pos < n) {
      std::size_t len = piece(k++);
      if (len == 0 || len > n - pos) len = n - pos;
      auto used = p.feed(data + pos, len, sink);
      if (!used) {
        err = used.error();
        CHECK(err == Errc::protocol || err == Errc::too_large);
        CHECK(p.error() == err);
        CHECK(!p.complete());
        CHECK(!p.keep_alive());
        // Sticky.
        auto again = p.feed(data + pos, len, sink);
        CHECK(!again && again.error() == err);
        break;
      }
      CHECK(*used <= len);
      pos += *used;
      if (*used < len) {
        CHECK(p.complete());
        ended = true;
        break;
      }
      if (p.complete()) {
        ended = true;
        break;
      }
    }
    if (ended && pos < n) {  // complete: nothing more is taken until reset()
      auto more = p.feed(data + pos, n - pos, sink);
      CHECK(more && *more == 0);
    }
    if (err == Errc::ok && !ended && opt.eof) {
      err = p.on_eof();
      CHECK(err == Errc::ok || err == Errc::protocol || err == Errc::closed);
      if (err == Errc::ok) CHECK(p.complete());
    }

    CHECK(!p.complete() || p.headers_complete());
    CHECK(p.body_bytes() == delivered);
    CHECK(p.body_bytes() <= opt.limits.max_body);
    CHECK(p.header_count() <= opt.limits.max_headers);
    if (opt.head) CHECK(p.body_bytes() == 0);
    if (p.headers_complete()) {
      CHECK(p.status() >= 101 && p.status() <= 999);
      CHECK(p.status() >= 200 || p.status() == 101);
      CHECK(p.version_minor() == 0 || p.version_minor() == 1);
      if (!p.chunked() && p.content_length() && p.complete() && !opt.head && p.status() != 204 &&
          p.status() != 304 && p.status() != 101) {
        CHECK(p.body_bytes() == *p.content_length());
      }
      if (p.chunked()) CHECK(!p.content_length());
      std::size_t header_bytes = p.reason().size();
      for (char c : p.reason()) CHECK(c != '\r' && c != '\n' && c != '\0');
      for (std::size_t i = 0; i < p.header_count(); ++i) {
        tern::HttpHeader h = p.header_at(i);
        CHECK(!h.name.empty());
        for (char c : h.name) CHECK(is_tchar(static_cast<unsigned char>(c)));
        for (char c : h.value) CHECK(c != '\r' && c != '\n' && c != '\0');
        if (!h.value.empty()) {
          CHECK(h.value.front() != ' ' && h.value.front() != '\t');
          CHECK(h.value.back() != ' ' && h.value.back() != '\t');
        }
        CHECK(p.header(h.name).has_value());
        header_bytes += h.name.size() + h.value.size();
      }
      CHECK(header_bytes <= opt.limits.max_header_bytes);
      CHECK(p.head_bytes() == header_bytes);  // packed: reason, names, values, nothing else
      if (lent) {
        CHECK(p.reason().data() == storage.data());
        // Trailers and the rest never wrote over the body kept after the head.
        CHECK(storage.compare(p.head_bytes(), body.size(), body) == 0);
      }
    } else {
      CHECK(p.head_bytes() == 0);
      CHECK(p.status() == 0);
      CHECK(p.header_count() == 0);
    }

    // The transcript: everything a caller could observe.
    char line[160];
    std::snprintf(line, sizeof line,
                  "#%zu err=%s complete=%d hc=%d status=%d v=%d ka=%d ch=%d "
                  "cl=%lld body=%llu pos=%zu reason=",
                  response, tern::errc_name(err), p.complete(), p.headers_complete(), p.status(),
                  p.version_minor(), p.keep_alive(), p.chunked(),
                  p.content_length() ? static_cast<long long>(*p.content_length()) : -1LL,
                  static_cast<unsigned long long>(p.body_bytes()), err == Errc::ok ? pos : 0);
    out += line;
    out += p.reason();
    for (std::size_t i = 0; i < p.header_count(); ++i) {
      tern::HttpHeader h = p.header_at(i);
      out += '\n';
      out += h.name;
      out += ':';
      out += h.value;
    }
    out += "\nbody:";
    out += body;
    out += '\n';

    // Never-stored names are never found; EOF after an outcome changes nothing.
    CHECK(!p.header("\x01"));
    if (err != Errc::ok) {
      CHECK(p.on_eof() == err);
    } else if (p.complete()) {
      CHECK(p.on_eof() == Errc::ok);
      CHECK(p.complete());
    }
    if (!ended) break;
  }
  return out;
}

// Writes a valid response described by `d` and checks that parsing it (in one feed and in
// the chosen pieces) returns exactly what was written.
void round_trip(Options opt, const std::uint8_t* d, std::size_t n) {
  opt.limits = tern::HttpLimits{4096, 8, 300};
  std::uint8_t c0 = n > 0 ? d[0] : 0;
  std::uint8_t c1 = n > 1 ? d[1] : 0;
  std::size_t skip = n < 2 ? n : 2;
  d += skip;
  n -= skip;
  static constexpr int kStatus[8] = {200, 201, 204, 304, 404, 500, 206, 299};
  const int status = kStatus[c0 & 7];
  const int framing = (c0 >> 3) % 3;  // 0 Content-Length, 1 chunked, 2 close-delimited
  const bool http10 = c0 & 0x20;
  const bool interim = c0 & 0x40;
  const bool lf_only = c0 & 0x80;
  const bool extensions = c1 & 1;
  const bool trailers = c1 & 2;
  const bool fold = c1 & 4;
  const bool keep_alive_token = c1 & 8;
  const bool upper_hex = c1 & 16;
  const std::string eol = lf_only ? "\n" : "\r\n";
  const std::string body(reinterpret_cast<const char*>(d), n < 300 ? n : 300);
  const bool body_follows = !opt.head && status != 204 && status != 304;

  std::string wire;
  if (interim) wire += "HTTP/1.1 100 Continue" + eol + "X-Interim: 1" + eol + eol;
  wire += http10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  wire += std::to_string(status) + " Some reason" + eol;
  wire += "X-Body-Size:  " + std::to_string(body.size()) + " " + eol;
  if (fold) wire += "X-Folded: a" + eol + " \tb" + eol;
  if (keep_alive_token) wire += "Connection: Keep-Alive" + eol;
  if (framing == 0) wire += "Content-Length: " + std::to_string(body.size()) + eol;
  if (framing == 1) wire += "Transfer-Encoding: chunked" + eol;
  wire += eol;
  std::uint32_t rng = c1 * 2654435761u + static_cast<std::uint32_t>(n);
  if (body_follows) {
    if (framing == 1) {
      std::size_t at = 0;
      while (at < body.size()) {
        rng = rng * 1103515245u + 12345u;
        std::size_t len = 1 + (rng >> 16) % 40;
        if (len > body.size() - at) len = body.size() - at;
        char size[24];
        std::snprintf(size, sizeof size, upper_hex ? "%zX" : "%zx", len);
        wire += size;
        if (extensions && (rng & 0x100)) wire += " ; name=\"v;\\\" x\";flag";
        wire += "\r\n";
        wire.append(body, at, len);
        wire += "\r\n";
        at += len;
      }
      wire += "0";
      if (extensions) wire += ";last";
      wire += "\r\n";
      if (trailers) wire += "X-Trailer: t" + eol + "X-Other:" + eol + " folded" + eol;
      wire += eol;
    } else {
      wire += body;
    }
  }
  const std::size_t length = wire.size();
  const bool close_delimited = body_follows && framing == 2;
  if (!close_delimited) wire += "HTTP/1.1 200 OK\r\n";  // the next response

  for (int way = 0; way < 2; ++way) {
    tern::HttpResponseParser p(opt.limits);
    p.reset(opt.head);
    std::string got;
    tern::BodySink sink = [&got](const char* b, std::size_t len) {
      got.append(b, len);
      return Errc::ok;
    };
    std::size_t pos = 0, k = 0;
    while (pos < wire.size() && !p.complete()) {
      std::size_t len = way == 0 ? 0 : opt.pieces[k++ % 3];
      if (len == 0 || len > wire.size() - pos) len = wire.size() - pos;
      auto used = p.feed(wire.data() + pos, len, sink);
      if (!used) {
        std::fprintf(stderr, "round trip: %s at %zu of:\n%s\n", tern::errc_name(used.error()), pos,
                     wire.c_str());
        violated("a valid response was rejected");
      }
      pos += *used;
    }
    if (close_delimited) {
      CHECK(!p.complete());
      CHECK(p.on_eof() == Errc::ok);
    }
    CHECK(p.complete());
    CHECK(pos == length);
    CHECK(p.status() == status);
    CHECK(p.version_minor() == (http10 ? 0 : 1));
    CHECK(p.reason() == "Some reason");
    CHECK(got == (body_follows ? body : std::string()));
    CHECK(p.body_bytes() == got.size());
    CHECK(p.header("x-body-size") == std::to_string(body.size()));
    CHECK(!p.header("x-interim"));
    CHECK(!p.header("x-trailer"));
    if (fold) CHECK(p.header("X-FOLDED") == "a b");
    CHECK(p.chunked() == (framing == 1));
    if (framing == 0) {
      CHECK(p.content_length() == body.size());
    } else {
      CHECK(!p.content_length());
    }
    bool keep = !close_delimited && (http10 ? keep_alive_token && framing != 1 : true);
    CHECK(p.keep_alive() == keep);
  }
}

Options decode_options(const std::uint8_t* data, std::size_t size) {
  Options opt;
  std::uint8_t flags = size > 0 ? data[0] : 0;
  opt.head = flags & 1;
  opt.eof = flags & 2;
  static constexpr std::size_t kHeaderBytes[4] = {64, 128, 256, 1024};
  static constexpr std::size_t kHeaders[2] = {2, 8};
  static constexpr std::size_t kBody[2] = {16, 300};
  opt.limits.max_header_bytes = kHeaderBytes[(flags >> 2) & 3];
  opt.limits.max_headers = kHeaders[(flags >> 4) & 1];
  opt.limits.max_body = kBody[(flags >> 5) & 1];
  for (std::size_t i = 0; i < 3; ++i) {
    std::uint8_t b = size > i + 1 ? data[i + 1] : 1;
    // Mostly small pieces, sometimes "the rest" (0).
    opt.pieces[i] = (flags & 0x80) ? b : b % 17;
  }
  return opt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Options opt = decode_options(data, size);
  std::size_t skip = size < 4 ? size : 4;
  const char* http = reinterpret_cast<const char*>(data + skip);
  std::size_t n = size - skip;
  if (size > 0 && (data[0] & 0x40)) {
    round_trip(opt, data + skip, n);
    return 0;
  }

  std::string whole = parse(opt, http, n, [](std::size_t) { return std::size_t{0}; });
  std::string bytes = parse(opt, http, n, [](std::size_t) { return std::size_t{1}; });
  if (whole != bytes) {
    std::fprintf(stderr, "one feed:\n%s\nbyte at a time:\n%s\n", whole.c_str(), bytes.c_str());
    violated("byte-at-a-time feeding differs from one feed");
  }
  std::string pieces = parse(opt, http, n, [&opt](std::size_t k) { return opt.pieces[k % 3]; });
  if (whole != pieces) {
    std::fprintf(stderr, "one feed:\n%s\npieces:\n%s\n", whole.c_str(), pieces.c_str());
    violated("piecewise feeding differs from one feed");
  }
  std::string lent =
      parse(opt, http, n, [&opt](std::size_t k) { return opt.pieces[k % 3]; }, true);
  if (whole != lent) {
    std::fprintf(stderr, "one feed:\n%s\nlent storage:\n%s\n", whole.c_str(), lent.c_str());
    violated("lent head storage differs from owned");
  }
  return 0;
}
