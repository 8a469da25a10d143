// HttpResponseParser: an incremental HTTP/1.x response parser for the client side of a
// connection. Feed it bytes as they arrive, in pieces of any size; it hands the decoded body
// (chunked framing removed) to a sink, tells where the response ended so that the rest of
// the bytes belong to the next response, and says whether the connection may be reused.
// Everything it keeps lives in buffers sized once from HttpLimits at construction; anything
// malformed is Errc::protocol and anything over a limit is Errc::too_large, never UB.
//
//   tern::HttpResponseParser parser(tern::HttpLimits{});      // allocates here, only here
//   parser.reset(/*head_request=*/false);                       // before each response
//   tern::BodySink sink = [&](const char* p, std::size_t n) { return out.write(p, n); };
//   auto used = parser.feed(buf, n, sink);                      // from the read callback
//   if (!used) return fail(used.error());                       // protocol, too_large, ...
//   if (parser.complete()) { deliver(parser.status()); keep = parser.keep_alive(); }
//   ...
//   if (eof) { tern::Errc e = parser.on_eof(); }  // ok: a close-delimited body ended
//
// (out.write returns an Errc; anything but ok aborts the parse.)
//
// The head can also live in memory the caller lends for each response instead of a
// buffer of the parser's own (HeadStorage::lent): HttpClient drives one such parser per
// pooled connection and lends it the request slot's response buffer, so the head and the
// body share it (the body goes after head_bytes()). examples/embed_client shows it at
// work.
//
// What is accepted, following RFC 9112 and RFC 9110:
// - Status line `HTTP/1.<digit> <3 digits> <reason>`; the reason may be empty and its
//   leading space may then be missing. HTTP/1.x with x > 1 is treated as HTTP/1.1.
// - Lines of the head and of the trailer section end with CRLF or a bare LF (RFC 9112
//   §2.2 lets a recipient accept a bare LF there). A bare CR anywhere is rejected. The
//   chunked framing itself (chunk-size lines, the CRLF after chunk data) must use CRLF: no
//   leniency where it could desynchronise the framing. Nothing may precede the status line
//   (no skipped empty lines).
// - Field names are tokens with no whitespace before the colon; values are trimmed of
//   spaces and tabs and may hold any visible ASCII, obs-text (0x80-0xFF), SP and HTAB;
//   NUL, CR, LF, other controls and DEL are rejected.
// - obs-fold (a line starting with SP or HTAB continues the previous field) is accepted and
//   replaced with one SP, as RFC 9112 §5.2 requires of a user agent. A folded line before
//   the first field is rejected.
// - Content-Length: 1*DIGIT, or a list of identical values ("42, 42", or repeated fields);
//   differing values, non-digits, empty values or values over 2^64-1 are protocol errors.
// - Transfer-Encoding: exactly one "chunked" (any case; empty list elements ignored) is the
//   only coding accepted, since nothing else can be decoded here; anything else is a
//   protocol error, even on a response without a body (every final response's framing
//   headers are checked the same way). With both Transfer-Encoding and Content-Length,
//   chunked wins and the connection is not reused (RFC 9112 §6.3); likewise for HTTP/1.0
//   with Transfer-Encoding (§6.1).
// - Chunk sizes are 1 to 16 hex digits; chunk extensions are checked for control bytes and
//   ignored; trailer fields are checked like header fields and discarded.
// - 1xx responses other than 101 are skipped: the parser goes on to the final response
//   (100 Continue, 103 Early Hints); more than HttpResponseParser::kMaxInterimHeads of
//   them before the final response is too_large. 101 ends the response at its head (no body, not
//   keep-alive: the connection now speaks another protocol; the rest is left unconsumed).
// - No body for HEAD requests, 204 and 304, whatever the headers say. A final response with
//   neither Content-Length nor Transfer-Encoding is delimited by the connection closing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"

