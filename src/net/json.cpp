#include "tern/net/json.hpp"

#include <cjson/cJSON.h>

#include <cstring>
#include <new>

namespace tern {

namespace {
JsonPool* g_pool = nullptr;
constexpr std::uint32_t kSizes[6] = {32, 64, 128, 256, 1024, 4096};
// Each block starts with its class index, padded to keep the rest aligned.
constexpr std::size_t kHeader = alignof(std::max_align_t);
}  // namespace

JsonPool* JsonPool::current() { return g_pool; }

JsonPool::JsonPool(const JsonPoolConfig& config) {
  if (g_pool) panic("JsonPool: only one may exist at a time (cJSON's hooks are global)");
  std::size_t total = 0;
  for (int i = 0; i < kClasses; ++i) {
    // A 32-bit size_t wraps at 4 GiB: a wrapped total would allocate a small area and
    // then carve the configured (far larger) number of blocks past its end.
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(std::size_t{config.blocks[i]}, std::size_t{kSizes[i]}, &bytes) ||
        __builtin_add_overflow(total, bytes, &total)) {
      panic("JsonPool: the configured blocks exceed the address space");
    }
  }
  memory_ = static_cast<unsigned char*>(::operator new(total ? total : 1, std::align_val_t(kHeader), std::nothrow));
  if (!memory_) panic("JsonPool: out of memory at start-up");
  unsigned char* p = memory_;
  for (int i = 0; i < kClasses; ++i) {
    classes_[i].size = kSizes[i];
    for (std::uint32_t j = 0; j < config.blocks[i]; ++j, p += kSizes[i]) {
      *reinterpret_cast<void**>(p + kHeader) = classes_[i].free;
      p[0] = static_cast<unsigned char>(i);
      classes_[i].free = p;
    }
  }
  g_pool = this;
  cJSON_Hooks hooks{&JsonPool::allocate, &JsonPool::release};
  cJSON_InitHooks(&hooks);
}

JsonPool::~JsonPool() {
  if (stats_.in_use != 0) panic("JsonPool destroyed with cJSON documents alive");
  cJSON_InitHooks(nullptr);
  g_pool = nullptr;
  ::operator delete(memory_, std::align_val_t(kHeader));
}

void* JsonPool::allocate(std::size_t n) {
  JsonPool* pool = g_pool;
  if (!pool) return nullptr;
  for (int i = 0; i < kClasses; ++i) {
    Class& c = pool->classes_[i];
    if (n > c.size - kHeader || !c.free) continue;  // n + kHeader could wrap around
    auto* block = static_cast<unsigned char*>(c.free);
    c.free = *reinterpret_cast<void**>(block + kHeader);
    block[0] = static_cast<unsigned char>(i);
    ++pool->stats_.allocations;
    if (++pool->stats_.in_use > pool->stats_.high_water) pool->stats_.high_water = pool->stats_.in_use;
    return block + kHeader;
  }
  ++pool->stats_.failures;
  return nullptr;
}

void JsonPool::release(void* p) {
  if (!p || !g_pool) return;
  unsigned char* block = static_cast<unsigned char*>(p) - kHeader;
  Class& c = g_pool->classes_[block[0]];
  *reinterpret_cast<void**>(p) = c.free;
  c.free = block;
  --g_pool->stats_.in_use;
}

JsonDoc& JsonDoc::operator=(JsonDoc&& o) noexcept {
  if (this != &o) {
    if (root_) cJSON_Delete(root_);
    root_ = o.root_;
    o.root_ = nullptr;
  }
  return *this;
}

JsonDoc::~JsonDoc() {
  if (root_) cJSON_Delete(root_);
}

Result<JsonDoc> json_parse(std::string_view text) {
  std::uint64_t failures = g_pool ? g_pool->stats().failures : 0;
  const char* end = nullptr;
  cJSON* root = cJSON_ParseWithLengthOpts(text.data(), text.size(), &end, false);
  if (!root) {
    // cJSON reports both malformed text and a failed allocation as NULL.
    bool out_of_memory = g_pool && g_pool->stats().failures != failures;
    return out_of_memory ? Errc::full : Errc::protocol;
  }
  JsonDoc doc(root);
  // cJSON stops after the first value; anything after it but whitespace is malformed
  // (`{"a":1} {"b":2}`, or a NUL and more bytes), not a document to half-accept.
  for (const char* p = end; p < text.data() + text.size(); ++p) {
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') return Errc::protocol;
  }
  return doc;
}

Result<std::size_t> json_print(const cJSON* root, char* buf, std::size_t cap) {
  if (!root) return Errc::invalid_argument;
  if (cap > 0x7FFFFFFF) cap = 0x7FFFFFFF;
  if (!cJSON_PrintPreallocated(const_cast<cJSON*>(root), buf, static_cast<int>(cap), 0)) {
    return Errc::too_large;
  }
  return std::strlen(buf);
}

}  // namespace tern
