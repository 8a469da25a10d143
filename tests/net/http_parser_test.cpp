#include "tern/net/http_parser.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "alloc_counter.hpp"

namespace {

using tern::Errc;
using tern::HttpLimits;
using tern::HttpResponseParser;
using namespace std::string_view_literals;

// Everything observable about one parse, to compare feeding strategies.
struct Outcome {
  Errc error = Errc::ok;     // from feed(), or from on_eof() when `eof`
  std::size_t consumed = 0;  // bytes of the input that belonged to the response (0 on error)
  bool complete = false;
  bool headers_complete = false;
  int status = 0;
  int version_minor = 0;
  bool keep_alive = false;
  bool chunked = false;
  std::optional<std::uint64_t> content_length;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  os << "{error=" << tern::errc_name(o.error) << " consumed=" << o.consumed
     << " complete=" << o.complete << " headers_complete=" << o.headers_complete
     << " status=" << o.status << " keep_alive=" << o.keep_alive << " body=" << o.body.size()
     << "B headers=" << o.headers.size() << "}";
  return os;
}

// Feeds `input` in pieces of the sizes in `pieces` (cycled; 0 means "the rest"), stopping
// at an error or at completion, then calls on_eof() when `eof` and nothing failed.
// `lent`: the head goes into storage lent at reset(), of `lent_size` bytes, and the body
// after it in the same storage, as HttpClient does; read back from there at the end, so a
// parser that wrote into the storage after the head would show.
Outcome parse_with(std::string_view input, const std::vector<std::size_t>& pieces,
                   const HttpLimits& limits, bool head, bool eof, bool lent,
                   std::size_t lent_size) {
  HttpResponseParser p(limits, lent ? tern::HeadStorage::lent : tern::HeadStorage::owned);
  std::vector<char> storage(lent ? lent_size : 0);
  if (lent) {
    p.reset(head, storage.data(), storage.size());
  } else {
    p.reset(head);
  }
  Outcome o;
  struct Sink {
    bool lent;
    HttpResponseParser* p;
    std::vector<char>* storage;
    std::string* body;  // owned: the body; lent: only counts what went into storage
    std::size_t stored = 0;
  } st{lent, &p, &storage, &o.body};
  tern::BodySink sink = [s = &st](const char* d, std::size_t n) {
    if (!s->lent) {
      s->body->append(d, n);
      return Errc::ok;
    }
    std::size_t at = s->p->head_bytes() + s->stored;
    if (n > s->storage->size() - at) return Errc::too_large;
    std::memcpy(s->storage->data() + at, d, n);
    s->stored += n;
    return Errc::ok;
  };
  std::size_t pos = 0, k = 0;
  while (pos < input.size()) {
    std::size_t want = pieces.empty() ? 0 : pieces[k++ % pieces.size()];
    std::size_t n = want == 0 || want > input.size() - pos ? input.size() - pos : want;
    auto used = p.feed(input.data() + pos, n, sink);
    if (!used) {
      o.error = used.error();
      break;
    }
    pos += *used;
    if (*used < n) break;
  }
  o.consumed = o.error == Errc::ok ? pos : 0;  // nothing is "consumed" by a failed parse
  if (eof && o.error == Errc::ok) o.error = p.on_eof();
  o.complete = p.complete();
  o.headers_complete = p.headers_complete();
  o.status = p.status();
  o.version_minor = p.version_minor();
  o.keep_alive = p.keep_alive();
  o.chunked = p.chunked();
  o.content_length = p.content_length();
  o.reason = std::string(p.reason());
  for (std::size_t i = 0; i < p.header_count(); ++i) {
    auto h = p.header_at(i);
    o.headers.emplace_back(std::string(h.name), std::string(h.value));
  }
  if (lent) o.body.assign(storage.data() + p.head_bytes(), st.stored);
  // (A lent sink refuses what does not fit, after the parser counted it.)
  if (!lent || o.error == Errc::ok) {
    EXPECT_EQ(p.body_bytes(), o.body.size());
  }
  return o;
}

// As parse_with, owned; and the same with lent storage as large as the limit allows (plus
// room for the body) must give the same outcome.
Outcome parse(std::string_view input, const std::vector<std::size_t>& pieces,
              const HttpLimits& limits = {}, bool head = false, bool eof = false) {
  Outcome owned = parse_with(input, pieces, limits, head, eof, false, 0);
  Outcome lent =
      parse_with(input, pieces, limits, head, eof, true, limits.max_header_bytes + input.size());
  EXPECT_EQ(lent, owned) << "lent storage disagrees with owned";
  return owned;
}

Outcome whole(std::string_view input, const HttpLimits& limits = {}, bool head = false,
              bool eof = false) {
  return parse(input, {}, limits, head, eof);
}

// One feed, one byte at a time, every two-piece split and a few random splits must agree.
void expect_split_invariant(std::string_view input, const HttpLimits& limits = {},
                            bool head = false, bool eof = false) {
  SCOPED_TRACE(std::string(input.substr(0, 80)));
  Outcome ref = whole(input, limits, head, eof);
  EXPECT_EQ(parse(input, {1}, limits, head, eof), ref) << "byte at a time";
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    EXPECT_EQ(parse(input, {cut, 0}, limits, head, eof), ref) << "split at " << cut;
  }
  std::mt19937 rng(static_cast<unsigned>(input.size()));
  for (int round = 0; round < 50; ++round) {
    std::vector<std::size_t> pieces;
    for (int j = 0; j < 16; ++j) pieces.push_back(1 + rng() % 13);
    EXPECT_EQ(parse(input, pieces, limits, head, eof), ref) << "random round " << round;
  }
}

