#include "tern/agents/payload.hpp"

#include <cstring>
#include <new>

#include "tern/detail/startup_array.hpp"

namespace tern {

namespace {
constexpr std::size_t kAlign = alignof(detail::PayloadBlock);
static_assert(kAlign <= Arena::kAlign && sizeof(detail::PayloadBlock) % kAlign == 0,
              "payload bytes must stay aligned");
}  // namespace

constexpr auto kMaxCount = static_cast<detail::PayloadCount>(-1);

std::size_t Payload::capacity() const { return block_ ? block_->size_class->block_size : 0; }

Errc Payload::resize(std::size_t n) {
  if (!block_) return n == 0 ? Errc::ok : Errc::too_large;
  if (n > capacity()) return Errc::too_large;
  block_->used.size = static_cast<detail::PayloadCount>(n);
  return Errc::ok;
}

void Payload::add_ref() {
  if (block_->used.refs == kMaxCount) panic("Payload: too many copies of one payload");
  ++block_->used.refs;
}

void Payload::release_ref() {
  if (--block_->used.refs == 0) block_->size_class->pool->release(block_);
  block_ = nullptr;
}

PayloadPool::PayloadPool(const PayloadConfig& config, Arena* arena) : arena_(arena) {
  std::size_t total = 0;
  for (const PayloadClass& c : config.classes) {
    if (c.block_size == 0 || c.count == 0) continue;
    if (class_count_ > 0 && c.block_size <= classes_[class_count_ - 1].block_size) {
      panic("PayloadConfig: classes must grow in size");
    }
    if (c.block_size > kMaxCount) panic("PayloadConfig: a block holds at most 65535 bytes on 32-bit targets");
    // arena_bytes() cannot refuse a size that wraps; the constructor does.
    constexpr std::size_t kMax = static_cast<std::size_t>(-1);
    if (c.block_size > kMax / 2 || block_stride(c.block_size) > (kMax - total) / c.count) {
      panic("PayloadConfig: the blocks' total size overflows");
    }
    total += block_stride(c.block_size) * c.count;
    Class& k = classes_[class_count_++];
    k.pool = this;
    k.block_size = c.block_size;
    k.free_count = c.count;
  }
  memory_ = static_cast<unsigned char*>(detail::startup_take(
      arena_, total, kAlign,
      "PayloadPool: out of memory at start-up (or its arena holds less than arena_bytes(config))"));
  unsigned char* p = memory_;
  for (int i = 0; i < class_count_; ++i) {
    Class& k = classes_[i];
    // The data starts right after the header; header size keeps blocks aligned.
    const std::size_t stride = block_stride(k.block_size);
    for (std::size_t j = 0; j < k.free_count; ++j, p += stride) {
      auto* b = new (p) detail::PayloadBlock{&k, {k.free}};
      k.free = b;
    }
  }
}

PayloadPool::~PayloadPool() {
  if (stats_.in_use != 0) panic("PayloadPool destroyed while Payloads are alive");
  if (!arena_) detail::startup_release(memory_, kAlign);
}

std::size_t PayloadPool::largest_block() const {
  return class_count_ ? classes_[class_count_ - 1].block_size : 0;
}

std::size_t PayloadPool::free_in_class(int size_class) const {
  return size_class >= 0 && size_class < class_count_ ? classes_[size_class].free_count : 0;
}

detail::PayloadBlock* PayloadPool::take(std::size_t size) {
  for (int i = 0; i < class_count_; ++i) {
    Class& k = classes_[i];
    if (k.block_size < size || !k.free) continue;
    detail::PayloadBlock* b = k.free;
    k.free = b->next_free;
    --k.free_count;
    b->used.refs = 1;
    b->used.size = static_cast<detail::PayloadCount>(size);
    ++stats_.allocated;
    if (++stats_.in_use > stats_.high_water) stats_.high_water = stats_.in_use;
    return b;
  }
  if (size > largest_block()) {
    ++stats_.too_large;
  } else {
    ++stats_.rejected;
  }
  return nullptr;
}

Result<Payload> PayloadPool::make(std::size_t size) {
  detail::PayloadBlock* b = take(size);
  if (!b) return size > largest_block() ? Errc::too_large : Errc::full;
  return Payload(b);
}

Result<Payload> PayloadPool::copy_of(const void* data, std::size_t size) {
  detail::PayloadBlock* b = take(size);
  if (!b) return size > largest_block() ? Errc::too_large : Errc::full;
  if (size) std::memcpy(b + 1, data, size);
  return Payload(b);
}

void PayloadPool::release(detail::PayloadBlock* b) {
  Class& k = *b->size_class;
  b->next_free = k.free;
  k.free = b;
  ++k.free_count;
  --stats_.in_use;
}

}  // namespace tern