namespace tern {

struct HttpLimits {
  // Bytes of one response's metadata: status line and header lines (line endings
  // included), plus its trailer lines and chunk extensions. 1xx heads count separately.
  std::size_t max_header_bytes = 8192;
  std::size_t max_headers = 32;    // header fields; trailer fields count separately
  std::size_t max_body = 1 << 20;  // decoded body bytes, whatever the framing
};

struct HttpHeader {
  std::string_view name, value;
};

// Where a parser keeps the head of the response it reads (status reason and header
// fields). owned: a buffer of limits.max_header_bytes allocated at construction. lent:
// storage the caller passes to each reset(head_request, storage, size).
enum class HeadStorage : std::uint8_t { owned, lent };

// Receives decoded body bytes (never an empty piece). Returning anything but Errc::ok stops
// the parser, which returns that Errc from feed(). The sink must not call the parser's
// feed(), reset() or on_eof() (a contract violation: panic); accessors are fine.
using BodySink = InplaceFunction<Errc(const char* data, std::size_t n), 4 * sizeof(void*)>;

class HttpResponseParser {
 public:
  // 1xx responses accepted before the final one (real servers send one or two).
  static constexpr std::size_t kMaxInterimHeads = 8;
  // Allocates the field index (limits.max_headers entries) and, with HeadStorage::owned,
  // the header buffer (limits.max_header_bytes) once; the parser never allocates
  // afterwards. Running out of memory here, or max_header_bytes over 4 GiB, is a panic.
  // Owned: ready for a response, as if after reset(false). Lent: needs a
  // reset(head_request, storage, size) before the first feed(). Movable (a moved-from
  // parser may only be destroyed or assigned to), not copyable.
  explicit HttpResponseParser(const HttpLimits& limits = {}, HeadStorage storage = HeadStorage::owned);
  HttpResponseParser(HttpResponseParser&&) noexcept = default;
  HttpResponseParser& operator=(HttpResponseParser&&) noexcept = default;
  HttpResponseParser(const HttpResponseParser&) = delete;
  HttpResponseParser& operator=(const HttpResponseParser&) = delete;

  // Forgets everything about the previous response (views from header(), header_at() and
  // reason() die here) and expects a new one. `head_request`: the request was HEAD, so the
  // response has no body whatever its headers say.
  // With HeadStorage::lent this also withdraws the storage: feed() before the next
  // reset(head_request, storage, size) is a contract violation (panic).
  void reset(bool head_request = false);

  // HeadStorage::lent only (else a panic): as reset(head_request), and the head of this
  // response goes into storage[0, size), which must stay valid and untouched by the caller
  // up to head_bytes() until the next reset. The head must then fit both
  // limits.max_header_bytes (raw bytes received) and `size` (the reason phrase and the
  // fields packed without separators, plus the line being assembled): over either is
  // Errc::too_large. Once headers_complete() the parser writes nothing more into the
  // storage until the next reset (trailer fields are checked as they stream past, never
  // stored), so the caller may keep the body in storage[head_bytes(), size).
  void reset(bool head_request, char* storage, std::size_t size);

  // Bytes at the start of the head storage holding the final response's head (its reason
  // phrase and packed fields); 0 before headers_complete().
  std::size_t head_bytes() const { return headers_complete_ ? stored_ : 0; }

  // Feeds the next `n` bytes from the connection (`data` may be null only when n == 0).
  // Calls `on_body` with each piece of decoded body; an empty sink discards the body.
  // Returns how many bytes belong to this response: all n, unless the response completed
  // inside this piece, when the rest belong to the next response on the connection. Once
  // complete(), feed() consumes nothing (returns 0) until reset().
  // Errors: protocol (malformed input), too_large (over a limit in HttpLimits), or the
  // Errc that on_body returned. After an error the parser stays failed: feed() and
  // on_eof() return the same Errc until reset().
  Result<std::size_t> feed(const char* data, std::size_t n, BodySink& on_body);

  // The peer closed the connection (read returned 0). Returns:
  // ok when that completes the response (a close-delimited body; complete() becomes true)
  //    or it was already complete;
  // closed when not one byte of this response had arrived (for example a keep-alive
  //    connection the server closed while idle: safe to retry an idempotent request);
  // protocol when the response was cut short (in the head, before Content-Length bytes,
  //    inside chunked framing or trailers);
  // the earlier Errc if the parser had already failed.
  Errc on_eof();

  // The final (non-1xx) response's head has been parsed: status and headers are readable.
  bool headers_complete() const { return headers_complete_; }
  // The whole response has been parsed (implies headers_complete()).
  bool complete() const { return state_ == State::kComplete; }
  // ok, or the Errc that stopped the parser.
  Errc error() const { return error_; }