constexpr std::string_view kSimple =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "{\"ok\": true}\n";

constexpr std::string_view kChunked =
    "HTTP/1.1 200 OK\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5;name=value\r\n"
    "hello\r\n"
    "7 ; a=\"quoted; \\\" string\" ;b\r\n"
    ", world\r\n"
    "A\r\n"
    "0123456789\r\n"
    "0\r\n"
    "Expires: never\r\n"
    "X-Checksum: abc\r\n"
    "\r\n";

TEST(HttpResponseParser, ParsesContentLengthResponse) {
  Outcome o = whole(kSimple);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(o.consumed, kSimple.size());
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(o.version_minor, 1);
  EXPECT_EQ(o.reason, "OK");
  EXPECT_TRUE(o.keep_alive);
  EXPECT_FALSE(o.chunked);
  EXPECT_EQ(o.content_length, 13u);
  EXPECT_EQ(o.body, "{\"ok\": true}\n");
  ASSERT_EQ(o.headers.size(), 2u);
  EXPECT_EQ(o.headers[0].first, "Content-Type");
  EXPECT_EQ(o.headers[0].second, "application/json");
}

TEST(HttpResponseParser, ChunkedBodyWithExtensionsAndTrailersIsDecoded) {
  Outcome o = whole(kChunked);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(o.consumed, kChunked.size());
  EXPECT_TRUE(o.chunked);
  EXPECT_EQ(o.content_length, std::nullopt);
  EXPECT_EQ(o.body, "hello, world0123456789");
  EXPECT_TRUE(o.keep_alive);
  // Trailers are checked and discarded; the head's fields are untouched by them.
  ASSERT_EQ(o.headers.size(), 1u);
  EXPECT_EQ(o.headers[0].second, "chunked");
}

TEST(HttpResponseParser, ChunkedCodingNameIsCaseInsensitiveAndHexIsEitherCase) {
  Outcome o = whole(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,  ChUnKeD\r\n\r\n"
      "a\r\n0123456789\r\nB\r\n0123456789a\r\n000\r\n\r\n");
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(o.body.size(), 21u);
}

