// InplaceFunction<Sig, Bytes, Align>: a move-only callable stored inside the object, never
// on the heap. A capture that does not fit in `Bytes` (or needs more than `Align`) is a
// compile error, not an allocation. Besides the capture it holds one pointer, to a
// static table of what calls, moves and destroys that capture's type.
//
//   tern::InplaceFunction<void(int), 24> f = [this, id](int v) { use(id, v); };
//   f(42);
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

#include "tern/core/errc.hpp"

namespace tern {

template <typename Sig, std::size_t Bytes = 2 * sizeof(void*),
          std::size_t Align = alignof(std::max_align_t)>
class InplaceFunction;

namespace detail {
template <typename T>
struct is_inplace_function : std::false_type {};
template <typename Sig, std::size_t Bytes, std::size_t Align>
struct is_inplace_function<InplaceFunction<Sig, Bytes, Align>> : std::true_type {};
}  // namespace detail

template <typename R, typename... Args, std::size_t Bytes, std::size_t Align>
class InplaceFunction<R(Args...), Bytes, Align> {
 public:
  static constexpr std::size_t kCapacity = Bytes;

  InplaceFunction() = default;
  InplaceFunction(std::nullptr_t) {}  // NOLINT

  template <typename F,
            typename D = std::decay_t<F>,
            typename = std::enable_if_t<!std::is_same_v<D, InplaceFunction> &&
                                        std::is_invocable_r_v<R, D&, Args...>>>
  InplaceFunction(F&& f) {  // NOLINT: implicit by design, like std::function
    static_assert(sizeof(D) <= Bytes,
                  "capture too large for this InplaceFunction: capture less or raise Bytes");
    static_assert(alignof(D) <= Align, "over-aligned capture for this InplaceFunction");
    static_assert(std::is_nothrow_move_constructible_v<D>, "capture must move without throwing");
    // A null function pointer, or an empty InplaceFunction of another size, makes an
    // empty one (as std::function does): an owner's `if (!cb)` check must see it.
    if constexpr (std::is_pointer_v<D> || std::is_member_pointer_v<D>) {
      if (f == nullptr) return;
    } else if constexpr (detail::is_inplace_function<D>::value) {
      if (!f) return;
    }
    new (&storage_) D(std::forward<F>(f));
    ops_ = &kOps<D>;
  }

  InplaceFunction(InplaceFunction&& o) noexcept { take(o); }
  InplaceFunction& operator=(InplaceFunction&& o) noexcept {
    if (this != &o) {
      reset();
      take(o);
    }
    return *this;
  }
  InplaceFunction& operator=(std::nullptr_t) {
    reset();
    return *this;
  }
  InplaceFunction(const InplaceFunction&) = delete;
  InplaceFunction& operator=(const InplaceFunction&) = delete;
  ~InplaceFunction() { reset(); }

  explicit operator bool() const { return ops_ != nullptr; }

  // Calling an empty function is a contract violation (panic).
  R operator()(Args... args) {
    if (!ops_) panic("InplaceFunction: call of an empty function");
    return ops_->invoke(&storage_, std::forward<Args>(args)...);
  }

  // Empty before the held callable's destructor runs, so that destructor may reset or
  // test this function again without destroying it twice.
  void reset() {
    const Ops* ops = ops_;
    ops_ = nullptr;
    if (ops && ops->manage) ops->manage(nullptr, &storage_);
  }

 private:
  struct Ops {
    R (*invoke)(void*, Args...);
    // Moves the capture from src to dst (when dst is not null) and destroys src's.
    // Null for a capture that is trivially copyable and destructible, and not empty:
    // its `size` bytes are copied.
    void (*manage)(void* dst, void* src);
    std::size_t size;
  };
  template <typename D>
  static R invoke_as(void* s, Args... args) {
    if constexpr (std::is_void_v<R>) {
      std::invoke(*static_cast<D*>(s), std::forward<Args>(args)...);  // a result is dropped
    } else {
      return std::invoke(*static_cast<D*>(s), std::forward<Args>(args)...);
    }
  }
  template <typename D>
  static void manage_as(void* dst, void* src) {
    if (dst) new (dst) D(std::move(*static_cast<D*>(src)));
    static_cast<D*>(src)->~D();
  }
  template <typename D>
  static constexpr Ops kOps{
      &invoke_as<D>,
      // An empty capture has no bytes to copy: it is moved by constructing it anew.
      std::is_trivially_copyable_v<D> && std::is_trivially_destructible_v<D> &&
              !std::is_empty_v<D>
          ? nullptr
          : &manage_as<D>,
      sizeof(D)};

  void take(InplaceFunction& o) {
    const Ops* ops = o.ops_;
    if (ops && ops->manage) {
      ops->manage(&storage_, &o.storage_);
    } else if (ops) {
      __builtin_memcpy(&storage_, &o.storage_, ops->size);
    }
    ops_ = ops;
    o.ops_ = nullptr;
  }

  alignas(Align) unsigned char storage_[Bytes];
  const Ops* ops_ = nullptr;
};

}  // namespace tern
