// Agent: an active object driven by the Runtime. It never blocks and never owns a thread:
// each handler runs on the reactor's turn, receives a Context to act through, and may
// keep a Reply to answer later.
//
//   class Echo : public tern::Agent {
//     void on_request(tern::Context& ctx, tern::Message& m, tern::Reply reply) override {
//       reply.ok(std::move(m));            // exactly one answer, now or later
//     }
//   };
//
// See examples/agents_bus for agents on the bus with supervision.
#pragma once

#include <cstdint>

#include "tern/agents/log.hpp"
#include "tern/agents/message.hpp"
#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/time.hpp"
#include "tern/detail/port_state.hpp"

namespace tern {

class Runtime;
class Context;

// The one answer to one request. Move-only; answers at most once. Destroyed without an
// answer, it answers Errc::no_reply at once, so a requester never waits on a handler
// that forgot. A handler that must wait for something else keeps it and answers later.
class Reply {
 public:
  Reply() = default;
  Reply(Reply&& o) noexcept { take(o); }
  Reply& operator=(Reply&& o) noexcept;
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply();

  // Answers with `msg` (kind reply). Returns ok; late if the requester's request already
  // ended (timeout, cancel, the responder's stop) or another Reply to it (reply_to())
  // answered first: the answer is dropped and counted;
  // closed if this Reply has already answered or is empty. (A Reply destroyed unsent
  // after its request ended answers nothing and counts nothing.)
  // An answer accepted here ends the request with it at the requester's next dispatch
  // pass, even if the deadline passes before that: it came in time. The requester gets
  // msg's value, payload and type, with sender, receiver, correlation and kind set by
  // the runtime; a reply's topic and priority are not kept.
  Errc ok(Message msg = Message{});
  // Answers with error `e` (not ok). Same returns as ok(); invalid_argument for Errc::ok.
  Errc fail(Errc e);

  // True while an answer is still owed.
  bool pending() const { return runtime_ != nullptr; }
  RequestId id() const { return id_; }
  AgentId requester() const { return requester_; }

 private:
  friend class Runtime;
  friend class Context;
  Reply(Runtime* rt, RequestId id, AgentId requester, AgentId responder);
  void take(Reply& o);
  void link();
  void unlink();
  Errc answer(Message msg, bool explicit_answer);

  // Live Replies are listed in their Runtime, which empties them when it is destroyed
  // (so a Reply kept past the Runtime answers nothing instead of touching freed memory).
  Runtime* runtime_ = nullptr;
  Reply* prev_ = nullptr;
  Reply* next_ = nullptr;
  RequestId id_;
  AgentId requester_ = kNoAgent;
  AgentId responder_ = kNoAgent;
};

class Agent {
 public:
  virtual ~Agent() = default;
  // Runs when the agent starts and after each restart.
  virtual void on_start(Context&) {}
  // An event (send or publish) from the mailbox.
  virtual void on_message(Context&, Message&) {}
  // A request: answer through `reply` now, or keep it and answer later. The default
  // answers Errc::unsupported.
  virtual void on_request(Context&, Message&, Reply reply) { reply.fail(Errc::unsupported); }
  // Runs when the agent stops for any reason (Context::stop_reason()), after its
  // requests, timers and mailbox were cancelled.
  virtual void on_stop(Context&) {}
  // Before a restart: put the object back into its initial state.
  virtual void reset() {}
};

enum class Restart : std::uint8_t {
  never,       // stays stopped
  on_failure,  // restarted after fail(), within the restart intensity
  always,      // also restarted after stop_self()
};

using GroupId = std::uint8_t;
inline constexpr GroupId kRootGroup = 0;

struct AgentOptions {
  const char* name = "agent";
  std::uint16_t mailbox = 16;          // messages waiting, across all priorities
  Restart restart = Restart::on_failure;
  // The most max_restarts can be: 8 on Linux, 4 on Cortex-M.
  static constexpr std::uint8_t kMaxRestarts = detail::kPortMaxRestarts;
  std::uint8_t max_restarts = 3;       // at most this many restarts (0..kMaxRestarts) ...
  Duration restart_window = seconds(5);  // ... within this window, else escalate
  GroupId group = kRootGroup;          // who stops together on escalation
};

struct RequestOptions {
  Duration timeout = seconds(10);
  std::uint8_t priority = 0;
};

struct AgentCounters {
  Count messages_in = 0;     // events and requests handled
  Count messages_out = 0;    // sends, publishes and requests made
  Count requests_ok = 0;     // our requests answered with a value
  Count requests_failed = 0; // ... answered with an error (not timeout)
  Count requests_timed_out = 0;
  Count late_replies = 0;    // answers we gave after the requester gave up
  Count mailbox_rejected = 0;  // messages refused because our mailbox was full
  Count restarts = 0;
  std::size_t mailbox_high_water = 0;
};

// What a request's reply and an agent timer run. Their captures live in the runtime's
// tables: up to 4 pointers on Linux, one pointer on Cortex-M (detail::
// kPortCallbackCaptureBytes), where a wider capture is a compile error.
using ReplyCallback = InplaceFunction<void(Result<Message>), detail::kPortCallbackCaptureBytes,
                                      detail::kPortCallbackAlign>;
using AgentTimerCallback =
    InplaceFunction<void(Errc), detail::kPortCallbackCaptureBytes, detail::kPortCallbackAlign>;

struct AgentTimerId {
  std::uint32_t index = 0xFFFFFFFFu;
  std::uint32_t generation = 0;
};

struct PublishResult {
  Errc status = Errc::ok;       // not_found (unknown topic), shutdown, invalid_argument
                                // (publish_from() with a `from` neither kNoAgent nor
                                // below Runtime::kMaxAgents); ok otherwise
  std::uint16_t delivered = 0;  // mailboxes that took the message
  std::uint16_t dropped = 0;    // subscribers whose mailbox was full (each counted)
};

// What a handler acts through. Valid only during the call it was passed to.
class Context {
 public:
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  AgentId self() const { return self_; }
  Runtime& runtime() { return runtime_; }
  Instant now() const;

