// Runtime: a fixed table of agents on one Reactor — mailboxes with priorities, an event
// bus with wildcard subscribers, request/reply over a PendingTable with deadlines on the
// reactor's wheel, one-for-one supervision with restart intensity and escalation, and a
// shutdown that leaves every table empty.
//
//   tern::Reactor reactor;
//   tern::Runtime rt(reactor, tern::RuntimeConfig{});
//   Sensor sensor; Logger logger;
//   auto s = rt.spawn(sensor, {.name = "sensor", .mailbox = 8});
//   auto l = rt.spawn(logger, {.name = "logger"});
//   (void)rt.subscribe(*l, "sensor/*");
//   reactor.run();
//   rt.shutdown(tern::seconds(1));
//
// Every capacity comes from RuntimeConfig, allocated once in the constructor.
// See examples/agents_bus.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "tern/agents/agent.hpp"
#include "tern/agents/log.hpp"
#include "tern/agents/message.hpp"
#include "tern/agents/payload.hpp"
#include "tern/core/count.hpp"
#include "tern/core/pending_table.hpp"
#include "tern/core/ring.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern/detail/scoped_value.hpp"
#include "tern/detail/startup_array.hpp"
#include "tern/reactor/reactor.hpp"

namespace tern {

struct RuntimeConfig {
  std::size_t max_agents = 16;      // at most 64
  std::size_t max_messages = 256;   // queued messages across all mailboxes (the sum of
                                    // mailbox capacities must fit; below 65535)
  std::size_t max_pending = 64;     // requests in flight (below 65535)
  std::size_t max_timers = 64;      // Context::after() timers
  std::size_t max_topics = 32;      // at most 16383
  std::size_t max_wildcards = 8;    // "prefix*" subscriptions
  std::size_t dispatch_budget = 8;  // messages per agent per turn (fairness)
  PayloadConfig payloads;
  // Where Context::log() lines and the runtime's supervision events go (see log.hpp).
  // No sink: nothing is formatted or written.
  LogSink log_sink = nullptr;
  void* log_context = nullptr;
  LogLevel log_level = LogLevel::info;
  // When set, every table above (payload blocks included) comes from this arena instead
  // of the heap; it must hold Runtime::arena_bytes(config) more bytes (else a start-up
  // panic) and outlive the Runtime.
  Arena* arena = nullptr;
};

struct RuntimeStats {
  Count sent = 0;
  Count published = 0;
  Count delivered = 0;          // handler calls (events + requests)
  Count dropped = 0;            // refused: mailbox full (every one counted)
  Count replies_late = 0;       // answers after the request ended
  Count restarts = 0;
  Count escalations = 0;
  Count flushed = 0;            // queued events discarded when an agent stopped
  Count publish_refused = 0;    // publish() to an unknown topic or during shutdown
  Count log_lines = 0;          // lines handed to the log sink
  Count log_truncated = 0;      // ... of them cut at Logger::kLineMax
  Count log_reentered = 0;      // lines logged from inside the log sink: dropped
  Count refused_full = 0;       // spawn(), topic(), a "prefix*" subscribe() and
                                        // Context::after() refused: their table was full
};

enum class AgentState : std::uint8_t { unused, running, stopped };

class Runtime {
 public:
  using EscalationHandler = InplaceFunction<void(GroupId, AgentId, Errc), 2 * sizeof(void*)>;
  static constexpr std::size_t kMaxAgents = 64;
  static constexpr std::size_t kMaxTopics = 16383;
  static constexpr std::size_t kTopicNameMax = detail::kPortTopicNameMax;  // 15 on Cortex-M