TEST(HttpResponseParser, EmptyReasonWithOrWithoutTheSpace) {
  for (std::string_view in : {"HTTP/1.1 204 \r\n\r\n", "HTTP/1.1 204\r\n\r\n"}) {
    Outcome o = whole(in);
    EXPECT_EQ(o.error, Errc::ok) << in;
    EXPECT_TRUE(o.complete);
    EXPECT_EQ(o.status, 204);
    EXPECT_EQ(o.reason, "");
  }
  Outcome o = whole("HTTP/1.1 404 Not  Found\tat all \r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(o.reason, "Not  Found\tat all ");
}

TEST(HttpResponseParser, HeaderLookupIsCaseInsensitiveFirstMatchInArrivalOrder) {
  HttpResponseParser p;
  tern::BodySink none;
  std::string_view in =
      "HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\nEmpty:\r\n"
      "Spaces: \t padded value \t \r\n\r\n";
  auto used = p.feed(in.data(), in.size(), none);
  ASSERT_TRUE(used.ok());
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.header("X-A"), "1");
  EXPECT_EQ(p.header("x-A"), "1");
  EXPECT_EQ(p.header("empty"), "");
  EXPECT_EQ(p.header("spaces"), "padded value");
  EXPECT_EQ(p.header("missing"), std::nullopt);
  EXPECT_EQ(p.header("X-"), std::nullopt);
  ASSERT_EQ(p.header_count(), 5u);
  EXPECT_EQ(p.header_at(1).name, "x-a");
  EXPECT_EQ(p.header_at(1).value, "2");
}

TEST(HttpResponseParser, ObsFoldIsReplacedWithOneSpace) {
  Outcome o = whole(
      "HTTP/1.1 200 OK\r\nX-Long: first\r\n   second\r\n\tthird \r\nEmpty:\r\n  now set\r\n"
      "Content-Length: 2\r\n  \r\n\r\nok");
  ASSERT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  ASSERT_EQ(o.headers.size(), 3u);
  EXPECT_EQ(o.headers[0].second, "first second third");
  EXPECT_EQ(o.headers[1].second, "now set");
  EXPECT_EQ(o.headers[2].second, "2");
  EXPECT_EQ(o.body, "ok");
}

TEST(HttpResponseParser, FoldedContentLengthIsParsedAfterUnfolding) {
  // "1\r\n 2" unfolds to "1 2": not a number.
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n 2\r\n\r\n").error, Errc::protocol);
  Outcome o = whole("HTTP/1.1 200 OK\r\nContent-Length:\r\n 3\r\n\r\nabc");
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_EQ(o.body, "abc");
}

TEST(HttpResponseParser, BareLfEndsHeadLinesButNotChunkFraming) {
  Outcome o = whole("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi");
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_EQ(o.body, "hi");
  o = whole("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\r\nhi\r\n0\r\nT: x\n\n");
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n").error,
            Errc::protocol);
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\n0\r\n\r\n").error,
            Errc::protocol);
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n").error,
            Errc::protocol);
}

TEST(HttpResponseParser, EverySplitGivesTheSameOutcome) {
  const std::string_view inputs[] = {
      kSimple,
      kChunked,
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1",
      "HTTP/1.0 200 OK\nServer: x\n  folded\n\nclose-delimited body",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
      "HTTX/1.1 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
  };
  for (std::string_view in : inputs) {
    expect_split_invariant(in);
    expect_split_invariant(in, HttpLimits{}, false, /*eof=*/true);
    expect_split_invariant(in, HttpLimits{}, /*head=*/true);
  }
  // Limits hit at different points must hit at the same byte whatever the split.
  for (std::size_t max_header_bytes : {0u, 5u, 16u, 17u, 30u, 48u, 60u, 80u}) {
    for (std::size_t max_body : {0u, 3u, 10u, 12u, 13u}) {
      HttpLimits limits{max_header_bytes, 2, max_body};
      for (std::string_view in : inputs) expect_split_invariant(in, limits, false, true);
    }
  }
}

TEST(HttpResponseParser, PipelinedResponseLeavesTheRestUnconsumed) {
  std::string two = std::string(kSimple) + std::string(kChunked);
  HttpResponseParser p;
  std::string body;
  tern::BodySink sink = [&body](const char* d, std::size_t n) {
    body.append(d, n);
    return Errc::ok;
  };
  auto used = p.feed(two.data(), two.size(), sink);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, kSimple.size());
  EXPECT_TRUE(p.complete());
  // Complete: nothing more is consumed until reset.
  auto again = p.feed(two.data() + *used, two.size() - *used, sink);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);

  p.reset();
  body.clear();
  auto rest = p.feed(two.data() + *used, two.size() - *used, sink);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(*rest, kChunked.size());
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(body, "hello, world0123456789");
}

