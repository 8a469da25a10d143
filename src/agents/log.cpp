// Logger's printf-style front end. Kept out of runtime.cpp so that a firmware that never
// calls it does not link vsnprintf (the linker drops this object's sections).
#include "tern/agents/log.hpp"

#include <cstdarg>
#include <cstdio>

#include "tern/agents/runtime.hpp"

namespace tern {

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    case LogLevel::off: return "off";
  }
  return "?";
}

void stdio_log_sink(void* file, const LogRecord& r) {
  static constexpr char kLetter[] = {'D', 'I', 'W', 'E', '-'};
  const std::int64_t us = r.at.us;
  char req[32] = "";
  if (r.correlation) {
    std::snprintf(req, sizeof req, " [req %lu.%lu]", static_cast<unsigned long>(r.correlation.slot()),
                  static_cast<unsigned long>(r.correlation.generation()));
  }
  std::fprintf(file ? static_cast<std::FILE*>(file) : stderr, "%5lld.%06lld %c %s%s: %.*s%s\n",
               static_cast<long long>(us / 1000000), static_cast<long long>(us % 1000000),
               kLetter[static_cast<unsigned>(r.level) % 5], r.agent_name, req,
               static_cast<int>(r.text.size()), r.text.data(), r.truncated ? "..." : "");
}

bool Logger::enabled(LogLevel level) const { return runtime_->log_enabled(level); }

void Logger::vlog(LogLevel level, const char* format, va_list args) {
  if (!runtime_->log_enabled(level)) return;
  char line[kLineMax];
  int n = std::vsnprintf(line, sizeof line, format, args);
  if (n < 0) {  // an encoding error: say so rather than drop the line
    n = std::snprintf(line, sizeof line, "(unformattable log line: %s)", format);
    if (n < 0) n = 0;
  }
  const bool truncated = static_cast<std::size_t>(n) >= sizeof line;
  const std::size_t len = truncated ? sizeof line - 1 : static_cast<std::size_t>(n);
  runtime_->emit_log(level, agent_, std::string_view(line, len), truncated);
}

void Logger::log(LogLevel level, const char* format, ...) {
  va_list args;
  va_start(args, format);
  vlog(level, format, args);
  va_end(args);
}

void Logger::debug(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vlog(LogLevel::debug, format, args);
  va_end(args);
}

void Logger::info(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vlog(LogLevel::info, format, args);
  va_end(args);
}

void Logger::warn(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vlog(LogLevel::warn, format, args);
  va_end(args);
}

void Logger::error(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vlog(LogLevel::error, format, args);
  va_end(args);
}

}  // namespace tern
