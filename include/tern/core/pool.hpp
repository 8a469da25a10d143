// Pool<T, N>: N fixed objects handed out by handle. A Handle carries the slot index and
// the slot's generation, so a handle kept after release() is detected (get() returns
// nullptr, release() returns Errc::not_found) instead of touching a reused object.
//
//   tern::Pool<Connection, 8> conns;
//   tern::Result<tern::PoolHandle> h = conns.acquire(args...);
//   if (Connection* c = conns.get(*h)) c->send(...);
//   (void)conns.release(*h);
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "tern/core/errc.hpp"
#include "tern/detail/slot_generation.hpp"

namespace tern {

struct PoolHandle {
  std::uint32_t index = 0xFFFFFFFFu;
  std::uint32_t generation = 0;
  friend bool operator==(const PoolHandle&, const PoolHandle&) = default;
};

template <typename T, std::size_t N>
class Pool {
  static_assert(N > 0 && N < 0xFFFFFFFFu, "Pool capacity out of range");

 public:
  static constexpr std::size_t kCapacity = N;

  Pool() {
    for (std::size_t i = 0; i < N; ++i) {
      next_free_[i] = static_cast<std::uint32_t>(i + 1);
      generation_[i] = 1;
    }
  }
  ~Pool() {
    for (std::size_t i = 0; i < N; ++i)
      if (live_[i]) obj(i)->~T();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Constructs a T in a free slot. Errors: full (no slot free; counted).
  template <typename... A>
  Result<PoolHandle> acquire(A&&... args) {
    if (free_ >= N) {
      ++rejected_;
      return Errc::full;
    }
    std::uint32_t i = free_;
    free_ = next_free_[i];
    new (obj(i)) T(std::forward<A>(args)...);
    live_[i] = true;
    if (++in_use_ > high_water_) high_water_ = in_use_;
    return PoolHandle{i, generation_[i]};
  }

  // The object for a live handle, nullptr for a stale or invalid one.
  T* get(PoolHandle h) {
    if (h.index >= N || !live_[h.index] || generation_[h.index] != h.generation) return nullptr;
    return obj(h.index);
  }

  // Destroys the object. Errors: not_found (stale or invalid handle; nothing changes).
  // The slot is retired before the destructor runs, so a destructor that releases its
  // own handle again (an owner's on-close hook) gets not_found, not a second free.
  Errc release(PoolHandle h) {
    if (get(h) == nullptr) return Errc::not_found;
    live_[h.index] = false;
    detail::bump_generation(generation_[h.index]);
    next_free_[h.index] = free_;
    free_ = h.index;
    --in_use_;
    obj(h.index)->~T();
    return Errc::ok;
  }

  std::size_t in_use() const { return in_use_; }
  std::size_t high_water() const { return high_water_; }
  std::uint64_t rejected() const { return rejected_; }
  bool full() const { return in_use_ == N; }

 private:
  T* obj(std::size_t i) { return std::launder(reinterpret_cast<T*>(storage_ + sizeof(T) * i)); }

  alignas(T) unsigned char storage_[sizeof(T) * N];
  std::uint32_t next_free_[N];
  std::uint32_t generation_[N];
  bool live_[N] = {};
  std::uint32_t free_ = 0;
  std::size_t in_use_ = 0;
  std::size_t high_water_ = 0;
  std::uint64_t rejected_ = 0;
};

}  // namespace tern