  Runtime(Reactor& reactor, const RuntimeConfig& config = RuntimeConfig{});
  // Exactly what a Runtime with `config` takes from RuntimeConfig::arena.
  static constexpr std::size_t arena_bytes(const RuntimeConfig& config);
  // Shuts down (no grace) if shutdown() was not called.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Adds `agent` and runs its on_start now. The object must outlive the runtime.
  // Errors: full (no agent slot, or not enough message nodes for the mailbox),
  // invalid_argument (mailbox 0, max_restarts over AgentOptions::kMaxRestarts, or a
  // restart_window not above zero),
  // closed (its group escalated and stays stopped),
  // shutdown.
  Result<AgentId> spawn(Agent& agent, const AgentOptions& options = AgentOptions{});

  // The same as Context's, for code outside agents (sender kNoAgent).
  Errc send(AgentId to, Message msg) { return send_from(kNoAgent, to, std::move(msg)); }
  PublishResult publish(TopicId topic, Message msg) {
    return publish_from(kNoAgent, topic, std::move(msg));
  }
  Result<RequestId> request(AgentId to, Message msg, RequestOptions options, ReplyCallback on_reply) {
    return request_from(kNoAgent, to, std::move(msg), options, std::move(on_reply));
  }

  // The same again, acting as agent `from`: for an agent's own code that runs outside
  // a handler (a Retrier attempt, a Batcher flush, a Reactor timer) so that what it
  // starts is owned by, counted for, and cancelled with that agent. A `from` that is
  // neither kNoAgent nor below kMaxAgents is refused: invalid_argument.
  Errc send_from(AgentId from, AgentId to, Message msg);
  PublishResult publish_from(AgentId from, TopicId topic, Message msg) {
    const std::uint32_t r = publish_packed(from, topic, std::move(msg));
    return PublishResult{static_cast<Errc>(r & 0xFFu), static_cast<std::uint16_t>((r >> 8) & 0xFFFu),
                         static_cast<std::uint16_t>(r >> 20)};
  }
  Result<RequestId> request_from(AgentId from, AgentId to, Message msg, RequestOptions options,
                                 ReplyCallback on_reply);

  // Logs as agent `a` (kNoAgent: as the application) from code outside a handler.
  Logger logger(AgentId a = kNoAgent) { return Logger(*this, a); }
  bool log_enabled(LogLevel level) const {
    return config_.log_sink != nullptr && level >= config_.log_level && level != LogLevel::off;
  }
  // Hands one finished line to the sink (Logger's back end; `text` has no newline).
  void emit_log(LogLevel level, AgentId agent, std::string_view text, bool truncated);

  // Interns a topic name (<= 31 chars). Same name, same id.
  // Errors: full (max_topics), too_large (long name), invalid_argument (empty).
  Result<TopicId> topic(const char* name);
  // Subscribes `agent` to one topic. Errors: not_found.
  Errc subscribe(AgentId agent, TopicId topic);
  // Subscribes to every topic whose name matches `pattern`: an exact name, "prefix*",
  // or "*"; topics created later are matched too. Errors: full, too_large, not_found.
  Errc subscribe(AgentId agent, const char* pattern);
  Errc unsubscribe(AgentId agent, TopicId topic);

  // Stops `agent` for good, whatever its Restart (an agent that failed and waits for
  // its restart is not restarted). Its requests, timers and queued messages are
  // cancelled and its on_stop runs before this returns — or, from inside its own
  // handler, right after that handler returns. Errors: not_found, closed (already
  // stopped).
  Errc stop(AgentId agent, Errc reason = Errc::ok);

  // Refuses new work (send, publish, request: Errc::shutdown), lets queued work and
  // requests in flight finish for up to `grace` (only when called outside the
  // reactor's callbacks: inside one, Reactor::in_turn(), there is no grace), then
  // stops every agent in reverse start order. A request already answered ends with
  // its answer; the rest end with cancelled. Afterwards every table reports zero in use.
  void shutdown(Duration grace = Duration::zero());
  bool shut_down() const { return shut_down_; }

  // Called when an agent exceeds its restart intensity: its group has been stopped
  // (a member inside its own handler stops when that handler returns) and none of
  // its members is restarted.
  // The default handler stops the reactor when the root group escalates.
  void set_escalation_handler(EscalationHandler h) { on_escalate_ = std::move(h); }
  // Why a group stopped (ok while it runs).
  Errc group_stop_reason(GroupId g) const;

