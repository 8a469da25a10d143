// minitest: the GoogleTest subset tern's portable tests use, for bare metal: no
// heap, no exceptions, no RTTI, output through printf. A test source written
// against it builds unchanged against GoogleTest on the host.
//
//   #include "minitest.hpp"            // on the host: <gtest/gtest.h>
//
//   TEST(Ring, PushIntoFullRingReturnsFull) {
//     tern::Ring<int, 1> ring;
//     ASSERT_EQ(ring.push(1), tern::Errc::ok);
//     EXPECT_EQ(ring.push(2), tern::Errc::full) << "size " << ring.size();
//   }
//
//   // In exactly one translation unit of the test program:
//   #define TERN_MINITEST_MAIN           // defines int main() { return
//   tern_minitest_main(); } #include "minitest.hpp"
//
// Supported, with GoogleTest's names and meanings:
//   TEST(Suite, Name); TEST_F(Fixture, Name) with ::testing::Test (SetUp,
//   TearDown); EXPECT_ and ASSERT_ TRUE FALSE EQ NE LT LE GT GE STREQ STRNE
//   NEAR; FAIL(), ADD_FAILURE(), SUCCEED(); RUN_ALL_TESTS(),
//   testing::InitGoogleTest(). ASSERT_* returns from the current function on
//   failure (so, as in GoogleTest, only inside functions returning void).
//   Streaming context into an assertion, `EXPECT_EQ(a, b) << "i=" << i;`, works
//   for strings, characters, integers, enums, bool, pointers and floating point
//   (no operator<< of yours is called, and std::endl is not accepted).
// Not supported: matchers (EXPECT_THAT), death tests, parameterised and typed
// tests, SetUpTestSuite, GTEST_SKIP, command-line filters.
//
// Failure messages give file:line, the assertion as written, and both values:
// integers, enums (tern::Errc also by name, via ADL errc_name), bool,
// characters, strings, pointers, floating point, anything with .micros()
// (tern::Duration, tern::Instant); any other type prints as its bytes.
//
// Tests run in registration order (source order within a file; link order
// across files). A test fails if any of its expectations failed. The run ends
// with one line, exactly "N passed, N failed", and tern_minitest_main() returns
// 0 only if none failed. Registration is a linked list of static nodes, built
// by static constructors: nothing is allocated.
#ifndef TERN_TESTS_SUPPORT_MINITEST_HPP_
#define TERN_TESTS_SUPPORT_MINITEST_HPP_

// Comparisons happen inside this header, so as with an -isystem GoogleTest,
// EXPECT_EQ(v.size(), 3) does not trip -Wsign-compare under -Werror.
#pragma GCC system_header

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace testing {

// The base of every test; TEST_F fixtures derive from it, as in GoogleTest.
class Test {
 public:
  virtual ~Test() = default;
  virtual void SetUp() {}
  virtual void TearDown() {}
  virtual void TestBody() = 0;
};

inline void InitGoogleTest(int*, char**) {}
inline void InitGoogleTest() {}

}  // namespace testing