TEST(HttpResponseParser, PipelinedLeftoverAfterEveryKindOfEnding) {
  const std::string_view tail = "HTTP/1.1 200 OK\r\n";
  struct Case {
    std::string_view response;
    bool head;
  } cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
      {"HTTP/1.1 204 No Content\r\n\r\n", false},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nA: b\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    std::string in = std::string(c.response) + std::string(tail);
    Outcome o = whole(in, HttpLimits{}, c.head);
    EXPECT_EQ(o.error, Errc::ok) << c.response;
    EXPECT_TRUE(o.complete) << c.response;
    EXPECT_EQ(o.consumed, c.response.size()) << c.response;
    expect_split_invariant(in, HttpLimits{}, c.head);
  }
}

TEST(HttpResponseParser, KeepAliveFollowsVersionAndConnectionTokens) {
  auto ka = [](std::string_view in) {
    Outcome o = whole(in);
    EXPECT_EQ(o.error, Errc::ok) << in;
    EXPECT_TRUE(o.complete) << in;
    return o.keep_alive;
  };
  EXPECT_TRUE(ka("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(
      ka("HTTP/1.1 200 OK\r\nConnection: x\r\nConnection: close\r\n"
         "Content-Length: 0\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(ka("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(
      ka("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n"
         "Content-Length: 0\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.1 304 Not Modified\r\n\r\n"));
  EXPECT_TRUE(ka("HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n"));  // treated as 1.1
}

TEST(HttpResponseParser, CloseDelimitedBodyIsNotKeepAliveAndEndsAtEof) {
  std::string_view in = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nuntil the end";
  HttpResponseParser p;
  std::string body;
  tern::BodySink sink = [&body](const char* d, std::size_t n) {
    body.append(d, n);
    return Errc::ok;
  };
  auto used = p.feed(in.data(), in.size(), sink);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, in.size());
  EXPECT_TRUE(p.headers_complete());
  EXPECT_FALSE(p.complete());
  EXPECT_FALSE(p.keep_alive());
  EXPECT_EQ(p.on_eof(), Errc::ok);
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(body, "until the end");
  EXPECT_EQ(p.on_eof(), Errc::ok);  // already complete
}

TEST(HttpResponseParser, EmptyCloseDelimitedBodyEndsAtEof) {
  Outcome o = whole("HTTP/1.1 200 OK\r\n\r\n", HttpLimits{}, false, true);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(o.body, "");
}

TEST(HttpResponseParser, TruncatedResponseIsProtocolAtEof) {
  const std::string_view cut[] = {
      "H",
      "HTTP/1.1 200 OK\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n012345678",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer: x\r\n",
      "HTTP/1.1 100 Continue\r\n\r\n",
  };
  for (std::string_view in : cut) {
    Outcome o = whole(in, HttpLimits{}, false, /*eof=*/true);
    EXPECT_EQ(o.error, Errc::protocol) << in;
    EXPECT_FALSE(o.complete) << in;
    EXPECT_FALSE(o.keep_alive) << in;
  }
}

TEST(HttpResponseParser, EofBeforeAnyByteIsClosed) {
  HttpResponseParser p;
  EXPECT_EQ(p.on_eof(), Errc::closed);
  EXPECT_EQ(p.error(), Errc::closed);
  p.reset();
  tern::BodySink none;
  auto used = p.feed("", 0, none);  // an empty read is not a byte
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(p.on_eof(), Errc::closed);
}

TEST(HttpResponseParser, InformationalResponsesAreSkipped) {
  std::string_view in =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nContent-Length: 50\r\n\r\n"
      "HTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 2\r\n\r\nokHTTP";
  Outcome o = whole(in);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(o.status, 201);
  EXPECT_EQ(o.reason, "Created");
  ASSERT_EQ(o.headers.size(), 2u);  // the 103's fields are gone
  EXPECT_EQ(o.headers[0].first, "Location");
  EXPECT_EQ(o.body, "ok");
  EXPECT_EQ(o.consumed, in.size() - 4);
}

TEST(HttpResponseParser, InformationalHeadsHaveTheirOwnHeaderBudget) {
  std::string in;
  for (int i = 0; i < 3; ++i) in += "HTTP/1.1 100 Continue\r\nX-Pad: 0123456789\r\n\r\n";
  in += "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  Outcome o = whole(in, HttpLimits{60, 2, 0});
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
}

TEST(HttpResponseParser, EndlessInformationalHeadsAreTooLarge) {
  const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  std::string in;
  for (std::size_t i = 0; i < HttpResponseParser::kMaxInterimHeads; ++i) in += interim;
  const std::string final_head = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  Outcome o = whole(in + final_head);
  EXPECT_EQ(o.error, Errc::ok);  // as many as allowed
  EXPECT_TRUE(o.complete);
  o = whole(in + interim + final_head);
  EXPECT_EQ(o.error, Errc::too_large);  // one more
  EXPECT_FALSE(o.complete);
}

TEST(HttpResponseParser, SwitchingProtocolsEndsAtTheHeadAndIsNotKeepAlive) {
  std::string_view in = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nbinary";
  Outcome o = whole(in);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(o.status, 101);
  EXPECT_FALSE(o.keep_alive);
  EXPECT_EQ(o.consumed, in.size() - 6);
}

TEST(HttpResponseParser, HeadRequestHasNoBodyWhateverTheHeadersSay) {
  std::string_view in = "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nHTTP/1.1";
  Outcome o = whole(in, HttpLimits{}, /*head=*/true);
  EXPECT_EQ(o.error, Errc::ok);  // not too_large: no body follows
  EXPECT_TRUE(o.complete);
  EXPECT_TRUE(o.keep_alive);
  EXPECT_EQ(o.content_length, 99999999999u);
  EXPECT_EQ(o.consumed, in.size() - 8);
  o = whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HttpLimits{}, true);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  o = whole("HTTP/1.1 200 OK\r\n\r\n", HttpLimits{}, true);
  EXPECT_TRUE(o.complete);
  EXPECT_TRUE(o.keep_alive);  // no body, so not close-delimited
}

TEST(HttpResponseParser, NoContentAndNotModifiedHaveNoBody) {
  for (std::string_view in : {
           "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
           "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
           "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\nhello",
           "HTTP/1.1 204 No Content\r\n\r\nhello",
       }) {
    Outcome o = whole(in);
    EXPECT_EQ(o.error, Errc::ok) << in;
    EXPECT_TRUE(o.complete) << in;
    EXPECT_EQ(o.body, "") << in;
    EXPECT_EQ(o.consumed, in.size() - 5) << in;
  }
}

TEST(HttpResponseParser, TransferEncodingOverridesContentLengthAndForbidsReuse) {
  Outcome o = whole(
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_TRUE(o.complete);
  EXPECT_EQ(o.body, "abc");
  EXPECT_TRUE(o.chunked);
  EXPECT_EQ(o.content_length, std::nullopt);
  EXPECT_FALSE(o.keep_alive);
  // HTTP/1.0 with chunked: decoded, but the framing is suspect (RFC 9112 §6.1).
  o = whole(
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n");
  EXPECT_TRUE(o.complete);
  EXPECT_FALSE(o.keep_alive);
}

TEST(HttpResponseParser, IdenticalContentLengthsAreAcceptedDifferentOnesAreProtocol) {
  Outcome o = whole("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 003\r\n\r\nabc");
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_EQ(o.content_length, 3u);
  EXPECT_EQ(o.body, "abc");
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").error,
            Errc::protocol);
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd").error, Errc::protocol);
}

TEST(HttpResponseParser, UnsupportedTransferCodingsAreProtocol) {
  for (std::string_view te : {"gzip", "gzip, chunked", "chunked, gzip", "chunked, chunked", "", ",",
                              "identity", "chunked;q=1", "chunkedx"}) {
    std::string in =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + std::string(te) + "\r\n\r\n0\r\n\r\n";
    EXPECT_EQ(whole(in).error, Errc::protocol) << te;
  }
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                  "\r\n\r\n0\r\n\r\n")
                .error,
            Errc::protocol);
}

