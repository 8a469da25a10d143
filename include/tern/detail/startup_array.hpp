// Not API: a table allocated once at start-up, from an Arena when the config names one,
// else from the heap; running short of either is a start-up failure (panic naming what
// to shrink). Reactor, Runtime and PayloadPool keep their tables in these.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

#include "tern/core/arena.hpp"
#include "tern/core/errc.hpp"

namespace tern::detail {

// Raw start-up memory. Nothing is taken for 0 bytes (nullptr).
inline void* startup_take(Arena* arena, std::size_t bytes, std::size_t align, const char* short_of) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  if (arena) {
    p = arena->take(bytes, align);
  } else if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    p = ::operator new(bytes, std::align_val_t(align), std::nothrow);
  } else {
    p = ::operator new(bytes, std::nothrow);
  }
  if (!p) panic(short_of);
  return p;
}
inline void startup_release(Arena* arena, void* p, std::size_t align) {
  if (!p || arena) return;
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    ::operator delete(p, std::align_val_t(align));
  } else {
    ::operator delete(p);
  }
}

template <typename T>
class StartupArray {
 public:
  // What `n` elements add to an arena `used` bytes full.
  static constexpr std::size_t arena_step(std::size_t used, std::size_t n) {
    return n ? detail::arena_step(used, sizeof(T) * n, alignof(T)) : used;
  }

  StartupArray() = default;
  // `n` value-initialised elements; `short_of` is the panic message when memory runs out.
  StartupArray(std::size_t n, Arena* arena, const char* short_of)
      : items_(static_cast<T*>(startup_take(arena, sizeof(T) * n, alignof(T), short_of))), count_(n), arena_(arena) {
    for (std::size_t i = 0; i < n; ++i) new (&items_[i]) T();
  }
  ~StartupArray() { release(); }
  StartupArray(StartupArray&& o) noexcept { *this = std::move(o); }
  StartupArray& operator=(StartupArray&& o) noexcept {
    if (this != &o) {
      release();
      items_ = std::exchange(o.items_, nullptr);
      count_ = std::exchange(o.count_, 0);
      arena_ = o.arena_;
    }
    return *this;
  }

  T* get() const { return items_; }
  T& operator[](std::size_t i) const { return items_[i]; }
  std::size_t size() const { return count_; }

 private:
  void release() {
    for (std::size_t i = count_; i > 0; --i) items_[i - 1].~T();
    startup_release(arena_, items_, alignof(T));
    items_ = nullptr;
    count_ = 0;
  }

  T* items_ = nullptr;
  std::size_t count_ = 0;
  Arena* arena_ = nullptr;
};

}  // namespace tern::detail