namespace tern::minitest {

struct TestInfo {
  const char* suite;
  const char* name;
  void (*run)();
  TestInfo* next;
};

struct RunState {
  TestInfo* first = nullptr;
  TestInfo* last = nullptr;
  bool failed = false;  // the current test had a failure
  bool fatal =
      false;  // ... and it was an ASSERT_/FAIL (stops SetUp -> TestBody)
};

inline constinit RunState g_run{};

struct Registrar {
  explicit Registrar(TestInfo& t) {
    t.next = nullptr;
    if (g_run.last != nullptr) {
      g_run.last->next = &t;
    } else {
      g_run.first = &t;
    }
    g_run.last = &t;
  }
};

template <typename Fixture>
void run_test() {
  Fixture fixture;
  ::testing::Test& test =
      fixture;  // SetUp/TearDown may be protected in a fixture
  test.SetUp();
  if (!g_run.fatal) test.TestBody();
  test.TearDown();
}

// ---- printing values ----

template <typename T>
concept HasMicros = requires(const T& v) {
  { v.micros() } -> std::convertible_to<long long>;
};

template <typename T>
concept HasErrcName = requires(const T& v) {
  { errc_name(v) } -> std::convertible_to<const char*>;
};

inline void print_quoted(const char* s) {
  if (s == nullptr) {
    std::printf("NULL");
  } else {
    std::printf("\"%s\"", s);
  }
}

inline void print_char(long long c) {
  if (c >= 0x20 && c < 0x7F) {
    std::printf("'%c' (%lld)", static_cast<char>(c), c);
  } else {
    std::printf("%lld", c);
  }
}

template <typename T>
void print_bytes(const T& v) {
  const auto* p = reinterpret_cast<const unsigned char*>(&v);
  std::printf("%u-byte object <", static_cast<unsigned>(sizeof(T)));
  for (std::size_t i = 0; i < sizeof(T) && i < 32; ++i) {
    std::printf(i == 0 ? "%02X" : " %02X", p[i]);
  }
  std::printf(sizeof(T) > 32 ? " ...>" : ">");
}

// How a value appears in a failure message. `quoted`: strings in quotes and
// characters with their code (values); otherwise raw (streamed context).
template <typename T>
void print_value(const T& v, bool quoted = true) {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    std::printf(v ? "true" : "false");
  } else if constexpr (std::is_same_v<U, std::nullptr_t>) {
    std::printf("nullptr");
  } else if constexpr (std::is_same_v<U, char> ||
                       std::is_same_v<U, signed char> ||
                       std::is_same_v<U, unsigned char>) {
    if (quoted) {
      print_char(static_cast<long long>(v));
    } else {
      std::printf("%c", static_cast<char>(v));
    }
  } else if constexpr (std::is_enum_v<U>) {
    const auto n = static_cast<std::underlying_type_t<U>>(v);
    if constexpr (HasErrcName<U>) {
      std::printf("%s (%lld)", errc_name(v), static_cast<long long>(n));
    } else if constexpr (std::is_signed_v<std::underlying_type_t<U>>) {
      std::printf("%lld", static_cast<long long>(n));
    } else {
      std::printf("%llu", static_cast<unsigned long long>(n));
    }
  } else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) {
    std::printf("%lld", static_cast<long long>(v));
  } else if constexpr (std::is_integral_v<U>) {
    std::printf("%llu", static_cast<unsigned long long>(v));
  } else if constexpr (std::is_floating_point_v<U>) {
    std::printf("%.17g", static_cast<double>(v));
  } else if constexpr (std::is_array_v<U>) {
    using E = std::remove_cv_t<std::remove_extent_t<U>>;
    if constexpr (std::is_same_v<E, char>) {
      // A char array is printed up to its NUL, never past its end.
      std::size_t n = 0;
      while (n < std::extent_v<U> && v[n] != '\0') ++n;
      std::printf(quoted ? "\"%.*s\"" : "%.*s", static_cast<int>(n), v);
    } else {
      print_bytes(v);
    }
  } else if constexpr (std::is_pointer_v<U>) {
    using E = std::remove_cv_t<std::remove_pointer_t<U>>;
    if constexpr (std::is_same_v<E, char>) {
      if (quoted) {
        print_quoted(v);
      } else {
        std::printf("%s", v == nullptr ? "NULL" : v);
      }
    } else if (v == nullptr) {
      std::printf("NULL");
    } else {
      std::printf("%p", static_cast<const volatile void*>(v));
    }
  } else if constexpr (std::is_convertible_v<const U&, std::string_view>) {
    const std::string_view s(v);
    std::printf(quoted ? "\"%.*s\"" : "%.*s", static_cast<int>(s.size()),
                s.data());
  } else if constexpr (HasMicros<U>) {
    std::printf("%lldus", static_cast<long long>(v.micros()));
  } else {
    print_bytes(v);
  }
}

// ---- reporting ----

inline void fail_here(const char* file, int line) {
  g_run.failed = true;
  std::printf("%s:%d: Failure\n", file, line);
}

// Context streamed after an assertion: printed as it arrives, on its own line.
class Message {
 public:
  template <typename T>
  Message& operator<<(const T& v) {
    if (!started_) {
      std::printf("  ");
      started_ = true;
    }
    print_value(v, /*quoted=*/false);
    return *this;
  }
  Message& operator<<(
      const char* s) {  // the common case; avoids array instantiations
    if (!started_) {
      std::printf("  ");
      started_ = true;
    }
    std::printf("%s", s == nullptr ? "NULL" : s);
    return *this;
  }
  bool started() const { return started_; }

 private:
  bool started_ = false;
};

// The end of a failed assertion: `Failure(fatal) = Message() << ...;` evaluates
// to void, so an ASSERT_ can `return` it from a void function.
class Failure {
 public:
  explicit Failure(bool fatal) : fatal_(fatal) {}
  void operator=(const Message& m) const {
    if (m.started()) std::printf("\n");
    if (fatal_) g_run.fatal = true;
  }

 private:
  bool fatal_;
};

inline bool check_bool(const char* file, int line, const char* macro,
                       const char* expr, bool value, bool expected) {
  if (value == expected) return true;
  fail_here(file, line);
  std::printf("  %s(%s)\n  is %s, expected %s\n", macro, expr,
              value ? "true" : "false", expected ? "true" : "false");
  return false;
}