TEST(HttpResponseParser, MalformedInputIsProtocol) {
  const std::string_view bad[] = {
      // status line
      "http/1.1 200 OK\r\n\r\n"sv,
      "HTTP/2 200 OK\r\n\r\n"sv,
      "HTTP/2.0 200 OK\r\n\r\n"sv,
      "HTTP/1.x 200 OK\r\n\r\n"sv,
      "HTTP/1.1  200 OK\r\n\r\n"sv,
      "HTTP/1.1 20 OK\r\n\r\n"sv,
      "HTTP/1.1 2000 OK\r\n\r\n"sv,
      "HTTP/1.1 099 Low\r\n\r\n"sv,
      "HTTP/1.1 2x0 OK\r\n\r\n"sv,
      "HTTP/1.1 -20 OK\r\n\r\n"sv,
      "HTTP/1.1 200OK\r\n\r\n"sv,
      "HTTP/1.1 200 O\x01K\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\r\n\r\n"sv,
      "HTTP/1.1\r\n\r\n"sv,
      "\r\nHTTP/1.1 200 OK\r\n\r\n"sv,
      " HTTP/1.1 200 OK\r\n\r\n"sv,
      "SSH-2.0-OpenSSH_9.2\r\n"sv,
      // fields
      "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\n: no name\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nName : space before colon\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nNa me: x\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nN\"ame: x\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\n folded-first: x\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nX: nul\0here\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nX: bare\rcr\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nX: del\x7F\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nX: esc\x1B\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nX: ok\r\n bad\x01 fold\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nX: ok\r\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nX: ok\r\n\r\r\n"sv,
      // Content-Length
      "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: 1.0\r\n\r\nx"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: 1,\r\n\r\nx"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\nx"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"sv,
      // chunked framing
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\rX"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\0\r\nhello\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nNo colon trailer\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded first\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\0\r\n\r\n"sv,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\r\r\n"sv,
  };
  for (std::string_view in : bad) {
    SCOPED_TRACE(std::string(in));
    Outcome o = whole(in, HttpLimits{}, false, /*eof=*/true);
    EXPECT_EQ(o.error, Errc::protocol) << tern::errc_name(o.error);
    EXPECT_FALSE(o.complete);
    EXPECT_FALSE(o.keep_alive);
  }
}

