// libFuzzer target for the JSON layer: JsonPool, json_parse, json_print (built and run by
// scripts/fuzz).
//
// Input layout: byte 0 picks the pool: the block counts are the default JsonPoolConfig's
// (bit 7 set) or six 4-bit counts from bytes 1-3 (so a parse can run out of blocks at any
// allocation), times 1, 2, 4 or 8 from bits 0-1. Byte 4 picks the print buffer (bit 7:
// 0-127 bytes; otherwise the printed length + 1, give or take -8..+7). The rest is the
// document.
//
// For every input (a violation aborts, which libFuzzer reports as a crash):
// - json_parse fails only with protocol or full, and with full exactly when the pool
//   refused a block. Text that is plain JSON within cJSON's limits (PlainJson) is never
//   protocol.
// - After a failed parse, and after a document is destroyed, the pool's in_use is what it
//   was before; a parsed document holds exactly one block per node, key and string.
// - Nothing reaches the heap while parsing, printing or deleting (ASan's malloc hook).
// - json_print into a generous buffer succeeds, NUL-terminated at the returned length, and
//   prints plain JSON. Into the chosen buffer it prints the same bytes, or fails with
//   too_large, and only when the buffer is within cJSON's 5 spare bytes of the length.
// - The printed text parses again (in a fresh pool) and prints identically; a JsonDoc
//   moved over another gives the other's blocks back.
//
// Documents and print buffers end where an inaccessible page begins. libcjson comes from
// the distribution without ASan, so its stores past the end of an exact-size heap buffer
// would go unreported; the page makes any access past the end fault.
#include <cjson/cJSON.h>
#include <sanitizer/allocator_interface.h>
#include <sanitizer/asan_interface.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

#include "tern/net/json.hpp"

#define TERN_FUZZ_TARGET "json_fuzz"
#include "fuzz_check.hpp"

namespace {

using tern::Errc;

// cJSON_PrintPreallocated's own advice: "allocate 5 bytes more than you actually need".
constexpr std::size_t kCjsonSpare = 5;
constexpr std::size_t kHeaderBytes = 5;

// Heap allocations made by this thread while a HeapWatch is alive. libFuzzer's own threads
// allocate now and then; they are not counted.
thread_local bool t_watching = false;
thread_local std::size_t t_heap_allocations = 0;

void on_malloc(const volatile void*, std::size_t) {
  if (t_watching) ++t_heap_allocations;
}
void on_free(const volatile void*) {}
const int g_hooks_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);

class HeapWatch {
 public:
  HeapWatch() {
    t_heap_allocations = 0;
    t_watching = true;
  }
  ~HeapWatch() {
    t_watching = false;
    if (t_heap_allocations != 0) violated("cJSON reached the heap instead of the pool");
  }
  HeapWatch(const HeapWatch&) = delete;
  HeapWatch& operator=(const HeapWatch&) = delete;
};

// Extra coverage for libFuzzer: libcjson itself is not instrumented, so without these the
// fuzzer could not tell a parse that ran out at the 3rd block from one that ran out at the
// 30th, or a print that failed by one byte from one that fitted.
constexpr std::size_t kParseFeatures = 3 * 64;
__attribute__((used, section("__libfuzzer_extra_counters")))
std::uint8_t g_features[kParseFeatures + 2 * 32];

void parse_feature(Errc outcome, std::uint64_t allocations) {
  std::size_t kind = outcome == Errc::ok ? 0 : outcome == Errc::protocol ? 1 : 2;
  g_features[kind * 64 + (allocations < 63 ? allocations : 63)] = 1;
}
void print_feature(bool ok, std::size_t cap, std::size_t length) {
  long slack = static_cast<long>(cap) - static_cast<long>(length) + 16;
  g_features[kParseFeatures + (ok ? 0 : 32) + (slack < 0 ? 0 : slack > 31 ? 31 : slack)] = 1;
}

// JsonPool takes its memory with aligned new. ASan maps each allocation over 128 KiB afresh
// and unmaps it when freed, and the page faults on a new default pool took most of a run,
// so the aligned forms below hand every pool the same region instead. The region is
// poisoned while no pool holds it (and past the end of what the pool asked for), so ASan
// still reports a use of pool memory after the pool is gone.
constexpr std::size_t kPoolArenaAlign = 64;
alignas(kPoolArenaAlign) unsigned char g_pool_arena[2 << 20];
bool g_pool_arena_taken = false;