inline bool report_failure(const char* file, int line, const char* what) {
  fail_here(file, line);
  std::printf("  %s\n", what);
  return false;
}

template <typename A, typename B>
void print_operands(const char* macro, const char* ea, const char* eb,
                    const A& a, const B& b) {
  std::printf("  %s(%s, %s)\n  %s = ", macro, ea, eb, ea);
  print_value(a);
  std::printf("\n  %s = ", eb);
  print_value(b);
  std::printf("\n");
}

enum class Op { eq, ne, lt, le, gt, ge };

template <Op op, typename A, typename B>
bool compare(const A& a, const B& b) {
  if constexpr (op == Op::eq) return a == b;
  if constexpr (op == Op::ne) return a != b;
  if constexpr (op == Op::lt) return a < b;
  if constexpr (op == Op::le) return a <= b;
  if constexpr (op == Op::gt) return a > b;
  if constexpr (op == Op::ge) return a >= b;
}

template <Op op, typename A, typename B>
bool check_cmp(const char* file, int line, const char* macro, const char* ea,
               const char* eb, const A& a, const B& b) {
  if (compare<op>(a, b)) return true;
  fail_here(file, line);
  print_operands(macro, ea, eb, a, b);
  return false;
}

inline bool check_str(const char* file, int line, const char* macro,
                      const char* ea, const char* eb, const char* a,
                      const char* b, bool want_equal) {
  const bool equal =
      (a == nullptr || b == nullptr) ? a == b : std::strcmp(a, b) == 0;
  if (equal == want_equal) return true;
  fail_here(file, line);
  print_operands(macro, ea, eb, a, b);
  return false;
}

inline bool check_near(const char* file, int line, const char* macro,
                       const char* ea, const char* eb, const char* etol,
                       double a, double b, double tol) {
  const double diff = a > b ? a - b : b - a;
  if (diff <= tol) return true;
  fail_here(file, line);
  print_operands(macro, ea, eb, a, b);
  std::printf("  differ by %.17g, more than %s = %.17g\n", diff, etol, tol);
  return false;
}

