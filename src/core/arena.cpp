#include "tern/core/arena.hpp"

#include <new>

#include "tern/detail/startup_array.hpp"

namespace tern::detail {

void startup_finish(Arena* arena) {
  if (arena) (void)arena->take(0, Arena::kAlign);  // a short arena failed already
}

namespace {

#ifdef TERN_NO_HEAP
// Built with -Dheap=false: nothing here reaches operator new (startup_take() refuses a
// null arena before it could get here).
void* heap_take(std::size_t, std::size_t) { return nullptr; }
#else
void* heap_take(std::size_t bytes, std::size_t align) {
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) return ::operator new(bytes, std::align_val_t(align), std::nothrow);
  return ::operator new(bytes, std::nothrow);
}
#endif

}  // namespace

void* startup_take(Arena* arena, std::size_t bytes, std::size_t align, const char* short_of) {
#ifdef TERN_NO_HEAP
  if (!arena) panic("tern built without a heap (-Dheap=false): give the config an Arena");
#endif
  if (bytes == 0) return nullptr;
  void* p = arena ? arena->take(bytes, align) : heap_take(bytes, align);
  if (!p) panic(short_of);
  return p;
}

void startup_release(void* p, std::size_t align) {
#ifdef TERN_NO_HEAP
  (void)p;
  (void)align;
#else
  if (!p) return;
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    ::operator delete(p, std::align_val_t(align));
  } else {
    ::operator delete(p);
  }
#endif
}

}  // namespace tern::detail
