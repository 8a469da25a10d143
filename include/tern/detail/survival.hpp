// Not API: lets an object be destroyed by a callback it runs. Code that runs a callback
// and then reads its object again puts a Survival on its stack, chained through one
// pointer the object keeps (`innermost`, null while no such code runs). The object's
// destructor calls object_destroyed(innermost); every guard on the stack then finds its
// `alive` false, on its way out tells the next one outward, and touches nothing more of
// the object.
//
//   bool* alive_ = nullptr;                       // in the object
//   ~Thing() { detail::object_destroyed(alive_); ... }
//   detail::Survival guard(alive_);
//   on_done(result);
//   if (!guard.alive) return;                     // destroyed by on_done
#pragma once

namespace tern::detail {

// GCC 12 takes the object keeping the guard's address for a dangling pointer when it
// cannot see, across inlining, that the destructor takes it back.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
class Survival {
 public:
  explicit Survival(bool*& innermost) : head_(&innermost), outer_(innermost) { innermost = &alive; }
  ~Survival() {
    if (alive) {
      *head_ = outer_;  // the object lives: the next guard out is innermost again
    } else if (outer_ != nullptr) {
      *outer_ = false;  // the object is gone: so is it for the next guard out
    }
  }
  Survival(const Survival&) = delete;
  Survival& operator=(const Survival&) = delete;

  bool alive = true;

 private:
  bool** head_;
  bool* outer_;
};
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif

inline void object_destroyed(bool* innermost) {
  if (innermost != nullptr) *innermost = false;
}

}  // namespace tern::detail
