// Not API: a table allocated once at start-up, from an Arena when the config names one,
// else from the heap; running short of either is a start-up failure (panic naming what
// to shrink). Reactor, Runtime and PayloadPool keep their tables in these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "tern/core/arena.hpp"
#include "tern/core/errc.hpp"

namespace tern::detail {

// Raw start-up memory from `arena`, or the heap when it is null; nothing for 0 bytes
// (nullptr). Running short is a start-up failure: panic(short_of).
void* startup_take(Arena* arena, std::size_t bytes, std::size_t align, const char* short_of);
// Gives back what startup_take() took from the heap (never call it for an arena's).
void startup_release(void* p, std::size_t align);
// Ends an object's share of `arena` (if any) at a multiple of Arena::kAlign, so the next
// object's arena_bytes() holds wherever it starts.
void startup_finish(Arena* arena);
// An object's arena_bytes(): its tables, padded as startup_finish() pads them.
constexpr std::size_t startup_total(std::size_t used) { return align_up(used, Arena::kAlign); }

template <typename T>
class StartupArray {
  static_assert(alignof(T) <= Arena::kAlign, "a start-up table's entries must fit Arena::kAlign");

 public:
  // What `n` elements add to an arena `used` bytes full.
  static constexpr std::size_t arena_step(std::size_t used, std::size_t n) {
    return n ? detail::arena_step(used, sizeof(T) * n, alignof(T)) : used;
  }

  // `n` value-initialised elements; `short_of` is the panic message when memory runs out.
  StartupArray(std::size_t n, Arena* arena, const char* short_of)
      : items_(static_cast<T*>(startup_take(arena, bytes_for(n, short_of), alignof(T), short_of))),
        count_(static_cast<std::uint32_t>(n)),
        in_arena_(arena != nullptr) {
    for (std::size_t i = 0; i < n; ++i) new (&items_[i]) T();
  }
  ~StartupArray() {
    for (std::size_t i = count_; i > 0; --i) items_[i - 1].~T();
    if (!in_arena_) startup_release(items_, alignof(T));
  }
  StartupArray(const StartupArray&) = delete;
  StartupArray& operator=(const StartupArray&) = delete;

  T* get() const { return items_; }
  T& operator[](std::size_t i) const { return items_[i]; }
  std::size_t size() const { return count_; }

 private:
  static std::size_t bytes_for(std::size_t n, const char* short_of) {
    if (n >= (std::size_t{1} << 31) || n > static_cast<std::size_t>(-1) / sizeof(T)) panic(short_of);
    return sizeof(T) * n;
  }

  T* items_ = nullptr;
  std::uint32_t count_ : 31 = 0;
  std::uint32_t in_arena_ : 1 = 0;  // an arena never gives back
};

}  // namespace tern::detail