  AgentState state(AgentId a) const;
  const char* name(AgentId a) const;
  const AgentCounters* counters(AgentId a) const;
  std::size_t mailbox_size(AgentId a) const;
  const RuntimeStats& stats() const { return stats_; }
  const PendingStats& pending_stats() const { return pending_.stats(); }
  std::size_t pending_in_use() const { return pending_.in_use(); }
  std::size_t timers_in_use() const { return timers_in_use_; }
  std::size_t messages_in_use() const { return nodes_in_use_; }
  PayloadPool& payloads() { return payloads_; }
  Reactor& reactor() { return reactor_; }
  std::size_t agent_count() const { return agent_count_; }

 private:
  // publish_from's work. Returns the PublishResult packed in an integer (status in bits
  // 0-7, delivered in 8-19, dropped in 20-31): GCC returns the 6-byte struct through a
  // stack slot written piecewise, a store-forwarding stall that cost ~5 ns per publish.
  std::uint32_t publish_packed(AgentId from, TopicId topic, Message&& msg);
  friend class Context;
  friend class Reply;
  using NodeIndex = std::uint16_t;
  static constexpr NodeIndex kNil = 0xFFFF;
  // How an agent came to stop, which decides whether it is restarted (see Restart):
  // stop() from outside or from another agent, stop_self(), or fail().
  enum class StopKind : std::uint8_t { external, self, failure };
  // A slot holds the requester's callback itself; the runtime's bookkeeping around it
  // runs in run_reply, the table's runner.
  using Pending = PendingTableBase<Message, detail::kPortCallbackCaptureBytes,
                                   detail::kPortCallbackAlign>;
  static_assert(std::is_same_v<Pending::Callback, ReplyCallback>);

