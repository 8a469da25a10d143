// The head's lines are assembled in buf_ and parsed when their LF arrives; each parsed
// field is then packed to the front of buf_ (name then value, no separators), so the
// packed fields plus the line being assembled never exceed the raw bytes received, which
// max_header_bytes bounds (and, for lent storage, its size too). Trailer lines are
// checked a byte at a time as they pass and never stored, so once the head is complete
// buf_ is not written again and a caller that lent it may keep the body after the head.
// Body bytes are handed to the sink straight from the caller's buffer.
//
// Byte-at-a-time feeding must give the same outcome as one feed: every check happens at a
// position in the byte stream, never at a piece boundary. Where a fast path takes a run of
// bytes at once, it applies the limit first to the bytes under the limit, then to the rest.
#include "tern/net/http_parser.hpp"

#include <cstring>
#include <limits>
#include <new>

namespace tern {

namespace {

constexpr std::string_view kVersionPrefix = "HTTP/1.";

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 9110 §5.6.2 tchar.
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return kSymbols.find(static_cast<char>(c)) != std::string_view::npos;
}

// field-vchar, SP and HTAB (RFC 9110 §5.5); the reason phrase allows the same set.
bool is_field_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

bool is_ows(char c) { return c == ' ' || c == '\t'; }

bool all_field_chars(const char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!is_field_char(static_cast<unsigned char>(p[i]))) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x | 0x20);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y | 0x20);
    if (x != y) return false;
  }
  return true;
}

// Calls f(element) for each OWS-trimmed element of a comma-separated list, empty ones
// included; stops at the first non-ok Errc and returns it.
template <typename F>
Errc for_each_element(std::string_view list, F&& f) {
  for (;;) {
    std::size_t comma = list.find(',');
    Errc e = f(trim_ows(list.substr(0, comma)));
    if (e != Errc::ok) return e;
    if (comma == std::string_view::npos) return Errc::ok;
    list.remove_prefix(comma + 1);
  }
}

// 1*DIGIT into a uint64. Errors: protocol (empty, non-digit, over 2^64-1).
Errc parse_decimal(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return Errc::protocol;
  std::uint64_t v = 0;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (!is_digit(c)) return Errc::protocol;
    unsigned d = c - '0';
    if (v > (kMax - d) / 10) return Errc::protocol;
    v = v * 10 + d;
  }
  out = v;
  return Errc::ok;
}

template <typename T>
std::unique_ptr<T[]> allocate_array(std::size_t n) {
  T* p = new (std::nothrow) T[n ? n : 1];
  if (!p) panic("HttpResponseParser: out of memory at construction (reduce HttpLimits)");
  return std::unique_ptr<T[]>(p);
}

}  // namespace

HttpResponseParser::HttpResponseParser(const HttpLimits& limits, HeadStorage storage)
    : limits_(limits), storage_(storage) {
  // Field offsets are 32-bit.
  if (limits_.max_header_bytes > std::numeric_limits<std::uint32_t>::max()) {
    panic("HttpLimits::max_header_bytes over 4 GiB");
  }
  if (storage_ == HeadStorage::owned) {
    owned_buf_ = allocate_array<char>(limits_.max_header_bytes);
    buf_ = owned_buf_.get();
    buf_size_ = limits_.max_header_bytes;
  }
  fields_ = allocate_array<Field>(limits_.max_headers);
  reset(false);
}

void HttpResponseParser::begin_head() {
  state_ = State::kStatusLine;
  headers_complete_ = false;
  keep_alive_ = false;
  chunked_ = false;
  has_content_length_ = false;
  status_ = 0;
  version_minor_ = 0;
  reason_len_ = 0;
  field_count_ = 0;
  trailer_count_ = 0;
  stored_ = 0;
  line_len_ = 0;
  meta_bytes_ = 0;
  chunk_digits_ = 0;
  in_chunk_ext_ = false;
  trailer_phase_ = TrailerPhase::kLineStart;
  trailer_cr_ = false;
  trailer_bad_ = false;
  content_length_ = 0;
  remaining_ = 0;
}

void HttpResponseParser::reset(bool head_request) {
  if (in_feed_) panic("HttpResponseParser::reset called from its own body sink");
  begin_head();
  interim_heads_ = 0;
  error_ = Errc::ok;
  head_request_ = head_request;
  received_any_ = false;
  body_bytes_ = 0;
  if (storage_ == HeadStorage::lent) {
    buf_ = nullptr;
    buf_size_ = 0;
  }
}