inline int run_all() {
  int passed = 0;
  int failed = 0;
  for (TestInfo* t = g_run.first; t != nullptr; t = t->next) {
    std::printf("[ RUN      ] %s.%s\n", t->suite, t->name);
    std::fflush(stdout);  // a test that crashes the target still shows its name
    g_run.failed = false;
    g_run.fatal = false;
    t->run();
    if (g_run.failed) {
      ++failed;
      std::printf("[  FAILED  ] %s.%s\n", t->suite, t->name);
    } else {
      ++passed;
      std::printf("[       OK ] %s.%s\n", t->suite, t->name);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}

}  // namespace tern::minitest

inline int tern_minitest_main() { return ::tern::minitest::run_all(); }

// ---- test definitions ----

#define TERN_MT_CLASS_(suite, name) suite##_##name##_Test

#define TERN_MT_TEST_(suite, name, parent)                                     \
  class TERN_MT_CLASS_(suite, name) : public parent {                          \
   public:                                                                     \
    void TestBody() override;                                                  \
    static ::tern::minitest::TestInfo tern_mt_info_;                           \
    static ::tern::minitest::Registrar tern_mt_registrar_;                     \
  };                                                                           \
  ::tern::minitest::TestInfo TERN_MT_CLASS_(suite, name)::tern_mt_info_{       \
      #suite, #name, &::tern::minitest::run_test<TERN_MT_CLASS_(suite, name)>, \
      nullptr};                                                                \
  ::tern::minitest::Registrar TERN_MT_CLASS_(suite, name)::tern_mt_registrar_{ \
      TERN_MT_CLASS_(suite, name)::tern_mt_info_};                             \
  void TERN_MT_CLASS_(suite, name)::TestBody()

#define TEST(suite, name) TERN_MT_TEST_(suite, name, ::testing::Test)
#define TEST_F(fixture, name) TERN_MT_TEST_(fixture, name, fixture)

#define RUN_ALL_TESTS() ::tern::minitest::run_all()

// ---- assertions ----

// `if (ok) ; else [return] Failure(fatal) = Message()`: the failure branch
// takes streamed context, and the switch keeps a user's `if (x) EXPECT_...;
// else ...` intact. `fatal` is the literal 0 (EXPECT_) or 1 (ASSERT_).
#define TERN_MT_ON_FAILURE_0_
#define TERN_MT_ON_FAILURE_1_ return
#define TERN_MT_CHECK_(ok, fatal)                                      \
  switch (0)                                                           \
  case 0:                                                              \
  default:                                                             \
    if (ok)                                                            \
      ;                                                                \
    else                                                               \
      TERN_MT_ON_FAILURE_##fatal##_ ::tern::minitest::Failure(fatal) = \
          ::tern::minitest::Message()

#define TERN_MT_BOOL_(macro, cond, expected, fatal)                    \
  TERN_MT_CHECK_(                                                      \
      ::tern::minitest::check_bool(__FILE__, __LINE__, macro, #cond,   \
                                   static_cast<bool>(cond), expected), \
      fatal)

#define TERN_MT_CMP_(macro, op, a, b, fatal)                             \
  TERN_MT_CHECK_((::tern::minitest::check_cmp<::tern::minitest::Op::op>( \
                     __FILE__, __LINE__, macro, #a, #b, a, b)),          \
                 fatal)

#define TERN_MT_STR_(macro, a, b, want_equal, fatal)                        \
  TERN_MT_CHECK_(::tern::minitest::check_str(__FILE__, __LINE__, macro, #a, \
                                             #b, a, b, want_equal),         \
                 fatal)

#define TERN_MT_NEAR_(macro, a, b, tol, fatal)                               \
  TERN_MT_CHECK_(::tern::minitest::check_near(__FILE__, __LINE__, macro, #a, \
                                              #b, #tol, a, b, tol),          \
                 fatal)

#define EXPECT_TRUE(cond) TERN_MT_BOOL_("EXPECT_TRUE", cond, true, 0)
#define EXPECT_FALSE(cond) TERN_MT_BOOL_("EXPECT_FALSE", cond, false, 0)
#define ASSERT_TRUE(cond) TERN_MT_BOOL_("ASSERT_TRUE", cond, true, 1)
#define ASSERT_FALSE(cond) TERN_MT_BOOL_("ASSERT_FALSE", cond, false, 1)

#define EXPECT_EQ(a, b) TERN_MT_CMP_("EXPECT_EQ", eq, a, b, 0)
#define EXPECT_NE(a, b) TERN_MT_CMP_("EXPECT_NE", ne, a, b, 0)
#define EXPECT_LT(a, b) TERN_MT_CMP_("EXPECT_LT", lt, a, b, 0)
#define EXPECT_LE(a, b) TERN_MT_CMP_("EXPECT_LE", le, a, b, 0)
#define EXPECT_GT(a, b) TERN_MT_CMP_("EXPECT_GT", gt, a, b, 0)
#define EXPECT_GE(a, b) TERN_MT_CMP_("EXPECT_GE", ge, a, b, 0)
#define ASSERT_EQ(a, b) TERN_MT_CMP_("ASSERT_EQ", eq, a, b, 1)
#define ASSERT_NE(a, b) TERN_MT_CMP_("ASSERT_NE", ne, a, b, 1)
#define ASSERT_LT(a, b) TERN_MT_CMP_("ASSERT_LT", lt, a, b, 1)
#define ASSERT_LE(a, b) TERN_MT_CMP_("ASSERT_LE", le, a, b, 1)
#define ASSERT_GT(a, b) TERN_MT_CMP_("ASSERT_GT", gt, a, b, 1)
#define ASSERT_GE(a, b) TERN_MT_CMP_("ASSERT_GE", ge, a, b, 1)

#define EXPECT_STREQ(a, b) TERN_MT_STR_("EXPECT_STREQ", a, b, true, 0)
#define EXPECT_STRNE(a, b) TERN_MT_STR_("EXPECT_STRNE", a, b, false, 0)
#define ASSERT_STREQ(a, b) TERN_MT_STR_("ASSERT_STREQ", a, b, true, 1)
#define ASSERT_STRNE(a, b) TERN_MT_STR_("ASSERT_STRNE", a, b, false, 1)

#define EXPECT_NEAR(a, b, tol) TERN_MT_NEAR_("EXPECT_NEAR", a, b, tol, 0)
#define ASSERT_NEAR(a, b, tol) TERN_MT_NEAR_("ASSERT_NEAR", a, b, tol, 1)

#define ADD_FAILURE() \
  TERN_MT_CHECK_(     \
      ::tern::minitest::report_failure(__FILE__, __LINE__, "Failed"), 0)
#define FAIL()    \
  TERN_MT_CHECK_( \
      ::tern::minitest::report_failure(__FILE__, __LINE__, "Failed"), 1)
#define SUCCEED() TERN_MT_CHECK_(true, 0)

#endif  // TERN_TESTS_SUPPORT_MINITEST_HPP_

// Outside the include guard: a TU that defines TERN_MINITEST_MAIN gets main()
// even if a header it included earlier already pulled minitest.hpp in.
#if defined(TERN_MINITEST_MAIN) && !defined(TERN_MINITEST_MAIN_DEFINED_)
#define TERN_MINITEST_MAIN_DEFINED_
int main() { return tern_minitest_main(); }
#endif
