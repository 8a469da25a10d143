// Agent logging: each agent logs through its Context, the runtime adds the time, the
// agent's id and name, and hands the finished line to one sink set in RuntimeConfig.
// Lines are formatted into a fixed buffer on the stack (never the heap); a longer line
// is cut at Logger::kLineMax and marked truncated. With no sink, or below the level,
// nothing is formatted.
//
//   tern::RuntimeConfig cfg;
//   cfg.log_sink = &tern::stdio_log_sink;   // or your UART writer
//   cfg.log_level = tern::LogLevel::info;
//   ...
//   void on_message(tern::Context& ctx, tern::Message& m) override {
//     ctx.log().info("reading %ld", static_cast<long>(m.value));
//   }
//
// The runtime logs its own supervision events through the same sink: a failure that
// restarts an agent (warn) and an escalation that stops a group (error). A line logged
// while a request is handled (on_request) or answered (its reply callback, whatever the
// outcome) carries that request's id, so one request can be followed across agents.
// A sink must not log: a line logged from inside the sink (directly, or through
// runtime work the sink sets off) is dropped and counted in RuntimeStats::log_reentered,
// so a sink that logs by mistake costs lines, not the stack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tern/agents/message.hpp"
#include "tern/core/time.hpp"

namespace tern {

class Runtime;

enum class LogLevel : std::uint8_t { debug, info, warn, error, off };

// "debug", "info", "warn", "error", "off".
const char* log_level_name(LogLevel level);

struct LogRecord {
  Instant at;                 // the reactor's now()
  LogLevel level;
  AgentId agent;              // kNoAgent for lines from outside any agent
  const char* agent_name;     // "-" for kNoAgent
  RequestId correlation;      // the request being handled or answered, if any
  std::string_view text;      // without a trailing newline; valid during the call only
  bool truncated;             // the line was longer than Logger::kLineMax - 1
};

// Receives every line at or above RuntimeConfig::log_level. Runs on the loop thread,
// inside the call that logged; it must not block for long.
using LogSink = void (*)(void* context, const LogRecord& record);

// A ready-made sink: "  12.345678 W sensor: text", with " [req 3.1]" (slot.generation)
// when the line belongs to a request, to a stdio FILE* (context), or to stderr when
// context is null. On the Cortex-M port stdio goes through semihosting.
void stdio_log_sink(void* file, const LogRecord& record);

// What Context::log() and Runtime::logger() return: a small value naming the runtime and
// the agent the lines are from.
class Logger {
 public:
  static constexpr std::size_t kLineMax = 128;  // bytes per line, with the terminator

  // True if a line at `level` would reach the sink (use it to skip costly arguments).
  bool enabled(LogLevel level) const;

  void log(LogLevel level, const char* format, ...) __attribute__((format(printf, 3, 4)));
  void debug(const char* format, ...) __attribute__((format(printf, 2, 3)));
  void info(const char* format, ...) __attribute__((format(printf, 2, 3)));
  void warn(const char* format, ...) __attribute__((format(printf, 2, 3)));
  void error(const char* format, ...) __attribute__((format(printf, 2, 3)));

 private:
  friend class Runtime;
  friend class Context;
  Logger(Runtime& rt, AgentId agent) : runtime_(&rt), agent_(agent) {}
  void vlog(LogLevel level, const char* format, __builtin_va_list args);
  Runtime* runtime_;
  AgentId agent_;
};

}  // namespace tern