void HttpResponseParser::reset(bool head_request, char* storage, std::size_t size) {
  if (storage_ != HeadStorage::lent) panic("HttpResponseParser: storage lent to a parser that owns its own");
  if (!storage) panic("HttpResponseParser: null storage lent");
  reset(head_request);
  buf_ = storage;
  buf_size_ = size;
}

Errc HttpResponseParser::fail(Errc e) {
  state_ = State::kError;
  error_ = e;
  return e;
}

std::string_view HttpResponseParser::reason() const {
  return std::string_view(buf_, reason_len_);
}

std::optional<std::string_view> HttpResponseParser::header(std::string_view name) const {
  for (std::size_t i = 0; i < header_count(); ++i) {
    HttpHeader h = header_at(i);
    if (iequals(h.name, name)) return h.value;
  }
  return std::nullopt;
}

HttpHeader HttpResponseParser::header_at(std::size_t i) const {
  if (i >= header_count()) panic("HttpResponseParser::header_at: index out of range");
  const Field& f = fields_[i];
  return HttpHeader{std::string_view(buf_ + f.name_off, f.name_len),
                    std::string_view(buf_ + f.value_off, f.value_len)};
}

std::optional<std::uint64_t> HttpResponseParser::content_length() const {
  if (!headers_complete_ || !has_content_length_) return std::nullopt;
  return content_length_;
}

Result<std::size_t> HttpResponseParser::feed(const char* data, std::size_t n, BodySink& on_body) {
  if (in_feed_) panic("HttpResponseParser::feed called from its own body sink");
  if (state_ == State::kError) return error_;
  if (state_ == State::kComplete || n == 0) return std::size_t{0};
  if (data == nullptr) panic("HttpResponseParser::feed: null data");
  if (!buf_) panic("HttpResponseParser::feed: no head storage lent since the last reset");
  in_feed_ = true;
  received_any_ = true;
  std::size_t i = 0;
  Errc e = Errc::ok;
  while (i < n && e == Errc::ok && state_ != State::kComplete) {
    switch (state_) {
      case State::kStatusLine:
      case State::kHeaderLine:
        e = step_line(data, n, i);
        break;
      case State::kTrailerLine:
        e = step_trailer_byte(data[i]);
        ++i;
        break;
      case State::kBodyLength: {
        std::size_t take = n - i;
        if (take > remaining_) take = static_cast<std::size_t>(remaining_);
        e = deliver(data + i, take, on_body);
        i += take;
        remaining_ -= take;
        if (e == Errc::ok && remaining_ == 0) state_ = State::kComplete;
        break;
      }
      case State::kBodyClose: {
        std::size_t avail = n - i;
        std::uint64_t room = limits_.max_body - body_bytes_;
        std::size_t take = avail < room ? avail : static_cast<std::size_t>(room);
        e = deliver(data + i, take, on_body);
        i += take;
        if (e == Errc::ok && take < avail) e = Errc::too_large;
        break;
      }
      case State::kChunkData: {
        std::size_t take = n - i;
        if (take > remaining_) take = static_cast<std::size_t>(remaining_);
        e = deliver(data + i, take, on_body);
        i += take;
        remaining_ -= take;
        if (e == Errc::ok && remaining_ == 0) state_ = State::kChunkDataCr;
        break;
      }
      case State::kChunkSize:
      case State::kChunkLine:
      case State::kChunkSizeLf:
      case State::kChunkDataCr:
      case State::kChunkDataLf:
        e = step_chunk_byte(data[i]);
        ++i;
        break;
      case State::kComplete:
      case State::kError:
        break;
    }
  }
  in_feed_ = false;
  if (e != Errc::ok) return fail(e);
  return i;
}

Errc HttpResponseParser::on_eof() {
  if (in_feed_) panic("HttpResponseParser::on_eof called from its own body sink");
  switch (state_) {
    case State::kError:
      return error_;
    case State::kComplete:
      return Errc::ok;
    case State::kBodyClose:
      state_ = State::kComplete;
      return Errc::ok;
    default:
      return fail(received_any_ ? Errc::protocol : Errc::closed);
  }
}

