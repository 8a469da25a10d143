// Arena: start-up memory carved from a buffer the application owns, for firmware that
// must not use a heap at all. A Reactor or Runtime given one (ReactorConfig::arena,
// RuntimeConfig::arena) takes every table it needs at construction from it, in order,
// and never gives anything back; `arena_bytes(config)` says beforehand exactly how much
// that is, so the buffer can be a static array sized at compile time.
//
//   constexpr tern::ReactorConfig kReactor{.max_timers = 64};
//   alignas(tern::Arena::kAlign) static unsigned char memory[tern::Reactor::arena_bytes(kReactor)];
//   tern::Arena arena(memory, sizeof memory);
//   tern::ReactorConfig rc = kReactor;
//   rc.arena = &arena;
//   tern::Reactor reactor(rc);  // no heap: arena.used() == sizeof memory
//
// One arena may serve several objects, in any order: size it with the sum of their
// arena_bytes(), each a multiple of Arena::kAlign (an object pads its last table to
// it). It must outlive them. See examples/cortex_m/main.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tern/core/errc.hpp"

namespace tern {

namespace detail {
constexpr std::size_t align_up(std::size_t n, std::size_t align) { return (n + align - 1) / align * align; }
// Where the next piece of `bytes` at `align` ends in an arena `used` bytes full:
// arena_bytes() and Arena::take() both step with it, so the sum is exact.
constexpr std::size_t arena_step(std::size_t used, std::size_t bytes, std::size_t align) {
  return align_up(used, align) + bytes;
}
}  // namespace detail

class Arena {
 public:
  // The alignment the buffer must have; every piece taken needs at most this.
  static constexpr std::size_t kAlign = alignof(std::max_align_t);

  // A buffer not aligned to kAlign is a contract violation (panic).
  Arena(void* base, std::size_t size) : base_(static_cast<unsigned char*>(base)), size_(size) {
    if (reinterpret_cast<std::uintptr_t>(base) % kAlign != 0) panic("Arena: buffer not aligned to Arena::kAlign");
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // `bytes` aligned to `align` (a power of two, at most kAlign), or nullptr when what is
  // left is too small (nothing is taken then).
  void* take(std::size_t bytes, std::size_t align) {
    if (align == 0 || align > kAlign || (align & (align - 1)) != 0) panic("Arena::take: bad alignment");
    std::size_t start = detail::align_up(used_, align);
    if (start < used_ || start > size_ || bytes > size_ - start) return nullptr;
    used_ = start + bytes;
    return base_ + start;
  }

  std::size_t size() const { return size_; }
  std::size_t used() const { return used_; }

 private:
  unsigned char* base_;
  std::size_t size_;
  std::size_t used_ = 0;
};

}  // namespace tern