  // A queued message, packed: 24 bytes on Cortex-M (a 32-bit value), 28 on other 32-bit
  // targets and 32 on 64-bit ones, where a Message is 40. Not kept: the receiver (the
  // mailbox's agent) and the priority (the level whose list holds the node). The value
  // is held in 32-bit words, so the node is 4-aligned on 32-bit targets; the
  // correlation as its slot (below 65 535) and generation; the topic (below kMaxTopics)
  // shares 16 bits with the kind; the sender (below kMaxAgents) takes one byte.
  // Message::value in 32-bit words (one on Cortex-M, two elsewhere), so that a node and
  // a waiting answer are 4-aligned on 32-bit targets.
  struct ValueWords {
    std::uint32_t words[sizeof(MessageValue) / 4];
    static ValueWords of(MessageValue v) {
      ValueWords w;
      std::memcpy(w.words, &v, sizeof v);
      return w;
    }
    MessageValue get() const {
      MessageValue v;
      std::memcpy(&v, words, sizeof v);
      return v;
    }
  };
  struct Node {
    Payload payload;  // empty while the node is free
    ValueWords value = {};
    std::uint32_t generation = 0;  // RequestId::generation(): 0 but for requests
    std::uint32_t type = 0;
    std::uint16_t slot = 0;        // RequestId::slot()
    std::uint16_t topic_kind = 0;  // TopicId in bits 0-13 (kNoTopic as kNodeNoTopic),
                                   // MessageKind in bits 14-15
    std::uint8_t sender = 0;       // AgentId, kNoAgent as 0xFF
    Errc status = Errc::ok;
    NodeIndex next = kNil;
  };
  static constexpr std::uint16_t kNodeNoTopic = 0x3FFF;
  static_assert(static_cast<unsigned>(MessageKind::error) < 4 && kMaxTopics <= kNodeNoTopic,
                "Node::topic_kind packs a topic in 14 bits and the kind in 2");
  static_assert(kMaxAgents < 0xFF, "Node::sender holds an agent in one byte");
  // An agent in one byte (Node::sender, RequestSide::agent): kNoAgent (0xFFFF) keeps its
  // low byte, 0xFF; every other agent is below 0xFF.
  static std::uint8_t agent_byte(AgentId a) { return static_cast<std::uint8_t>(a); }
  static AgentId agent_of(std::uint8_t b) { return b == 0xFF ? kNoAgent : AgentId{b}; }
  struct Detached {  // a message unlinked from its mailbox: its node and its level
    NodeIndex node;
    std::uint8_t level;
  };
  struct Mailbox {
    NodeIndex head[kPriorityLevels];
    NodeIndex tail[kPriorityLevels];
    std::uint16_t count = 0;
    std::uint16_t capacity = 0;
    std::uint8_t levels = 0;  // bit l set while head[l] != kNil
  };
  // Largest alignment first; what it keeps of its AgentOptions is spread among the rest.
  struct AgentSlot {
    Agent* agent = nullptr;
    const char* name = nullptr;
    Duration restart_window;
    Instant restart_times[AgentOptions::kMaxRestarts];  // recent restarts, a ring
    AgentCounters counters;
    Mailbox mailbox;
    AgentState state = AgentState::unused;
    bool group_stopped = false;  // its group escalated: it stays stopped
    Errc group_reason = Errc::ok;  // why its group escalated
    GroupId group = kRootGroup;
    Restart restart = Restart::on_failure;
    std::uint8_t max_restarts = 0;
    std::uint8_t restart_head = 0;
    bool in_handler = false;
    bool stop_pending = false;  // stop requested inside a handler
    StopKind stop_kind = StopKind::external;
    bool restart_pending = false;
    Errc stop_reason = Errc::ok;
    std::uint16_t start_order = 0;
    // For a stop asked while the agent is inside its handler: it happens when the
    // handler returns (after_handler).
    void stop_when_handler_returns(Errc reason, StopKind kind) {
      stop_pending = true;
      stop_kind = kind;
      stop_reason = reason;
    }
  };
  struct TimerEntry {
    Timer timer;
    std::uint32_t generation = 1;
    union {
      AgentId owner;                // while active
      std::uint32_t next_free = 0;  // while free
    };
    AgentTimerCallback cb;  // set while active
    Runtime* runtime = nullptr;
    bool active() const { return static_cast<bool>(cb); }
  };
  struct Topic {
    char name[kTopicNameMax + 1] = {};
    std::uint64_t subscribers = 0;  // one bit per agent
  };
  struct Wildcard {
    char prefix[kTopicNameMax + 1] = {};
    AgentId agent = kNoAgent;
    bool used = false;
  };
  // A request's answer, from the Reply until the requester's next dispatch pass, kept
  // in the bytes of the request's deadline timer (Pending::hold(): the answer is in, so
  // the deadline no longer counts). What a reply carries besides what the runtime
  // stamps (sender, receiver, correlation, kind): value, payload, type, status. Waiting
  // answers form a FIFO linked both ways by pending-slot index, so a request that ends
  // while its answer waits (cancelled) unlinks it in O(1).
  // Its sender and status wait beside it, in the request's RequestSide.
  struct WaitingAnswer {
    ValueWords value;
    Payload payload;
    std::uint32_t type;
    NodeIndex prev;
    NodeIndex next;
  };
  // What the runtime keeps beside each pending-table slot: while the request waits for
  // its answer, the agent it went to (to cancel it if that agent stops); once its
  // answer is in, that answer's sender and status. An agent as in a mailbox node:
  // below kMaxAgents, or 0xFF for kNoAgent.
  // (Each field is written before it is read.)
  struct RequestSide {
    std::uint8_t agent;
    Errc status;
  };
  static_assert(sizeof(WaitingAnswer) <= Pending::kHeldBytes &&
                alignof(WaitingAnswer) <= alignof(void*));