TEST(HttpResponseParser, NulAndCrInsideHeaderValueAreProtocol) {
  std::string_view nul = "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n"sv;
  ASSERT_EQ(nul.find('\0'), 21u);
  EXPECT_EQ(whole(nul).error, Errc::protocol);
  std::string_view nul_chunk_ext =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a\0\r\nx\r\n0\r\n\r\n"sv;
  ASSERT_NE(nul_chunk_ext.find('\0'), std::string_view::npos);
  EXPECT_EQ(whole(nul_chunk_ext).error, Errc::protocol);
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n").error, Errc::protocol);
}

TEST(HttpResponseParser, HeaderBytesLimitIsExact) {
  std::string_view in = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";  // 38 bytes of head
  ASSERT_EQ(in.size(), 38u);
  EXPECT_EQ(whole(in, HttpLimits{38, 32, 0}).error, Errc::ok);
  EXPECT_EQ(whole(in, HttpLimits{37, 32, 0}).error, Errc::too_large);
  EXPECT_EQ(whole(in, HttpLimits{0, 32, 0}).error, Errc::too_large);
  // A never-ending header line is cut off at the limit, not buffered.
  std::string endless = "HTTP/1.1 200 OK\r\nX: " + std::string(10000, 'a');
  EXPECT_EQ(whole(endless).error, Errc::too_large);
}

TEST(HttpResponseParser, HeaderCountLimit) {
  std::string in = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 3; ++i) in += "X-" + std::to_string(i) + ": v\r\n";
  in += "\r\n";
  EXPECT_EQ(whole(in, HttpLimits{8192, 3, 0}, false, true).error, Errc::ok);
  EXPECT_EQ(whole(in, HttpLimits{8192, 2, 0}, false, true).error, Errc::too_large);
  EXPECT_EQ(whole(in, HttpLimits{8192, 0, 0}, false, true).error, Errc::too_large);
}

TEST(HttpResponseParser, BodyLimitForEveryFraming) {
  HttpLimits limits{8192, 32, 4};
  EXPECT_EQ(whole("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", limits).error, Errc::ok);
  // Content-Length over the limit fails at the head, before any body arrives.
  Outcome o = whole("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", limits);
  EXPECT_EQ(o.error, Errc::too_large);
  EXPECT_TRUE(o.headers_complete);
  // Chunked: the sum of chunks, checked at each chunk size.
  std::string_view chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(whole(std::string(chunked) + "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n", limits).error,
            Errc::ok);
  o = whole(std::string(chunked) + "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n", limits);
  EXPECT_EQ(o.error, Errc::too_large);
  EXPECT_EQ(o.body, "ab");
  EXPECT_EQ(whole(std::string(chunked) + "ffffffffffffffff\r\n", limits).error, Errc::too_large);
  // Close-delimited: up to the limit is delivered, then too_large.
  o = whole("HTTP/1.1 200 OK\r\n\r\nabcde", limits, false, true);
  EXPECT_EQ(o.error, Errc::too_large);
  EXPECT_EQ(o.body, "abcd");
  o = whole("HTTP/1.1 200 OK\r\n\r\nabcd", limits, false, true);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_EQ(o.body, "abcd");
}

