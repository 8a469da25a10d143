// InplaceFunction<Sig, Bytes, Align>: a move-only callable stored inside the object, never
// on the heap. A capture that does not fit in `Bytes` (or needs more than `Align`) is a
// compile error, not an allocation.
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
    invoke_ = [](void* s, Args... args) -> R {
      if constexpr (std::is_void_v<R>) {
        std::invoke(*static_cast<D*>(s), std::forward<Args>(args)...);  // a result is dropped
      } else {
        return std::invoke(*static_cast<D*>(s), std::forward<Args>(args)...);
      }
    };
    manage_ = [](void* dst, void* src) {
      if (dst) new (dst) D(std::move(*static_cast<D*>(src)));
      static_cast<D*>(src)->~D();
    };
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

  explicit operator bool() const { return invoke_ != nullptr; }

  // Calling an empty function is a contract violation (panic).
  R operator()(Args... args) {
    if (!invoke_) panic("InplaceFunction: call of an empty function");
    return invoke_(&storage_, std::forward<Args>(args)...);
  }

  // Empty before the held callable's destructor runs, so that destructor may reset or
  // test this function again without destroying it twice.
  void reset() {
    auto manage = manage_;
    invoke_ = nullptr;
    manage_ = nullptr;
    if (manage) manage(nullptr, &storage_);
  }

 private:
  void take(InplaceFunction& o) {
    if (o.manage_) o.manage_(&storage_, &o.storage_);
    invoke_ = o.invoke_;
    manage_ = o.manage_;
    o.invoke_ = nullptr;
    o.manage_ = nullptr;
  }

  alignas(Align) unsigned char storage_[Bytes];
  R (*invoke_)(void*, Args...) = nullptr;
  void (*manage_)(void* dst, void* src) = nullptr;
};

}  // namespace tern
