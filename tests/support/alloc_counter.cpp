#include "alloc_counter.hpp"

#include <cstdlib>

namespace {
volatile std::size_t g_allocations = 0;
}

std::size_t tern_test::allocations() { return g_allocations; }

#if defined(__SANITIZE_ADDRESS__)
// ASan owns malloc; it offers hooks instead of replacement (declared here because
// GCC does not install compiler-rt's <sanitizer/allocator_interface.h>).
extern "C" int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void*, std::size_t), void (*free_hook)(const volatile void*));

namespace {
void on_malloc(const volatile void*, std::size_t) { g_allocations = g_allocations + 1; }
void on_free(const volatile void*) {}
const int g_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace
#else
// glibc exports its allocator under __libc_* names, so we can interpose the public ones.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) {
  g_allocations = g_allocations + 1;
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t s) {
  g_allocations = g_allocations + 1;
  return __libc_calloc(n, s);
}
void* realloc(void* p, std::size_t n) {
  g_allocations = g_allocations + 1;
  return __libc_realloc(p, n);
}
void* memalign(std::size_t a, std::size_t n) {
  g_allocations = g_allocations + 1;
  return __libc_memalign(a, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) { return memalign(a, n); }
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  void* p = memalign(a, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
void free(void* p) { __libc_free(p); }
}
#endif