Errc HttpResponseParser::deliver(const char* data, std::size_t n, BodySink& on_body) {
  if (n == 0) return Errc::ok;
  body_bytes_ += n;
  if (!on_body) return Errc::ok;
  return on_body(data, n);
}

Errc HttpResponseParser::step_line(const char* data, std::size_t n, std::size_t& i) {
  const char* start = data + i;
  std::size_t avail = n - i;
  const void* lf = std::memchr(start, '\n', avail);
  std::size_t seg = lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - start) + 1 : avail;
  std::size_t room = limits_.max_header_bytes - meta_bytes_;
  // Lent storage may be smaller than the limit (owned storage never is: what it holds
  // never exceeds the bytes received).
  std::size_t space = buf_size_ - stored_ - line_len_;
  if (space < room) room = space;
  std::size_t take = seg < room ? seg : room;
  char* line = buf_ + stored_;
  std::memcpy(line + line_len_, start, take);
  bool bad_prefix = false;
  if (state_ == State::kStatusLine) {
    // Fail fast on something that is not HTTP/1.x at all, without waiting for a line end.
    for (std::size_t k = line_len_; k < line_len_ + take && k < kVersionPrefix.size(); ++k) {
      if (line[k] != kVersionPrefix[k]) bad_prefix = true;
    }
  }
  line_len_ += take;
  meta_bytes_ += take;
  i += take;
  if (bad_prefix) return Errc::protocol;
  if (take < seg) return Errc::too_large;
  if (!lf) return Errc::ok;
  return end_of_line();
}

Errc HttpResponseParser::end_of_line() {
  char* line = buf_ + stored_;
  std::size_t len = line_len_ - 1;  // without the LF
  line_len_ = 0;
  if (len > 0 && line[len - 1] == '\r') --len;
  switch (state_) {
    case State::kStatusLine:
      return status_line(line, len);
    case State::kHeaderLine:
      if (len == 0) return end_of_head();
      return field_line(line, len);
    default:
      return Errc::protocol;  // unreachable: only line states assemble lines
  }
}

// HTTP/1.<d> SP 3DIGIT [ SP reason ]
Errc HttpResponseParser::status_line(char* line, std::size_t len) {
  if (len < 12) return Errc::protocol;
  if (std::string_view(line, kVersionPrefix.size()) != kVersionPrefix) return Errc::protocol;
  unsigned char minor = static_cast<unsigned char>(line[7]);
  if (!is_digit(minor) || line[8] != ' ') return Errc::protocol;
  int status = 0;
  for (std::size_t k = 9; k < 12; ++k) {
    unsigned char c = static_cast<unsigned char>(line[k]);
    if (!is_digit(c)) return Errc::protocol;
    status = status * 10 + (c - '0');
  }
  if (status < 100) return Errc::protocol;
  std::size_t reason_off = 12;
  if (len > 12) {
    if (line[12] != ' ') return Errc::protocol;
    reason_off = 13;
  }
  if (!all_field_chars(line + reason_off, len - reason_off)) return Errc::protocol;
  version_minor_ = minor - '0' >= 1 ? 1 : 0;
  status_ = status;
  reason_len_ = len - reason_off;
  std::memmove(buf_, line + reason_off, reason_len_);
  stored_ = reason_len_;
  state_ = State::kHeaderLine;
  return Errc::ok;
}