TEST(HttpResponseParser, TrailerCountAndBytesAreBounded) {
  const std::string_view head_part = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::size_t n = head_part.size();
  std::string head = std::string(head_part) + "0\r\n";  // the size line is not metadata
  std::string three = head + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
  EXPECT_EQ(whole(three, HttpLimits{8192, 3, 0}).error, Errc::ok);
  EXPECT_EQ(whole(three, HttpLimits{8192, 2, 0}).error, Errc::too_large);
  // The trailer lines share the response's header byte budget with the head.
  std::string big = head + "T: " + std::string(100, 'x') + "\r\n\r\n";
  EXPECT_EQ(whole(big, HttpLimits{n + 107, 32, 0}).error, Errc::ok);
  EXPECT_EQ(whole(big, HttpLimits{n + 106, 32, 0}).error, Errc::too_large);
}

TEST(HttpResponseParser, ChunkExtensionsShareTheHeaderByteBudget) {
  std::string in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::size_t n = in.size();
  std::string ext = " ;" + std::string(50, 'e');  // 52 bytes of extension, twice
  std::string chunks = "1" + ext + "\r\nx\r\n1" + ext + "\r\ny\r\n0\r\n\r\n";
  EXPECT_EQ(whole(in + chunks, HttpLimits{n + 104 + 2, 32, 10}).error, Errc::ok);
  EXPECT_EQ(whole(in + chunks, HttpLimits{n + 103 + 2, 32, 10}).error, Errc::too_large);
  // Endless whitespace after a chunk size is bounded the same way.
  EXPECT_EQ(whole(in + "1" + std::string(10000, ' ')).error, Errc::too_large);
}

TEST(HttpResponseParser, BodySinkErrorStopsTheParserAndSticks) {
  std::string_view in = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
  HttpResponseParser p;
  int calls = 0;
  tern::BodySink sink = [&calls](const char*, std::size_t) {
    ++calls;
    return Errc::cancelled;
  };
  auto used = p.feed(in.data(), in.size(), sink);
  ASSERT_FALSE(used.ok());
  EXPECT_EQ(used.error(), Errc::cancelled);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(p.error(), Errc::cancelled);
  EXPECT_FALSE(p.keep_alive());
  EXPECT_EQ(p.feed(in.data(), in.size(), sink).error(), Errc::cancelled);
  EXPECT_EQ(p.on_eof(), Errc::cancelled);
  EXPECT_EQ(calls, 1);
  p.reset();
  EXPECT_EQ(p.error(), Errc::ok);
  tern::BodySink ok = [](const char*, std::size_t) { return Errc::ok; };
  used = p.feed(in.data(), in.size(), ok);
  ASSERT_TRUE(used.ok());
  EXPECT_TRUE(p.complete());
}

TEST(HttpResponseParser, EmptySinkDiscardsTheBody) {
  HttpResponseParser p;
  tern::BodySink none;
  auto used = p.feed(kChunked.data(), kChunked.size(), none);
  ASSERT_TRUE(used.ok());
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(p.body_bytes(), 22u);
}

TEST(HttpResponseParser, ResetBetweenResponsesReusesTheBuffersWithoutAllocating) {
  HttpResponseParser p(HttpLimits{});
  std::size_t total = 0;
  tern::BodySink sink = [&total](const char*, std::size_t n) {
    total += n;
    return Errc::ok;
  };
  std::size_t before = tern_test::allocations();
  for (int round = 0; round < 1000; ++round) {
    for (std::string_view in : {kSimple, kChunked}) {
      p.reset(false);
      auto used = p.feed(in.data(), in.size(), sink);
      if (!used.ok() || !p.complete()) ADD_FAILURE() << "round " << round;
    }
  }
  EXPECT_EQ(tern_test::allocations(), before);
  EXPECT_EQ(total, 1000u * (13 + 22));
}