  Result<AgentTimerId> after(AgentId owner, Duration delay, AgentTimerCallback cb);
  bool cancel_timer(AgentTimerId id);
  void free_agent_timer(std::uint32_t index);
  static void on_agent_timer(void* context);
  Errc answer(Message&& msg);
  void settle(RequestId id, Message&& answer);
  Message take_answer(RequestId id);
  void unlink_answer(WaitingAnswer& a, NodeIndex self);
  WaitingAnswer& waiting(NodeIndex i) {
    return *static_cast<WaitingAnswer*>(pending_.held_at(i));  // i is in the FIFO: held
  }
  static void drop_answer(void* runtime, std::uint32_t slot, void* bytes);
  void drop_answers(bool deliver);

  AgentSlot* slot(AgentId a);
  const AgentSlot* slot(AgentId a) const;
  // What the runtime stamps on a message it queues. enqueue() writes these and the body
  // into the node field by field, rather than the caller writing them into `msg` and
  // enqueue() moving it: those narrow stores followed at once by the move's wide loads of
  // the same bytes defeat store forwarding (~5 ns per message on x86-64).
  struct Envelope {  // 16 bytes, trivially copyable: passed in registers on x86-64
    RequestId correlation = {};
    TopicId topic = kNoTopic;
    AgentId sender = kNoAgent;
    AgentId receiver = kNoAgent;
    MessageKind kind = MessageKind::event;
    std::int8_t priority = -1;  // -1: the message's own
  };
  static_assert(sizeof(Envelope) == 16, "Envelope should stay two registers wide");
  // Inlined into its callers when optimising for speed (see its definition).
#if defined(__OPTIMIZE__) && !defined(__OPTIMIZE_SIZE__)
  [[gnu::always_inline]] inline
#endif
  Errc enqueue(AgentSlot& s, Message&& msg, Envelope env);
  bool dequeue(AgentId id, AgentSlot& s, Message* out);
  Detached detach_next(AgentSlot& s);  // node kNil: the mailbox is empty
  // The message node i holds, queued at `level`, its payload moved out; take_node()
  // also frees the node.
  Message take_node(NodeIndex i, AgentId receiver, unsigned level);
  Message read_node(NodeIndex i, AgentId receiver, unsigned level);
  void release_node(NodeIndex i);  // resets its payload, then free_node()
  void free_node(NodeIndex i);     // back on the free list
  void schedule();
  static void on_dispatch(void* context);
  void dispatch();
  bool dispatch_pass(bool restarts);
  void deliver(AgentId id, AgentSlot& s, Message& msg);
  void after_handler(AgentId id, AgentSlot& s);
  void terminate(AgentId id, Errc reason, bool failure);
  void log_event(LogLevel level, AgentId agent, const char* what, Errc reason);
  void supervise(AgentId id, Errc reason, StopKind kind);
  Errc stop_agent(AgentId agent, Errc reason, StopKind kind);
  void escalate(GroupId group, AgentId culprit, Errc reason);
  void flush_mailbox(AgentId id, AgentSlot& s, Errc reason);
  void restart(AgentId id, AgentSlot& s);
  bool quiescent() const;

  template <typename Pred>
  Result<Message> take_first(AgentId a, Pred&& pred);

  // The config as the tables get it (arena_bytes() follows it too).
  static constexpr RuntimeConfig sized(RuntimeConfig c) {
    if (c.max_agents > kMaxAgents) c.max_agents = kMaxAgents;
    if (c.max_topics > kMaxTopics) c.max_topics = kMaxTopics;
    return c;
  }
  // Whom a message may name as its sender: an agent's id or kNoAgent.
  static bool valid_sender(AgentId from) { return from == kNoAgent || from < kMaxAgents; }
  // What a sent message may name as its topic: one of this runtime's, or kNoTopic.
  bool valid_topic(TopicId t) const { return t == kNoTopic || t < topic_count_; }