  // Queues `msg` (an event) in `to`'s mailbox. Its topic is kept (a forwarded event
  // names the topic it came on). Errors: full (its mailbox), closed (not running),
  // not_found, shutdown, invalid_argument (msg.topic is neither kNoTopic nor a topic).
  Errc send(AgentId to, Message msg);
  // Delivers `msg` to every subscriber of `topic` on a later turn.
  PublishResult publish(TopicId topic, Message msg);
  // Asks `to`; on_reply runs exactly once (reply, error, timeout or cancelled) if this
  // returns ok, never otherwise. Errors: full (pending table or its mailbox),
  // closed (`to` is not running, or this agent is stopping: in on_stop, in a
  // cancellation, after stop_self()), not_found, shutdown, invalid_argument (no
  // on_reply, msg.topic is neither kNoTopic nor a topic, or on Cortex-M a timeout
  // the wheel does not reach: about 24.8 days at 1 ms, see TimerWheel::reaches()).
  Result<RequestId> request(AgentId to, Message msg, RequestOptions options, ReplyCallback on_reply);
  // Runs cb(Errc::ok) after `delay`, or cb(Errc::cancelled) if the agent stops first.
  // Errors: full (max_timers pending; counted), closed (not running), invalid_argument
  // (empty cb, or on Cortex-M a delay the wheel does not reach: about 24.8 days).
  Result<AgentTimerId> after(Duration delay, AgentTimerCallback cb);
  // Cancels a pending timer without running it; false if it is not pending.
  bool cancel(AgentTimerId id);
  // Selective receive: removes the first queued message matching pred (highest
  // priority first). pred sees each message in turn and must not take from or stop
  // this agent's mailbox itself. Errors: not_found.
  template <typename Pred>
  Result<Message> take_first(Pred&& pred);
  // The Reply for a request taken with take_first() (an empty Reply for other kinds).
  Reply reply_to(const Message& request);

  // Stops this agent after the current handler returns (restarted only if
  // Restart::always).
  void stop_self();
  // Reports failure: the agent stops after the current handler and its supervisor
  // restarts it or escalates.
  void fail(Errc reason);
  // Why the agent is stopping (inside on_stop); ok otherwise.
  Errc stop_reason() const;
  AgentCounters& counters();
  // This agent's logger: lines carry its id and name (see log.hpp).
  Logger log();

 private:
  friend class Runtime;
  Context(Runtime& rt, AgentId self) : runtime_(rt), self_(self) {}
  Runtime& runtime_;
  AgentId self_;
};

}  // namespace tern