void* take_aligned(std::size_t n, std::align_val_t align) {
  const std::size_t a = static_cast<std::size_t>(align);
  if (!g_pool_arena_taken && n <= sizeof g_pool_arena && a <= kPoolArenaAlign) {
    g_pool_arena_taken = true;
    ASAN_UNPOISON_MEMORY_REGION(g_pool_arena, n);
    return g_pool_arena;
  }
  return std::aligned_alloc(a, (n + a - 1) / a * a);
}

void give_aligned(void* p) {
  if (p == g_pool_arena) {
    ASAN_POISON_MEMORY_REGION(g_pool_arena, sizeof g_pool_arena);
    g_pool_arena_taken = false;
    return;
  }
  std::free(p);
}

const bool g_pool_arena_poisoned = [] {
  ASAN_POISON_MEMORY_REGION(g_pool_arena, sizeof g_pool_arena);
  return true;
}();

// Storage whose last byte sits just before a PROT_NONE page.
class GuardedTail {
 public:
  char* get(std::size_t n) {
    if (!base_ || n > usable_) grow(n);
    return base_ + usable_ - n;
  }

 private:
  void grow(std::size_t n) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    if (base_) munmap(base_, usable_ + page);
    usable_ = (n + page - 1) / page * page;
    void* p =
        mmap(nullptr, usable_ + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) violated("mmap for a guarded buffer failed");
    base_ = static_cast<char*>(p);
    if (mprotect(base_ + usable_, page, PROT_NONE) != 0) violated("mprotect failed");
  }

  char* base_ = nullptr;
  std::size_t usable_ = 0;
};

GuardedTail g_text;       // the document being parsed
GuardedTail g_printed;    // the generous print
GuardedTail g_print_cap;  // the print into the chosen size

// Recognises RFC 8259 JSON text that cJSON has to accept: containers nested at most
// CJSON_NESTING_LIMIT deep, and \u escapes of surrogates only in high-low pairs (cJSON
// rejects lone ones). Numbers may be any length: Debian's cJSON (1.7.15+deb12u3, the fix
// for CVE-2023-26819) copies each into a pool block for strtod; older releases rejected
// numbers over 63 characters. cJSON accepts more than this (leading zeros, control
// characters in strings, bytes after the value); that is not checked here.
class PlainJson {
 public:
  static bool accepts(const char* text, std::size_t n) {
    PlainJson j(reinterpret_cast<const unsigned char*>(text), n);
    j.skip_space();
    if (!j.value(0)) return false;
    j.skip_space();
    return j.p_ == j.end_;
  }

 private:
  PlainJson(const unsigned char* p, std::size_t n) : p_(p), end_(p + n) {}

  bool at(unsigned char c) const { return p_ < end_ && *p_ == c; }
  bool digit() const { return p_ < end_ && *p_ >= '0' && *p_ <= '9'; }
  void skip_space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool literal(const char* word) {
    std::size_t len = std::strlen(word);
    if (static_cast<std::size_t>(end_ - p_) < len || std::memcmp(p_, word, len) != 0) return false;
    p_ += len;
    return true;
  }