Errc HttpResponseParser::field_line(char* line, std::size_t len) {
  char* buf = buf_;
  if (is_ows(line[0])) {
    // obs-fold: the previous field's value goes on after one SP.
    std::string_view more = trim_ows(std::string_view(line, len));
    if (!all_field_chars(more.data(), more.size())) return Errc::protocol;
    if (field_count_ == 0) return Errc::protocol;
    if (more.empty()) return Errc::ok;
    // The previous value ends at stored_ == line; `more` starts past line[0] (OWS), so
    // writing the SP over line[0] and moving `more` down never overlaps wrongly.
    Field& prev = fields_[field_count_ - 1];
    std::size_t dst = stored_;
    if (prev.value_len > 0) buf[dst++] = ' ';
    std::memmove(buf + dst, more.data(), more.size());
    dst += more.size();
    prev.value_len = static_cast<std::uint32_t>(dst - prev.value_off);
    stored_ = dst;
    return Errc::ok;
  }
  const void* colon = std::memchr(line, ':', len);
  if (!colon) return Errc::protocol;
  std::size_t name_len = static_cast<std::size_t>(static_cast<const char*>(colon) - line);
  if (name_len == 0) return Errc::protocol;
  for (std::size_t k = 0; k < name_len; ++k) {
    if (!is_tchar(static_cast<unsigned char>(line[k]))) return Errc::protocol;
  }
  std::string_view value = trim_ows(std::string_view(line + name_len + 1, len - name_len - 1));
  if (!all_field_chars(value.data(), value.size())) return Errc::protocol;
  if (field_count_ == limits_.max_headers) return Errc::too_large;
  // Pack: the name stays where it is (line == buf + stored_), the value moves down.
  Field& f = fields_[field_count_++];
  f.name_off = static_cast<std::uint32_t>(stored_);
  f.name_len = static_cast<std::uint32_t>(name_len);
  f.value_off = static_cast<std::uint32_t>(stored_ + name_len);
  f.value_len = static_cast<std::uint32_t>(value.size());
  std::memmove(buf + f.value_off, value.data(), value.size());
  stored_ += name_len + value.size();
  return Errc::ok;
}

Errc HttpResponseParser::end_of_head() {
  if (status_ < 200 && status_ != 101) {
    // An interim response: the final one follows. Counted, or a peer could send
    // 100 Continue forever and keep the reader busy without a byte of response.
    if (++interim_heads_ > kMaxInterimHeads) return Errc::too_large;
    begin_head();
    return Errc::ok;
  }
  headers_complete_ = true;

  bool te_seen = false, close_token = false, keep_alive_token = false;
  int chunked_count = 0;
  for (std::size_t i = 0; i < field_count_; ++i) {
    HttpHeader h = header_at(i);
    Errc e = Errc::ok;
    if (iequals(h.name, "content-length")) {
      e = for_each_element(h.value, [&](std::string_view v) {
        std::uint64_t n = 0;
        Errc pe = parse_decimal(v, n);
        if (pe != Errc::ok) return pe;
        if (has_content_length_ && n != content_length_) return Errc::protocol;
        has_content_length_ = true;
        content_length_ = n;
        return Errc::ok;
      });
    } else if (iequals(h.name, "transfer-encoding")) {
      te_seen = true;
      e = for_each_element(h.value, [&](std::string_view coding) {
        if (coding.empty()) return Errc::ok;
        if (!iequals(coding, "chunked")) return Errc::protocol;  // cannot decode it
        ++chunked_count;
        return Errc::ok;
      });
    } else if (iequals(h.name, "connection")) {
      e = for_each_element(h.value, [&](std::string_view option) {
        if (iequals(option, "close")) close_token = true;
        if (iequals(option, "keep-alive")) keep_alive_token = true;
        return Errc::ok;
      });
    }
    if (e != Errc::ok) return e;
  }
  if (te_seen && chunked_count != 1) return Errc::protocol;

  keep_alive_ = !close_token && (version_minor_ >= 1 || keep_alive_token);
  if (te_seen) {
    chunked_ = true;
    // Both framings, or chunked on HTTP/1.0: a sign of smuggling; never reuse.
    if (has_content_length_ || version_minor_ == 0) keep_alive_ = false;
    has_content_length_ = false;
  }

  if (status_ == 101) keep_alive_ = false;
  if (head_request_ || status_ == 204 || status_ == 304 || status_ == 101) {
    state_ = State::kComplete;
    return Errc::ok;
  }
  if (chunked_) {
    state_ = State::kChunkSize;
    return Errc::ok;
  }
  if (has_content_length_) {
    if (content_length_ > limits_.max_body) return Errc::too_large;
    remaining_ = content_length_;
    state_ = content_length_ == 0 ? State::kComplete : State::kBodyLength;
    return Errc::ok;
  }
  keep_alive_ = false;
  state_ = State::kBodyClose;
  return Errc::ok;
}

