#include "tern/core/arena.hpp"

#include <new>

#include "tern/detail/startup_array.hpp"

namespace tern::detail {

void startup_finish(Arena* arena) {
  if (arena) (void)arena->take(0, Arena::kAlign);  // a short arena failed already
}

#ifdef TERN_NO_HEAP

// Built with -Dheap=false: nothing here reaches operator new.
void* startup_take(Arena* arena, std::size_t bytes, std::size_t align, const char* short_of) {
  if (!arena) panic("tern built without a heap (-Dheap=false): give the config an Arena");
  if (bytes == 0) return nullptr;
  void* p = arena->take(bytes, align);
  if (!p) panic(short_of);
  return p;
}

void startup_release(void*, std::size_t) {}

#else

void* startup_take(Arena* arena, std::size_t bytes, std::size_t align, const char* short_of) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  if (arena) {
    p = arena->take(bytes, align);
  } else if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    p = ::operator new(bytes, std::align_val_t(align), std::nothrow);
  } else {
    p = ::operator new(bytes, std::nothrow);
  }
  if (!p) panic(short_of);
  return p;
}

void startup_release(void* p, std::size_t align) {
  if (!p) return;
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    ::operator delete(p, std::align_val_t(align));
  } else {
    ::operator delete(p);
  }
}

#endif  // TERN_NO_HEAP

}  // namespace tern::detail