  Reactor& reactor_;
  RuntimeConfig config_;
  PayloadPool payloads_;
  detail::StartupArray<AgentSlot> agents_;
  std::size_t agent_count_ = 0;
  detail::StartupArray<Node> nodes_;
  NodeIndex free_node_ = kNil;
  std::size_t nodes_in_use_ = 0;
  std::size_t nodes_reserved_ = 0;
  static void run_reply(void* runtime, const void* requester, ReplyCallback& cb,
                        Result<Message>&& r);
  detail::StartupArray<Pending::Slot> pending_slots_;  // outlives pending_
  Pending pending_;
  detail::StartupArray<RequestSide> sides_;  // one per pending-table slot
  NodeIndex answers_head_ = kNil;          // answers waiting, oldest first
  NodeIndex answers_tail_ = kNil;
  NodeIndex pass_end_ = kNil;  // the last answer the running dispatch pass settles
  detail::StartupArray<TimerEntry> timers_;
  std::uint32_t free_timer_ = 0;
  std::size_t timers_in_use_ = 0;
  detail::StartupArray<Topic> topics_;
  std::size_t topic_count_ = 0;
  detail::StartupArray<Wildcard> wildcards_;
  Timer dispatch_timer_;
  std::size_t rr_cursor_ = 0;
  bool shutting_down_ = false;
  bool draining_ = false;
  bool in_log_sink_ = false;
  Reply* live_replies_ = nullptr;
  RequestId log_correlation_;  // the request being handled or answered, for log lines
  // Sets log_correlation_ for a scope and puts the previous one back at its end.
  using CorrelationScope = detail::ScopedValue<RequestId>;
  bool shut_down_ = false;
  EscalationHandler on_escalate_;
  RuntimeStats stats_;
};

constexpr std::size_t Runtime::arena_bytes(const RuntimeConfig& config) {
  // Every table has at least one entry, as the constructor allocates them.
  auto at_least_one = [](std::size_t n) { return n ? n : std::size_t{1}; };
  std::size_t used = PayloadPool::arena_bytes(config.payloads);
  used = detail::StartupArray<AgentSlot>::arena_step(used, at_least_one(sized(config).max_agents));
  used = detail::StartupArray<Node>::arena_step(used, at_least_one(config.max_messages));
  used = detail::StartupArray<Pending::Slot>::arena_step(used, at_least_one(config.max_pending));
  used = detail::StartupArray<RequestSide>::arena_step(used, at_least_one(config.max_pending));
  used = detail::StartupArray<TimerEntry>::arena_step(used, at_least_one(config.max_timers));
  used = detail::StartupArray<Topic>::arena_step(used, at_least_one(sized(config).max_topics));
  used = detail::StartupArray<Wildcard>::arena_step(used, at_least_one(config.max_wildcards));
  return detail::startup_total(used);
}

template <typename Pred>
Result<Message> Runtime::take_first(AgentId a, Pred&& pred) {
  AgentSlot* s = slot(a);
  if (!s) return Errc::not_found;
  Mailbox& mb = s->mailbox;
  for (unsigned level = kPriorityLevels; level-- > 0;) {
    NodeIndex prev = kNil;
    for (NodeIndex i = mb.head[level]; i != kNil; prev = i, i = nodes_[i].next) {
      Message msg = read_node(i, a, level);
      if (!pred(static_cast<const Message&>(msg))) {
        nodes_[i].payload.swap(msg.payload);  // back where it was
        continue;
      }
      if (prev == kNil) {
        mb.head[level] = nodes_[i].next;
      } else {
        nodes_[prev].next = nodes_[i].next;
      }
      if (mb.tail[level] == i) mb.tail[level] = prev;
      if (mb.head[level] == kNil) mb.levels &= static_cast<std::uint8_t>(~(1u << level));
      free_node(i);  // its payload is in msg
      --mb.count;
      return Result<Message>(static_cast<Message&&>(msg));
    }
  }
  return Errc::not_found;
}

template <typename Pred>
Result<Message> Context::take_first(Pred&& pred) {
  return runtime_.take_first(self_, static_cast<Pred&&>(pred));
}

}  // namespace tern