Errc HttpResponseParser::step_chunk_byte(char ch) {
  unsigned char c = static_cast<unsigned char>(ch);
  switch (state_) {
    case State::kChunkSize: {
      int v = hex_value(c);
      if (v >= 0) {
        if (chunk_digits_ == 16) return Errc::protocol;  // would overflow 64 bits
        remaining_ = remaining_ << 4 | static_cast<unsigned>(v);
        ++chunk_digits_;
        return Errc::ok;
      }
      if (chunk_digits_ == 0) return Errc::protocol;  // no size ("-1", ";x", "\r\n")
      if (remaining_ > limits_.max_body - body_bytes_) return Errc::too_large;
      state_ = State::kChunkLine;
      in_chunk_ext_ = false;
      return step_chunk_byte(ch);  // the byte after the digits belongs to the line
    }
    case State::kChunkLine:
      if (c == '\r') {
        state_ = State::kChunkSizeLf;
        return Errc::ok;
      }
      if (meta_bytes_ == limits_.max_header_bytes) return Errc::too_large;
      ++meta_bytes_;
      if (in_chunk_ext_) {
        // Ignored, but a control byte (a bare LF above all) is never part of one.
        return is_field_char(c) ? Errc::ok : Errc::protocol;
      }
      if (c == ';') {
        in_chunk_ext_ = true;
        return Errc::ok;
      }
      return is_ows(static_cast<char>(c)) ? Errc::ok : Errc::protocol;
    case State::kChunkSizeLf:
      if (c != '\n') return Errc::protocol;
      if (remaining_ == 0) {
        state_ = State::kTrailerLine;
      } else {
        state_ = State::kChunkData;
      }
      return Errc::ok;
    case State::kChunkDataCr:
      if (c != '\r') return Errc::protocol;
      state_ = State::kChunkDataLf;
      return Errc::ok;
    case State::kChunkDataLf:
      if (c != '\n') return Errc::protocol;
      state_ = State::kChunkSize;
      chunk_digits_ = 0;
      remaining_ = 0;
      return Errc::ok;
    default:
      return Errc::protocol;  // unreachable
  }
}


// One byte of the trailer section. The checks are field_line's, made as the bytes pass
// (a line ending is CRLF or a bare LF; a CR anywhere else is malformed), and, as for the
// head, a malformed line is reported at its LF unless the byte budget runs out first.
Errc HttpResponseParser::step_trailer_byte(char ch) {
  unsigned char c = static_cast<unsigned char>(ch);
  if (meta_bytes_ == limits_.max_header_bytes) return Errc::too_large;
  ++meta_bytes_;
  if (c != '\n') {
    if (trailer_cr_) trailer_content('\r');  // that CR did not end the line
    trailer_cr_ = c == '\r';
    if (!trailer_cr_) trailer_content(c);
    return Errc::ok;
  }
  TrailerPhase phase = trailer_phase_;
  bool bad = trailer_bad_;
  trailer_phase_ = TrailerPhase::kLineStart;
  trailer_cr_ = false;
  trailer_bad_ = false;
  switch (phase) {
    case TrailerPhase::kLineStart:  // an empty line ends the trailer section
      state_ = State::kComplete;
      return Errc::ok;
    case TrailerPhase::kName:  // no colon
      return Errc::protocol;
    case TrailerPhase::kFold:  // obs-fold: continues the previous trailer field
      return bad || trailer_count_ == 0 ? Errc::protocol : Errc::ok;
    case TrailerPhase::kValue:
      if (bad) return Errc::protocol;
      if (trailer_count_ == limits_.max_headers) return Errc::too_large;
      ++trailer_count_;
      return Errc::ok;
  }
  return Errc::protocol;  // unreachable
}

void HttpResponseParser::trailer_content(unsigned char c) {
  switch (trailer_phase_) {
    case TrailerPhase::kLineStart:
      if (is_ows(static_cast<char>(c))) {
        trailer_phase_ = TrailerPhase::kFold;
      } else {
        trailer_phase_ = TrailerPhase::kName;
        if (!is_tchar(c)) trailer_bad_ = true;  // a ':' here: an empty name
      }
      break;
    case TrailerPhase::kName:
      if (c == ':') {
        trailer_phase_ = TrailerPhase::kValue;
      } else if (!is_tchar(c)) {
        trailer_bad_ = true;
      }
      break;
    case TrailerPhase::kValue:
    case TrailerPhase::kFold:
      if (!is_field_char(c)) trailer_bad_ = true;
      break;
  }
}

}  // namespace tern