  bool value(int depth) {
    if (p_ == end_) return false;
    switch (*p_) {
      case '{':
      case '[':
        return depth < CJSON_NESTING_LIMIT && container(depth + 1);
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  bool container(int depth) {
    const bool object = *p_ == '{';
    const unsigned char close = object ? '}' : ']';
    ++p_;
    skip_space();
    if (at(close)) {
      ++p_;
      return true;
    }
    for (;;) {
      if (object) {
        if (!at('"') || !string()) return false;
        skip_space();
        if (!at(':')) return false;
        ++p_;
        skip_space();
      }
      if (!value(depth)) return false;
      skip_space();
      if (at(close)) {
        ++p_;
        return true;
      }
      if (!at(',')) return false;
      ++p_;
      skip_space();
    }
  }

  // Reads the 4 hex digits after "\u"; -1 if they are not there.
  long hex4() {
    if (end_ - p_ < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; ++i) {
      unsigned char c = *p_++;
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  }

  bool string() {
    ++p_;  // the opening quote
    while (p_ < end_) {
      unsigned char c = *p_++;
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') continue;
      if (p_ == end_) return false;
      c = *p_++;
      if (c == 'u') {
        long code = hex4();
        if (code < 0 || (code >= 0xDC00 && code <= 0xDFFF)) return false;
        if (code >= 0xD800 && code <= 0xDBFF) {
          if (!literal("\\u")) return false;
          long low = hex4();
          if (low < 0xDC00 || low > 0xDFFF) return false;
        }
      } else if (!std::strchr("\"\\/bfnrt", c) || c == 0) {
        return false;
      }
    }
    return false;
  }

  bool number() {
    if (at('-')) ++p_;
    if (at('0')) {
      ++p_;
    } else if (digit()) {
      while (digit()) ++p_;
    } else {
      return false;
    }
    if (at('.')) {
      ++p_;
      if (!digit()) return false;
      while (digit()) ++p_;
    }
    if (at('e') || at('E')) {
      ++p_;
      if (at('+') || at('-')) ++p_;
      if (!digit()) return false;
      while (digit()) ++p_;
    }
    return true;
  }

  const unsigned char* p_;
  const unsigned char* end_;
};

// Pool blocks a parsed tree holds: one per node, one per key, one per string value.
std::size_t blocks_held(const cJSON* item) {
  std::size_t n = 0;
  for (; item; item = item->next) {
    n += 1 + (item->string ? 1 : 0) + (item->valuestring ? 1 : 0);
    n += blocks_held(item->child);
  }
  return n;
}

struct Header {
  tern::JsonPoolConfig pool;
  tern::JsonPoolConfig round_trip_pool;  // the default counts, same scale
  bool print_absolute = false;
  int print_cap = 0;  // absolute, or relative to length + 1
};

Header decode(const std::uint8_t* data, std::size_t size) {
  std::uint8_t h[kHeaderBytes] = {};
  std::memcpy(h, data, size < kHeaderBytes ? size : kHeaderBytes);
  Header out;
  const unsigned scale = 1u << (h[0] & 3);
  for (int i = 0; i < 6; ++i) {
    // The default counts times 8 hold CJSON_NESTING_LIMIT nested arrays.
    std::uint32_t count =
        (h[0] & 0x80) ? out.pool.blocks[i] : (h[1 + i / 2] >> (4 * (i % 2))) & 0x0F;
    out.pool.blocks[i] = count * scale;
    out.round_trip_pool.blocks[i] *= scale;
  }
  out.print_absolute = h[4] & 0x80;
  out.print_cap = out.print_absolute ? h[4] & 0x7F : (h[4] & 0x0F) - 8;
  return out;
}

tern::Result<tern::JsonDoc> parse_watched(std::string_view text) {
  HeapWatch watch;
  return tern::json_parse(text);
}

tern::Result<std::size_t> print_watched(const cJSON* root, char* buf, std::size_t cap) {
  HeapWatch watch;
  return tern::json_print(root, buf, cap);
}

void destroy_watched(tern::Result<tern::JsonDoc>& doc) {
  HeapWatch watch;
  doc.value() = tern::JsonDoc();
}

// Parses `text` in `pool` and checks the outcome. Returns the document, or its error.
tern::Result<tern::JsonDoc> checked_parse(const tern::JsonPool& pool, std::string_view text) {
  const tern::JsonPoolStats before = pool.stats();
  tern::Result<tern::JsonDoc> doc = parse_watched(text);
  const tern::JsonPoolStats& after = pool.stats();
  parse_feature(doc.ok() ? Errc::ok : doc.error(), after.allocations - before.allocations);
  CHECK(after.allocations >= before.allocations);
  CHECK(after.high_water >= after.in_use);
  const bool refused = after.failures != before.failures;
  if (!doc) {
    if (doc.error() != Errc::protocol && doc.error() != Errc::full) {
      std::fprintf(stderr, "json_parse failed with %s\n", tern::errc_name(doc.error()));
      violated("json_parse fails only with protocol or full");
    }
    CHECK((doc.error() == Errc::full) == refused);
    CHECK(after.in_use == before.in_use);
    if (doc.error() == Errc::protocol && PlainJson::accepts(text.data(), text.size())) {
      violated("plain JSON was rejected as protocol");
    }
    return doc;
  }
  CHECK(!refused);
  CHECK(doc->get() != nullptr);
  CHECK(after.in_use - before.in_use == blocks_held(doc->get()));
  return doc;
}

// Prints `root` into a buffer large enough for anything parsed from `source_len` bytes (an
// input byte prints as at most 6: a raw control character becomes \u00XX).
std::string_view checked_print(const cJSON* root, std::size_t source_len) {
  const std::size_t cap = 16 * source_len + 64;
  char* buf = g_printed.get(cap);
  tern::Result<std::size_t> n = print_watched(root, buf, cap);
  CHECK(n.ok());
  CHECK(*n < cap);
  CHECK(buf[*n] == '\0');
  CHECK(std::strlen(buf) == *n);
  CHECK(PlainJson::accepts(buf, *n));
  return std::string_view(buf, *n);
}

void check_print_into(const cJSON* root, std::string_view printed, const Header& h) {
  long want = h.print_absolute ? h.print_cap : static_cast<long>(printed.size()) + 1 + h.print_cap;
  const std::size_t cap = want < 0 ? 0 : static_cast<std::size_t>(want);
  char* buf = g_print_cap.get(cap);
  std::memset(buf, 0xA5, cap);
  tern::Result<std::size_t> n = print_watched(root, buf, cap);
  print_feature(n.ok(), cap, printed.size() + 1);
  if (n) {
    CHECK(*n == printed.size());
    CHECK(*n < cap);
    CHECK(std::memcmp(buf, printed.data(), *n) == 0);
    CHECK(buf[*n] == '\0');
  } else {
    if (n.error() != Errc::too_large) {
      std::fprintf(stderr, "json_print failed with %s\n", tern::errc_name(n.error()));
      violated("json_print fails only with too_large for a document");
    }
    CHECK(cap < printed.size() + 1 + kCjsonSpare);
  }
}

// Parses cJSON's own output again in a fresh pool: it must come back, print the same, and
// JsonDoc's move and release must account for every block.
void check_round_trip(std::string_view printed, const tern::JsonPoolConfig& config) {
  char* text = g_text.get(printed.size());
  if (!printed.empty()) std::memmove(text, printed.data(), printed.size());
  const std::string_view again(text, printed.size());

  tern::JsonPool pool(config);
  tern::Result<tern::JsonDoc> first = checked_parse(pool, again);
  // Full is possible: this pool's classes differ from the first one's, and escaping can
  // make a string longer than the largest block.
  if (!first) {
    CHECK(first.error() == Errc::full);
    return;
  }
  std::string_view reprinted = checked_print(first->get(), again.size());
  if (reprinted != again) {
    std::fprintf(stderr, "printed:   %.*s\nreprinted: %.*s\n", static_cast<int>(again.size()),
                 again.data(), static_cast<int>(reprinted.size()), reprinted.data());
    violated("printing is not stable across a round trip");
  }

  tern::Result<tern::JsonDoc> second = checked_parse(pool, again);
  if (!second) {
    CHECK(second.error() == Errc::full);
    destroy_watched(first);
    CHECK(pool.stats().in_use == 0);
    return;
  }
  const std::size_t second_blocks = blocks_held(second->get());
  {
    HeapWatch watch;
    first.value() = std::move(second.value());
  }
  CHECK(second->get() == nullptr);
  CHECK(pool.stats().in_use == second_blocks);
  cJSON* root = first->release();
  CHECK(first->get() == nullptr);
  {
    HeapWatch watch;
    cJSON_Delete(root);
  }
  CHECK(pool.stats().in_use == 0);
}

}  // namespace

void* operator new(std::size_t n, std::align_val_t a) {
  void* p = take_aligned(n, a);
  if (!p) violated("out of memory");
  return p;
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return take_aligned(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return take_aligned(n, a);
}
void operator delete(void* p, std::align_val_t) noexcept { give_aligned(p); }
void operator delete[](void* p, std::align_val_t) noexcept { give_aligned(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { give_aligned(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { give_aligned(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { give_aligned(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  give_aligned(p);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  CHECK(g_hooks_installed != 0 && g_pool_arena_poisoned);
  const Header h = decode(data, size);
  const std::size_t skip = size < kHeaderBytes ? size : kHeaderBytes;
  char* text = g_text.get(size - skip);
  if (size > skip) std::memcpy(text, data + skip, size - skip);
  const std::string_view doc_text(text, size - skip);

  std::string_view printed;
  {
    tern::JsonPool pool(h.pool);
    CHECK(tern::JsonPool::current() == &pool);
    const std::size_t in_use = pool.stats().in_use;
    tern::Result<tern::JsonDoc> doc = checked_parse(pool, doc_text);
    if (!doc) return 0;

    char unused[8];
    tern::Result<std::size_t> none = tern::json_print(nullptr, unused, sizeof unused);
    CHECK(!none && none.error() == Errc::invalid_argument);

    printed = checked_print(doc->get(), doc_text.size());
    const std::size_t held = pool.stats().in_use;
    check_print_into(doc->get(), printed, h);
    CHECK(pool.stats().in_use == held);  // printing never takes blocks

    destroy_watched(doc);
    CHECK(pool.stats().in_use == in_use);
  }
  CHECK(tern::JsonPool::current() == nullptr);

  check_round_trip(printed, h.round_trip_pool);
  return 0;
}
