// Payload: a reference-counted byte buffer from a PayloadPool. Copying a Payload shares
// the buffer (publishing one message to 64 subscribers copies no bytes); the block goes
// back to its pool when the last copy is destroyed. The pool has a few block sizes, each
// with a fixed count, allocated once; an exhausted pool returns Errc::full (counted).
//
//   tern::PayloadPool pool(tern::PayloadConfig{});           // 64 B x 32, 256 B x 8, ...
//   tern::Result<tern::Payload> p = pool.copy_of("hello", 5);
//   if (p) msg.payload = *p;
//
// Payloads belong to the reactor's thread: an interrupt handler passes values, not
// Payloads, through its Inbox. See examples/agents_bus.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "tern/core/arena.hpp"
#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"

namespace tern {

class PayloadPool;

namespace detail {
struct PayloadBlock;
// Not API: one size class of a pool, which its blocks point at.
struct PayloadClassState {
  PayloadPool* pool = nullptr;
  std::uint32_t block_size = 0;
  std::size_t free_count = 0;
  PayloadBlock* free = nullptr;
};
// The size and reference count of a block in use: 16 bits each on 32-bit targets (so
// a block holds at most 65 535 bytes and a payload has at most 65 535 copies there),
// 32 bits each on 64-bit ones, where the free-list pointer they share space with is 8.
using PayloadCount = std::conditional_t<sizeof(void*) >= 8, std::uint32_t, std::uint16_t>;
// Not API: the header in front of every payload block, a multiple of max_align_t so the
// bytes after it stay aligned: 8 bytes on ARM32 (Cortex-M, armhf), 16 on 64-bit targets.
struct alignas(alignof(std::max_align_t)) PayloadBlock {
  PayloadClassState* size_class;
  union {
    PayloadBlock* next_free;  // while in the pool
    struct {
      PayloadCount size;  // bytes in use
      PayloadCount refs;
    } used;               // while in use
  };
};
}  // namespace detail

class Payload {
 public:
  Payload() = default;
  // A payload has at most 65 535 copies on 32-bit targets (2^32 - 1 on 64-bit); one
  // more is a contract violation (panic).
  Payload(const Payload& o) : block_(o.block_) {
    if (block_) add_ref();
  }
  Payload(Payload&& o) noexcept : block_(o.block_) { o.block_ = nullptr; }
  Payload& operator=(const Payload& o) {
    if (this != &o) {
      Payload copy(o);
      swap(copy);
    }
    return *this;
  }
  Payload& operator=(Payload&& o) noexcept {
    if (this != &o) {
      reset();
      block_ = o.block_;
      o.block_ = nullptr;
    }
    return *this;
  }
  ~Payload() { reset(); }

  bool empty() const { return block_ == nullptr || block_->used.size == 0; }
  std::size_t size() const { return block_ ? block_->used.size : 0; }
  // Capacity of the block (>= size()).
  std::size_t capacity() const;
  std::uint8_t* data() { return block_ ? reinterpret_cast<std::uint8_t*>(block_ + 1) : nullptr; }
  const std::uint8_t* data() const {
    return block_ ? reinterpret_cast<const std::uint8_t*>(block_ + 1) : nullptr;
  }
  std::string_view view() const {
    return block_ ? std::string_view(reinterpret_cast<const char*>(block_ + 1), block_->used.size)
                  : std::string_view();
  }
  // Shrinks or grows the used size within capacity(). Errors: too_large.
  Errc resize(std::size_t n);
  // How many Payloads share this buffer (0 for an empty Payload).
  std::uint32_t refs() const { return block_ ? block_->used.refs : 0; }
  void reset() {
    if (block_) release_ref();  // inline: nearly every reset is of an empty Payload
  }
  void swap(Payload& o) noexcept {
    detail::PayloadBlock* t = block_;
    block_ = o.block_;
    o.block_ = t;
  }

 private:
  friend class PayloadPool;
  void add_ref();
  void release_ref();
  explicit Payload(detail::PayloadBlock* b) : block_(b) {}
  detail::PayloadBlock* block_ = nullptr;
};

struct PayloadClass {
  std::uint32_t block_size = 0;  // usable bytes per block (at most 65 535 on 32-bit
                                 // targets: more is a start-up panic)
  std::uint32_t count = 0;       // blocks of this size
};

struct PayloadConfig {
  static constexpr int kMaxClasses = 4;
  PayloadClass classes[kMaxClasses] = {{64, 32}, {256, 8}, {1024, 2}, {0, 0}};
};

struct PayloadStats {
  std::size_t in_use = 0;
  std::size_t high_water = 0;
  Count allocated = 0;
  Count rejected = 0;   // full: no block of a fitting size was free
  Count too_large = 0;  // bigger than the largest class
};

class PayloadPool {
 public:
  // Allocates every block once, from `arena` when given (it must hold arena_bytes(config)
  // more bytes), else from the heap. Classes must be given smallest first.
  explicit PayloadPool(const PayloadConfig& config = PayloadConfig{}, Arena* arena = nullptr);
  // The bytes every block of `config` takes, headers included (a multiple of
  // Arena::kAlign).
  static constexpr std::size_t arena_bytes(const PayloadConfig& config) {
    std::size_t total = 0;
    for (const PayloadClass& c : config.classes) {
      if (c.block_size != 0) total += block_stride(c.block_size) * c.count;
    }
    return total;
  }
  // One block of `block_size` bytes with its header, as laid out in the pool.
  static constexpr std::size_t block_stride(std::size_t block_size) {
    return sizeof(detail::PayloadBlock) + detail::align_up(block_size, alignof(detail::PayloadBlock));
  }
  // Destroying the pool while Payloads are alive is a contract violation (panic).
  ~PayloadPool();
  PayloadPool(const PayloadPool&) = delete;
  PayloadPool& operator=(const PayloadPool&) = delete;

  // A payload of `size` uninitialised bytes from the smallest class that has a free
  // block. Errors: full (counted), too_large (over the largest class; counted).
  Result<Payload> make(std::size_t size);
  // make() + copy of `size` bytes from `data`.
  Result<Payload> copy_of(const void* data, std::size_t size);
  Result<Payload> copy_of(std::string_view s) { return copy_of(s.data(), s.size()); }

  const PayloadStats& stats() const { return stats_; }
  std::size_t largest_block() const;
  std::size_t free_in_class(int size_class) const;

 private:
  friend class Payload;
  // A block of the smallest fitting class with a free one, or null (counted as
  // too_large or rejected).
  detail::PayloadBlock* take(std::size_t size);
  void release(detail::PayloadBlock* b);

  using Class = detail::PayloadClassState;
  Class classes_[PayloadConfig::kMaxClasses];
  int class_count_ = 0;
  unsigned char* memory_ = nullptr;
  Arena* arena_ = nullptr;
  PayloadStats stats_;
};

}  // namespace tern
