// Json: cJSON on a fixed memory pool. A JsonPool installs itself as cJSON's allocator
// (cJSON_InitHooks), so parsing and building documents never touches the heap; printing
// goes into a caller-owned buffer (cJSON_PrintPreallocated).
//
//   tern::JsonPool pool(tern::JsonPoolConfig{});          // once, at start-up
//   tern::Result<tern::JsonDoc> doc = tern::json_parse(body);
//   if (!doc) return doc.error();                          // protocol, or full
//   const cJSON* data = cJSON_GetObjectItemCaseSensitive(doc->get(), "data");
//   char out[512];
//   tern::Result<std::size_t> n = tern::json_print(doc->get(), out, sizeof out);
//
// cJSON's hooks are process-wide: one JsonPool at a time (a second is a contract
// violation), used from one thread. See examples/embed_client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tern/core/errc.hpp"

struct cJSON;

namespace tern {

struct JsonPoolConfig {
  // Blocks per size class: 32, 64, 128, 256, 1024 and 4096 bytes (minus a small header).
  std::uint32_t blocks[6] = {256, 256, 512, 64, 16, 4};  // 136 KiB; a cJSON node takes a 128
                                                           // block on 64-bit hosts, 64 on 32-bit
};

struct JsonPoolStats {
  std::size_t in_use = 0;
  std::size_t high_water = 0;
  std::uint64_t allocations = 0;
  std::uint64_t failures = 0;  // requests no free block could satisfy (cJSON sees NULL)
};

class JsonPool {
 public:
  // Allocates every block once and installs the pool as cJSON's allocator.
  explicit JsonPool(const JsonPoolConfig& config = JsonPoolConfig{});
  // Restores cJSON's default allocator. Contract violation if blocks are still in use.
  ~JsonPool();
  JsonPool(const JsonPool&) = delete;
  JsonPool& operator=(const JsonPool&) = delete;

  const JsonPoolStats& stats() const { return stats_; }
  static JsonPool* current();

 private:
  static void* allocate(std::size_t n);
  static void release(void* p);

  struct Class {
    std::uint32_t size = 0;
    void* free = nullptr;
  };
  static constexpr int kClasses = 6;
  Class classes_[kClasses];
  unsigned char* memory_ = nullptr;
  JsonPoolStats stats_;
};

// Owns a parsed or built document; deletes it (back into the pool) when destroyed.
class JsonDoc {
 public:
  JsonDoc() = default;
  explicit JsonDoc(cJSON* root) : root_(root) {}
  JsonDoc(JsonDoc&& o) noexcept : root_(o.root_) { o.root_ = nullptr; }
  JsonDoc& operator=(JsonDoc&& o) noexcept;
  JsonDoc(const JsonDoc&) = delete;
  JsonDoc& operator=(const JsonDoc&) = delete;
  ~JsonDoc();
  cJSON* get() const { return root_; }
  cJSON* release() {
    cJSON* r = root_;
    root_ = nullptr;
    return r;
  }

 private:
  cJSON* root_ = nullptr;
};

// Parses `text` (not necessarily NUL-terminated): one JSON value, with only whitespace
// around it. Errors: protocol (malformed JSON, or bytes after the value), full (the pool
// ran out while parsing; nothing is leaked).
Result<JsonDoc> json_parse(std::string_view text);

// Prints `root` compactly into `buf`. Returns the length (excluding the NUL written
// after it). Errors: too_large (does not fit; cJSON needs a few spare bytes),
// invalid_argument (null root).
Result<std::size_t> json_print(const cJSON* root, char* buf, std::size_t cap);

}  // namespace tern