  // The final response's status code (101 or 200-999), or 0 before headers_complete().
  int status() const { return headers_complete_ ? status_ : 0; }
  // 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x); meaningful once headers_complete().
  int version_minor() const { return version_minor_; }
  // The reason phrase, possibly empty; valid until reset().
  std::string_view reason() const;
  // Whether the connection may carry another response after this one: HTTP/1.1 unless
  // "Connection: close"; HTTP/1.0 only with "Connection: keep-alive"; never when the body
  // is delimited by close, when Transfer-Encoding came with Content-Length or with
  // HTTP/1.0, after a 101, or after any error. Meaningful once headers_complete(); reuse
  // the connection only once complete().
  bool keep_alive() const { return keep_alive_ && state_ != State::kError; }

  // The value of the first field named `name` (ASCII case-insensitive), or nullopt. Views
  // into the parser's buffer, valid until reset(); obs-folds are already replaced by SP.
  std::optional<std::string_view> header(std::string_view name) const;
  std::size_t header_count() const { return headers_complete_ ? field_count_ : 0; }
  // Field i in arrival order; i >= header_count() is a contract violation (panic).
  HttpHeader header_at(std::size_t i) const;

  // The Content-Length value, unless absent or overridden by Transfer-Encoding. For HEAD,
  // 204 and 304 it is what the server advertised, not a body that follows.
  std::optional<std::uint64_t> content_length() const;
  // The body uses the chunked transfer coding.
  bool chunked() const { return chunked_; }
  // Decoded body bytes handed to on_body so far.
  std::uint64_t body_bytes() const { return body_bytes_; }

 private:
  enum class State : std::uint8_t {
    kStatusLine,
    kHeaderLine,
    kBodyLength,  // Content-Length bytes remain
    kBodyClose,   // until EOF
    kChunkSize,   // hex digits
    kChunkLine,   // after the digits: BWS, extensions, up to CR
    kChunkSizeLf,
    kChunkData,
    kChunkDataCr,
    kChunkDataLf,
    kTrailerLine,  // streamed through step_trailer_byte, not assembled
    kComplete,
    kError,
  };
  struct Field {  // offsets into buf_
    std::uint32_t name_off, name_len, value_off, value_len;
  };
  // Where step_trailer_byte is in the current trailer line.
  enum class TrailerPhase : std::uint8_t { kLineStart, kName, kValue, kFold };

  void begin_head();
  Errc fail(Errc e);
  Errc step_line(const char* data, std::size_t n, std::size_t& i);
  Errc end_of_line();
  Errc status_line(char* line, std::size_t len);
  Errc field_line(char* line, std::size_t len);
  Errc end_of_head();
  Errc step_chunk_byte(char c);
  Errc step_trailer_byte(char c);
  void trailer_content(unsigned char c);
  Errc deliver(const char* data, std::size_t n, BodySink& on_body);

  HttpLimits limits_;
  std::unique_ptr<char[]> owned_buf_;  // limits_.max_header_bytes, HeadStorage::owned only
  std::unique_ptr<Field[]> fields_;    // limits_.max_headers
  char* buf_ = nullptr;                // the head storage: owned_buf_ or lent
  std::size_t buf_size_ = 0;
  HeadStorage storage_ = HeadStorage::owned;
  TrailerPhase trailer_phase_ = TrailerPhase::kLineStart;
  bool trailer_cr_ = false;   // the trailer line's last byte was a CR
  bool trailer_bad_ = false;  // the trailer line is malformed (reported at its LF)
  State state_ = State::kStatusLine;
  Errc error_ = Errc::ok;
  bool head_request_ = false;
  bool headers_complete_ = false;
  bool keep_alive_ = false;
  bool chunked_ = false;
  bool has_content_length_ = false;
  bool received_any_ = false;  // a byte arrived since reset(): EOF is protocol, not closed
  bool in_feed_ = false;       // re-entry guard while on_body runs
  bool in_chunk_ext_ = false;
  int status_ = 0;
  int version_minor_ = 0;
  std::size_t reason_len_ = 0;  // the reason phrase is stored at buf_[0]
  std::size_t field_count_ = 0;
  std::size_t trailer_count_ = 0;
  std::size_t stored_ = 0;      // buf_ bytes holding the reason and fields
  std::size_t line_len_ = 0;    // bytes of the line being assembled at buf_[stored_]
  std::size_t meta_bytes_ = 0;  // against max_header_bytes
  std::size_t interim_heads_ = 0;  // 1xx heads before this response's final one
  std::size_t chunk_digits_ = 0;
  std::uint64_t content_length_ = 0;
  std::uint64_t remaining_ = 0;  // of the Content-Length body or of the current chunk
  std::uint64_t body_bytes_ = 0;
};

}  // namespace tern
