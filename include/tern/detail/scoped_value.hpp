// Not API: gives a variable a value for a scope and puts the previous one back at its
// end, so nested scopes restore each other in order (Reactor::in_turn(), the request a
// Runtime's log lines belong to).
#pragma once

namespace tern::detail {

template <typename T>
class ScopedValue {
 public:
  ScopedValue(T& variable, T value) : variable_(variable), outer_(variable) { variable = value; }
  ~ScopedValue() { variable_ = outer_; }
  ScopedValue(const ScopedValue&) = delete;
  ScopedValue& operator=(const ScopedValue&) = delete;

 private:
  T& variable_;
  const T outer_;
};

}  // namespace tern::detail