TEST(HttpResponseParser, ReentryFromTheBodySinkPanics) {
  HttpResponseParser p;
  tern::BodySink sink = [&p](const char*, std::size_t) {
    p.reset();
    return Errc::ok;
  };
  EXPECT_DEATH(
      {
        auto r = p.feed(kSimple.data(), kSimple.size(), sink);
        (void)r;
      },
      "body sink");
}

// ---- lent head storage ----

TEST(HttpResponseParser, LentStorageTooSmallIsTooLargeWhateverThePieces) {
  const HttpLimits limits{};
  // The smallest storage that holds kSimple's head and, after it, its body (stored there
  // by the sink) must work, and one byte less must be too_large, whatever the pieces.
  std::size_t fits = 0;
  for (std::size_t size = 1; size <= kSimple.size() && !fits; ++size) {
    if (parse_with(kSimple, {}, limits, false, false, true, size).error == Errc::ok) fits = size;
  }
  ASSERT_GT(fits, 0u);
  for (const std::vector<std::size_t>& pieces : {std::vector<std::size_t>{}, {1}, {3, 7}}) {
    Outcome o = parse_with(kSimple, pieces, limits, false, false, true, fits);
    EXPECT_EQ(o.error, Errc::ok);
    EXPECT_EQ(o.body, "{\"ok\": true}\n");
    EXPECT_EQ(parse_with(kSimple, pieces, limits, false, false, true, fits - 1).error,
              Errc::too_large);
  }
  // Smaller still, the head itself does not fit: too_large before any body.
  Outcome o = parse_with(kSimple, {1}, limits, false, false, true, 10);
  EXPECT_EQ(o.error, Errc::too_large);
  EXPECT_FALSE(o.headers_complete);
}

TEST(HttpResponseParser, LentHeadIsPackedIntoLessThanTheRawHead) {
  HttpResponseParser p(HttpLimits{}, tern::HeadStorage::lent);
  char storage[256];
  p.reset(false, storage, sizeof storage);
  tern::BodySink none;
  auto used = p.feed(kChunked.data(), kChunked.size(), none);
  ASSERT_TRUE(used.ok());
  ASSERT_TRUE(p.complete());
  // Reason "OK" + "Transfer-Encoding" + "chunked": what header() views point into.
  EXPECT_EQ(p.head_bytes(), 2u + 17u + 7u);
  EXPECT_EQ(p.reason().data(), storage);
  EXPECT_EQ(p.header("transfer-encoding"), "chunked");
  p.reset(false);
  EXPECT_EQ(p.head_bytes(), 0u);
}

TEST(HttpResponseParser, LentParserAllocatesOnlyItsFieldIndex) {
  std::size_t before = tern_test::allocations();
  // A buffer of max_header_bytes would be a gigabyte.
  HttpResponseParser p(HttpLimits{std::size_t{1} << 30, 8, 0}, tern::HeadStorage::lent);
  EXPECT_EQ(tern_test::allocations() - before, 1u);
  char storage[128];
  p.reset(false, storage, sizeof storage);
  tern::BodySink none;
  std::string_view in = "HTTP/1.1 204 No Content\r\n\r\n";
  auto used = p.feed(in.data(), in.size(), none);
  ASSERT_TRUE(used.ok());
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(p.reason(), "No Content");
}

TEST(HttpResponseParser, FeedingALentParserWithoutStoragePanics) {
  HttpResponseParser p(HttpLimits{}, tern::HeadStorage::lent);
  tern::BodySink none;
  EXPECT_DEATH(
      {
        auto r = p.feed(kSimple.data(), kSimple.size(), none);
        (void)r;
      },
      "no head storage");
  char storage[64];
  p.reset(false, storage, sizeof storage);
  p.reset(false);  // withdraws it
  EXPECT_DEATH(
      {
        auto r = p.feed(kSimple.data(), kSimple.size(), none);
        (void)r;
      },
      "no head storage");
  HttpResponseParser owned;
  EXPECT_DEATH(owned.reset(false, storage, sizeof storage), "owns");
}

}  // namespace
