// The agent runtime. Everything runs on the reactor's thread: mailboxes are lists of
// nodes from one shared pool (each agent capped at its own capacity, reserved at spawn),
// dispatch happens on a wheel timer armed "overdue" so it runs on the next turn, and
// replies are queued and completed on the requester's next dispatch, never inside the
// responder's handler.
#include "tern/agents/runtime.hpp"

#include <cstring>
#include <initializer_list>
#include <new>

namespace tern {

namespace {
// Every table gets at least one entry (Runtime::arena_bytes() counts them the same way).
template <typename T>
detail::StartupArray<T> allocate_array(std::size_t n, Arena* arena) {
  return detail::StartupArray<T>(n ? n : 1, arena,
                                 "Runtime: out of memory at start-up (reduce RuntimeConfig capacities, or "
                                 "give the arena Runtime::arena_bytes(config))");
}

bool matches(const char* prefix, const char* name) {
  return std::strncmp(prefix, name, std::strlen(prefix)) == 0;
}
}  // namespace

// ---- Reply ----

Reply::Reply(Runtime* rt, RequestId id, AgentId requester, AgentId responder)
    : runtime_(rt), id_(id), requester_(requester), responder_(responder) {
  link();
}

void Reply::link() {
  if (!runtime_) return;
  prev_ = nullptr;
  next_ = runtime_->live_replies_;
  if (next_) next_->prev_ = this;
  runtime_->live_replies_ = this;
}

void Reply::unlink() {
  if (!runtime_) return;
  if (prev_) {
    prev_->next_ = next_;
  } else {
    runtime_->live_replies_ = next_;
  }
  if (next_) next_->prev_ = prev_;
  prev_ = next_ = nullptr;
}

Reply& Reply::operator=(Reply&& o) noexcept {
  if (this != &o) {
    if (pending()) (void)answer(Message{}, false);
    take(o);
  }
  return *this;
}

Reply::~Reply() {
  if (pending()) (void)answer(Message{}, false);
}

void Reply::take(Reply& o) {
  o.unlink();
  runtime_ = o.runtime_;
  id_ = o.id_;
  requester_ = o.requester_;
  responder_ = o.responder_;
  o.runtime_ = nullptr;
  link();
}

Errc Reply::ok(Message msg) {
  msg.kind = MessageKind::reply;
  msg.status = Errc::ok;
  return answer(std::move(msg), true);
}

Errc Reply::fail(Errc e) {
  if (e == Errc::ok) return Errc::invalid_argument;
  Message msg;
  msg.kind = MessageKind::error;
  msg.status = e;
  return answer(std::move(msg), true);
}

// explicit_answer false: the Reply is being dropped unanswered (no_reply).
Errc Reply::answer(Message msg, bool explicit_answer) {
  if (!runtime_) return Errc::closed;
  Runtime* rt = runtime_;
  unlink();
  runtime_ = nullptr;  // answered, whatever happens next
  if (!explicit_answer) {
    msg.kind = MessageKind::error;
    msg.status = Errc::no_reply;
  }
  msg.sender = responder_;
  msg.receiver = requester_;
  msg.correlation = id_;
  // Late: the requester already has its outcome (timeout, cancel, a stop), or another
  // Reply to the same request has answered it.
  if (rt->answer(std::move(msg)) == Errc::late) {
    if (!explicit_answer) return Errc::late;  // nobody waits, and nothing was said
    ++rt->stats_.replies_late;
    if (auto* s = rt->slot(responder_)) ++s->counters.late_replies;
    return Errc::late;
  }
  return Errc::ok;
}

// msg.correlation is the request's id (Reply::answer set it). The answer waits in its
// request's slot until the next dispatch pass, so completions run from the loop, never
// inside the responder's handler. From here the request no longer times out: its answer
// came in time. Late if the request already has its answer (a second Reply to it:
// reply_to() makes one more).
Errc Runtime::answer(Message&& msg) {
  const RequestId id = msg.correlation;
  void* bytes = pending_.hold(id);
  if (!bytes) return Errc::late;
  const auto i = static_cast<NodeIndex>(id.slot());
  new (bytes) WaitingAnswer{.value = ValueWords::of(msg.value),
                            .payload = static_cast<Payload&&>(msg.payload),
                            .type = msg.type,
                            .prev = answers_tail_,
                            .next = kNil};
  sides_[i] = RequestSide{.agent = agent_byte(msg.sender), .status = msg.status};
  if (answers_tail_ == kNil) {
    answers_head_ = i;
  } else {
    waiting(answers_tail_).next = i;
  }
  answers_tail_ = i;
  schedule();
  return Errc::ok;
}

// `self`: the answer's slot. An answer taken out of the middle (its request cancelled)
// that was the last of the current dispatch pass hands that mark to the one before it.
void Runtime::unlink_answer(WaitingAnswer& a, NodeIndex self) {
  if (self == pass_end_) pass_end_ = a.prev;
  if (a.prev == kNil) {
    answers_head_ = a.next;
  } else {
    waiting(a.prev).next = a.next;
  }
  if (a.next == kNil) {
    answers_tail_ = a.prev;
  } else {
    waiting(a.next).prev = a.prev;
  }
}

// The pending table's release hook: request `slot` ended (cancelled: its requester
// stopped, or shutdown) while its answer waited. The answer is dropped, counted late.
void Runtime::drop_answer(void* runtime, std::uint32_t slot, void* bytes) {
  Runtime& rt = *static_cast<Runtime*>(runtime);
  auto& a = *static_cast<WaitingAnswer*>(bytes);
  rt.unlink_answer(a, static_cast<NodeIndex>(slot));
  a.~WaitingAnswer();  // gives its payload back
  ++rt.stats_.replies_late;
}

// Takes request `id`'s waiting answer out of the queue, as the message the requester
// gets (its receiver is set by run_reply, which knows the requester).
Message Runtime::take_answer(RequestId id) {
  auto& a = waiting(static_cast<NodeIndex>(id.slot()));  // in the FIFO: held
  unlink_answer(a, static_cast<NodeIndex>(id.slot()));
  Message m;
  m.value = a.value.get();
  m.correlation = id;
  m.payload = static_cast<Payload&&>(a.payload);
  m.type = a.type;
  const RequestSide side = sides_[id.slot()];
  m.sender = agent_of(side.agent);
  m.kind = side.status == Errc::ok ? MessageKind::reply : MessageKind::error;
  m.status = side.status;
  a.~WaitingAnswer();
  pending_.unhold(id);
  return m;
}

// Ends request `id` with its answer (its callback runs now).
void Runtime::settle(RequestId id, Message&& answer) {
  if (answer.kind == MessageKind::reply) {
    (void)pending_.complete(id, static_cast<Message&&>(answer));
  } else {
    (void)pending_.fail(id, answer.status);
  }
}

// Empties the answer queue. `deliver` (shutdown): each answer ends its request as a
// dispatch pass would. Otherwise (the destructor, after shutdown) they are dropped.
void Runtime::drop_answers(bool deliver) {
  while (answers_head_ != kNil) {
    const RequestId id = pending_.id_at(answers_head_);
    Message answer = take_answer(id);
    if (deliver) {
      settle(id, static_cast<Message&&>(answer));
    } else {
      (void)pending_.cancel(id);
    }
  }
}

// ---- Context ----

Instant Context::now() const { return runtime_.reactor_.now(); }
Errc Context::send(AgentId to, Message msg) { return runtime_.send_from(self_, to, std::move(msg)); }
Logger Context::log() { return Logger(runtime_, self_); }

PublishResult Context::publish(TopicId topic, Message msg) {
  return runtime_.publish_from(self_, topic, std::move(msg));
}
Result<RequestId> Context::request(AgentId to, Message msg, RequestOptions options,
                                   ReplyCallback on_reply) {
  return runtime_.request_from(self_, to, std::move(msg), options, std::move(on_reply));
}
Result<AgentTimerId> Context::after(Duration delay, AgentTimerCallback cb) {
  return runtime_.after(self_, delay, std::move(cb));
}
bool Context::cancel(AgentTimerId id) { return runtime_.cancel_timer(id); }
Reply Context::reply_to(const Message& request) {
  if (request.kind != MessageKind::request) return Reply();
  return Reply(&runtime_, request.correlation, request.sender, self_);
}
void Context::stop_self() { (void)runtime_.stop_agent(self_, Errc::ok, Runtime::StopKind::self); }
void Context::fail(Errc reason) {
  Runtime::AgentSlot* s = runtime_.slot(self_);
  if (!s || s->state != AgentState::running) return;
  const Errc why = reason == Errc::ok ? Errc::failed : reason;
  if (s->in_handler) {
    s->stop_when_handler_returns(why, Runtime::StopKind::failure);
  } else {
    runtime_.supervise(self_, why, Runtime::StopKind::failure);
  }
}
Errc Context::stop_reason() const {
  const Runtime::AgentSlot* s = runtime_.slot(self_);
  return s ? s->stop_reason : Errc::not_found;
}
AgentCounters& Context::counters() { return runtime_.slot(self_)->counters; }

// ---- construction ----

Runtime::Runtime(Reactor& reactor, const RuntimeConfig& config)
    : reactor_(reactor),
      config_(sized(config)),
      payloads_(config.payloads, config.arena),
      agents_(allocate_array<AgentSlot>(config_.max_agents, config.arena)),
      nodes_(allocate_array<Node>(config.max_messages, config.arena)),
      pending_slots_(allocate_array<Pending::Slot>(config.max_pending, config.arena)),
      pending_(reactor.wheel(), pending_slots_.get(), config.max_pending ? config.max_pending : 1),
      sides_(allocate_array<RequestSide>(config.max_pending, config.arena)),
      timers_(allocate_array<TimerEntry>(config.max_timers, config.arena)),
      topics_(allocate_array<Topic>(config_.max_topics, config.arena)),
      wildcards_(allocate_array<Wildcard>(config.max_wildcards, config.arena)) {
  detail::startup_finish(config.arena);
  if (config_.max_messages >= kNil) panic("RuntimeConfig: max_messages must be below 65535");
  // A message is unpacked from its node, and the node freed, before its handler runs,
  // so the nodes the mailboxes reserve are all there is.
  const std::size_t nodes = config_.max_messages;
  if (config_.dispatch_budget == 0) config_.dispatch_budget = 1;
  for (std::size_t i = 0; i < nodes; ++i) {
    nodes_[i].next = static_cast<NodeIndex>(i + 1 < nodes ? i + 1 : kNil);
  }
  free_node_ = nodes ? 0 : kNil;
  if (pending_.capacity() >= kNil) panic("RuntimeConfig: max_pending must be below 65535");
  pending_.set_runner(&Runtime::run_reply, this, &Runtime::drop_answer);
  for (std::size_t i = 0; i < config_.max_timers; ++i) {
    timers_[i].runtime = this;
    timers_[i].next_free = static_cast<std::uint32_t>(i + 1);
    timers_[i].timer.set_callback(&Runtime::on_agent_timer, &timers_[i]);
  }
  dispatch_timer_.set_callback(&Runtime::on_dispatch, this);
  on_escalate_ = [this](GroupId g, AgentId, Errc) {
    if (g == kRootGroup) reactor_.stop();
  };
}

Runtime::~Runtime() {
  if (!shut_down_) shutdown(Duration::zero());
  // Replies still held by agents outlive us: empty them so they answer nothing.
  while (live_replies_) {
    Reply* r = live_replies_;
    live_replies_ = r->next_;
    r->runtime_ = nullptr;
    r->prev_ = r->next_ = nullptr;
  }
  reactor_.wheel().cancel(dispatch_timer_);
  drop_answers(false);
  for (std::size_t i = 0; i < config_.max_timers; ++i) reactor_.wheel().cancel(timers_[i].timer);
}

// ---- agents ----

Runtime::AgentSlot* Runtime::slot(AgentId a) {
  return a < agent_count_ ? &agents_[a] : nullptr;
}
const Runtime::AgentSlot* Runtime::slot(AgentId a) const {
  return a < agent_count_ ? &agents_[a] : nullptr;
}

Result<AgentId> Runtime::spawn(Agent& agent, const AgentOptions& options) {
  if (shutting_down_) return Errc::shutdown;
  if (options.mailbox == 0 || options.max_restarts > AgentOptions::kMaxRestarts ||
      options.restart_window <= Duration::zero()) {
    return Errc::invalid_argument;
  }
  if (group_stop_reason(options.group) != Errc::ok) return Errc::closed;  // escalated: stopped
  if (agent_count_ >= config_.max_agents ||
      nodes_reserved_ + options.mailbox > config_.max_messages) {
    ++stats_.refused_full;
    return Errc::full;
  }
  auto id = static_cast<AgentId>(agent_count_++);
  AgentSlot& s = agents_[id];
  s.agent = &agent;
  s.name = options.name;
  s.restart_window = options.restart_window;
  s.group = options.group;
  s.restart = options.restart;
  s.max_restarts = options.max_restarts;
  s.state = AgentState::running;
  for (unsigned l = 0; l < kPriorityLevels; ++l) s.mailbox.head[l] = s.mailbox.tail[l] = kNil;
  s.mailbox.levels = 0;
  s.mailbox.capacity = options.mailbox;
  s.start_order = id;
  nodes_reserved_ += options.mailbox;
  Context ctx(*this, id);
  s.in_handler = true;
  {
    CorrelationScope scope(log_correlation_, RequestId{});  // may be inside a request's handler
    agent.on_start(ctx);
  }
  s.in_handler = false;
  after_handler(id, s);
  return id;
}

AgentState Runtime::state(AgentId a) const {
  const AgentSlot* s = slot(a);
  return s ? s->state : AgentState::unused;
}
const char* Runtime::name(AgentId a) const {
  const AgentSlot* s = slot(a);
  return s ? s->name : "?";
}
const AgentCounters* Runtime::counters(AgentId a) const {
  const AgentSlot* s = slot(a);
  return s ? &s->counters : nullptr;
}
std::size_t Runtime::mailbox_size(AgentId a) const {
  const AgentSlot* s = slot(a);
  return s ? s->mailbox.count : 0;
}
// A group that escalated had a member then, and agent slots are never reused: the
// reason is kept in each member's slot (no table of 256 groups).
Errc Runtime::group_stop_reason(GroupId g) const {
  for (std::size_t k = 0; k < agent_count_; ++k) {
    const AgentSlot& s = agents_[k];
    if (s.group == g && s.group_reason != Errc::ok) return s.group_reason;
  }
  return Errc::ok;
}

// ---- mailboxes ----

static_assert(sizeof(Message) == 40, "Message changed: update enqueue() and read_node(), which copy it field by field");

// Declared always_inline when optimising for speed (only this file calls it):
// publish_packed() calls it twice per subscriber loop, and the call costs more than its
// body there (~7 % of a publish to 8 agents on x86-64). At -Os (the Cortex-M build) the
// compiler decides.
Errc Runtime::enqueue(AgentSlot& s, Message&& msg, Envelope env) {
  Mailbox& mb = s.mailbox;
  if (mb.count >= mb.capacity || free_node_ == kNil) {
    ++s.counters.mailbox_rejected;
    ++stats_.dropped;
    return Errc::full;
  }
  NodeIndex i = free_node_;
  free_node_ = nodes_[i].next;
  // Field by field: the body from msg, the rest from env, each written once. A free
  // node's payload is always empty (release_node), so swapping moves msg's in. The
  // receiver is the mailbox's agent (env.receiver), stamped again when it is unpacked.
  Node& n = nodes_[i];
  n.value = ValueWords::of(msg.value);
  n.generation = env.correlation.generation();
  n.slot = static_cast<std::uint16_t>(env.correlation.slot());  // a pending slot: < 65535
  n.payload.swap(msg.payload);
  n.type = msg.type;
  const unsigned topic = env.topic == kNoTopic ? kNodeNoTopic : env.topic;  // < kMaxTopics
  n.topic_kind = static_cast<std::uint16_t>(topic | static_cast<unsigned>(env.kind) << 14);
  n.sender = agent_byte(env.sender);  // valid_sender() checked it
  n.status = msg.status;
  const unsigned priority = env.priority >= 0 ? static_cast<unsigned>(env.priority) : msg.priority;
  const unsigned level = priority < kPriorityLevels ? priority : kPriorityLevels - 1;
  n.next = kNil;
  if (mb.tail[level] == kNil) {
    mb.head[level] = i;
    mb.levels |= static_cast<std::uint8_t>(1u << level);
  } else {
    nodes_[mb.tail[level]].next = i;
  }
  mb.tail[level] = i;
  ++nodes_in_use_;
  if (++mb.count > s.counters.mailbox_high_water) s.counters.mailbox_high_water = mb.count;
  schedule();
  return Errc::ok;
}

// Unlinks the next message (highest priority first); its node stays taken until
// take_node() unpacks it.
Runtime::Detached Runtime::detach_next(AgentSlot& s) {
  Mailbox& mb = s.mailbox;
  if (mb.levels == 0) return Detached{kNil, 0};
  const unsigned level = 31u - static_cast<unsigned>(__builtin_clz(mb.levels));
  const NodeIndex i = mb.head[level];
  mb.head[level] = nodes_[i].next;
  if (mb.head[level] == kNil) {
    mb.tail[level] = kNil;
    mb.levels &= static_cast<std::uint8_t>(~(1u << level));
  }
  --mb.count;
  return Detached{i, static_cast<std::uint8_t>(level)};
}

Message Runtime::read_node(NodeIndex i, AgentId receiver, unsigned level) {
  Node& n = nodes_[i];
  const unsigned topic = n.topic_kind & 0x3FFFu;
  // Each field written once, straight into the caller's Message.
  return Message{
      .value = n.value.get(),
      .correlation = RequestId::make(n.slot, n.generation),
      .payload = static_cast<Payload&&>(n.payload),
      .type = n.type,
      .topic = topic == kNodeNoTopic ? kNoTopic : static_cast<TopicId>(topic),
      .sender = agent_of(n.sender),
      .receiver = receiver,
      .kind = static_cast<MessageKind>(n.topic_kind >> 14),
      .priority = static_cast<std::uint8_t>(level),
      .status = n.status,
  };
}

Message Runtime::take_node(NodeIndex i, AgentId receiver, unsigned level) {
  Message m = read_node(i, receiver, level);
  free_node(i);  // its payload is out: no reset to do
  return m;
}

void Runtime::release_node(NodeIndex i) {
  nodes_[i].payload.reset();  // empty unless a flush frees the node unread
  free_node(i);
}

void Runtime::free_node(NodeIndex i) {
  nodes_[i].next = free_node_;
  free_node_ = i;
  --nodes_in_use_;
}

bool Runtime::dequeue(AgentId id, AgentSlot& s, Message* out) {
  const Detached d = detach_next(s);
  if (d.node == kNil) return false;
  *out = take_node(d.node, id, d.level);
  return true;
}

Errc Runtime::send_from(AgentId from, AgentId to, Message msg) {
  if (shutting_down_ || draining_) return Errc::shutdown;
  AgentSlot* s = slot(to);
  if (!s) return Errc::not_found;
  if (s->state != AgentState::running || s->stop_pending) return Errc::closed;
  const TopicId topic = msg.topic;  // kept: a forwarded event still names its topic
  if (!valid_sender(from) || !valid_topic(topic)) return Errc::invalid_argument;
  Errc e = enqueue(*s, std::move(msg), Envelope{.topic = topic, .sender = from, .receiver = to});
  if (e == Errc::ok) {
    ++stats_.sent;
    if (AgentSlot* f = slot(from)) ++f->counters.messages_out;
  }
  return e;
}

// ---- bus ----

Result<TopicId> Runtime::topic(const char* name) {
  if (!name || !*name) return Errc::invalid_argument;
  if (std::strlen(name) > kTopicNameMax) return Errc::too_large;
  for (std::size_t i = 0; i < topic_count_; ++i) {
    if (std::strcmp(topics_[i].name, name) == 0) return static_cast<TopicId>(i);
  }
  if (topic_count_ >= config_.max_topics) {
    ++stats_.refused_full;
    return Errc::full;
  }
  Topic& t = topics_[topic_count_];
  std::strcpy(t.name, name);
  for (std::size_t w = 0; w < config_.max_wildcards; ++w) {
    if (wildcards_[w].used && matches(wildcards_[w].prefix, name)) {
      t.subscribers |= std::uint64_t{1} << wildcards_[w].agent;
    }
  }
  return static_cast<TopicId>(topic_count_++);
}

Errc Runtime::subscribe(AgentId agent, TopicId topic) {
  if (!slot(agent) || topic >= topic_count_) return Errc::not_found;
  topics_[topic].subscribers |= std::uint64_t{1} << agent;
  return Errc::ok;
}

Errc Runtime::unsubscribe(AgentId agent, TopicId topic) {
  if (!slot(agent) || topic >= topic_count_) return Errc::not_found;
  topics_[topic].subscribers &= ~(std::uint64_t{1} << agent);
  return Errc::ok;
}

Errc Runtime::subscribe(AgentId agent, const char* pattern) {
  if (!slot(agent)) return Errc::not_found;
  if (!pattern || !*pattern) return Errc::invalid_argument;
  std::size_t n = std::strlen(pattern);
  if (n > kTopicNameMax) return Errc::too_large;
  if (pattern[n - 1] != '*') {
    Result<TopicId> t = topic(pattern);
    if (!t) return t.error();
    return subscribe(agent, *t);
  }
  Wildcard* w = nullptr;
  for (std::size_t i = 0; i < config_.max_wildcards && !w; ++i) {
    if (!wildcards_[i].used) w = &wildcards_[i];
  }
  if (!w) {
    ++stats_.refused_full;
    return Errc::full;
  }
  w->used = true;
  w->agent = agent;
  std::memcpy(w->prefix, pattern, n - 1);
  w->prefix[n - 1] = '\0';
  for (std::size_t i = 0; i < topic_count_; ++i) {
    if (matches(w->prefix, topics_[i].name)) topics_[i].subscribers |= std::uint64_t{1} << agent;
  }
  return Errc::ok;
}

std::uint32_t Runtime::publish_packed(AgentId from, TopicId topic, Message&& msg) {
  if (shutting_down_ || draining_) {
    ++stats_.publish_refused;
    return static_cast<std::uint32_t>(Errc::shutdown);
  }
  if (topic >= topic_count_) {
    ++stats_.publish_refused;
    return static_cast<std::uint32_t>(Errc::not_found);
  }
  if (!valid_sender(from)) {
    ++stats_.publish_refused;
    return static_cast<std::uint32_t>(Errc::invalid_argument);
  }
  ++stats_.published;
  if (AgentSlot* f = slot(from)) ++f->counters.messages_out;
  std::uint32_t delivered = 0;  // at most max_agents (64) each: 12 bits is plenty
  std::uint32_t dropped = 0;
  std::uint64_t subs = topics_[topic].subscribers;
  while (subs) {
    auto a = static_cast<AgentId>(__builtin_ctzll(subs));
    subs &= subs - 1;
    AgentSlot& s = agents_[a];
    if (s.state != AgentState::running || s.stop_pending) continue;
    const Envelope env{.topic = topic, .sender = from, .receiver = a};
    // The last subscriber takes the message itself: no copy, no reference count. The
    // others get a copy that shares the payload: no bytes copied.
    Errc e = subs == 0 ? enqueue(s, std::move(msg), env) : enqueue(s, Message(msg), env);
    if (e == Errc::ok) {
      ++delivered;
    } else {
      ++dropped;
    }
  }
  return static_cast<std::uint32_t>(Errc::ok) | delivered << 8 | dropped << 20;
}

// ---- requests ----

Result<RequestId> Runtime::request_from(AgentId from, AgentId to, Message msg,
                                        RequestOptions options, ReplyCallback on_reply) {
  if (shutting_down_ || draining_) return Errc::shutdown;
  if (!on_reply || !valid_sender(from) || !valid_topic(msg.topic)) return Errc::invalid_argument;
  // A timeout too long for the wheel is refused as an argument, before a full mailbox.
  const Instant deadline = reactor_.now() + options.timeout;
  if (!reactor_.wheel().reaches_or_never(deadline)) return Errc::invalid_argument;
  // A stopping agent starts nothing: its on_stop and the cancellations run after its
  // requests were cancelled, so a new one would outlive the stop.
  AgentSlot* const requester = slot(from);
  if (requester && (requester->state != AgentState::running || requester->stop_pending)) {
    return Errc::closed;
  }
  AgentSlot* target = slot(to);
  if (!target) return Errc::not_found;
  if (target->state != AgentState::running || target->stop_pending) return Errc::closed;
  if (target->mailbox.count >= target->mailbox.capacity || free_node_ == kNil) {
    ++target->counters.mailbox_rejected;
    ++stats_.dropped;
    return Errc::full;
  }
  Result<RequestId> id = pending_.start(deadline, std::move(on_reply), requester);
  if (!id) return id.error();
  sides_[id->slot()].agent = agent_byte(to);
  // Room was checked above.
  const TopicId topic = msg.topic;
  (void)enqueue(*target, std::move(msg),
                Envelope{.correlation = *id, .topic = topic, .sender = from, .receiver = to,
                         .kind = MessageKind::request,
                         .priority = static_cast<std::int8_t>(
                             options.priority < kPriorityLevels ? options.priority : kPriorityLevels - 1)});
  if (requester) ++requester->counters.messages_out;
  return id;
}

// The pending table's runner: every request's outcome passes here on its way to the
// requester's callback (`requester`: its agent slot, null for code outside agents).
void Runtime::run_reply(void* runtime, const void* requester, ReplyCallback& cb,
                        Result<Message>&& r) {
  Runtime& rt = *static_cast<Runtime*>(runtime);
  const auto* from = static_cast<const AgentSlot*>(requester);
  if (r.ok()) r->receiver = from ? static_cast<AgentId>(from - rt.agents_.get()) : kNoAgent;
  if (requester) {
    AgentCounters& c = const_cast<AgentSlot*>(from)->counters;
    if (r.ok()) {
      ++c.requests_ok;
    } else if (r.error() == Errc::timeout) {
      ++c.requests_timed_out;
    } else {
      ++c.requests_failed;
    }
  }
  CorrelationScope scope(rt.log_correlation_, rt.pending_.finishing());
  cb(static_cast<Result<Message>&&>(r));
}

// ---- agent timers ----

Result<AgentTimerId> Runtime::after(AgentId owner, Duration delay, AgentTimerCallback cb) {
  const Instant deadline = reactor_.now() + delay;
  if (!cb || !reactor_.wheel().reaches(deadline)) return Errc::invalid_argument;
  AgentSlot* s = slot(owner);
  if (!s || s->state != AgentState::running) return Errc::closed;
  if (free_timer_ >= config_.max_timers) {
    ++stats_.refused_full;
    return Errc::full;
  }
  std::uint32_t index = free_timer_;
  TimerEntry& e = timers_[index];
  free_timer_ = e.next_free;
  e.cb = std::move(cb);
  e.owner = owner;
  ++timers_in_use_;
  reactor_.wheel().arm(e.timer, deadline);
  return AgentTimerId{index, e.generation};
}

void Runtime::on_agent_timer(void* context) {
  auto& e = *static_cast<TimerEntry*>(context);
  Runtime& rt = *e.runtime;
  AgentTimerCallback cb = std::move(e.cb);
  const AgentId owner = e.owner;
  rt.free_agent_timer(static_cast<std::uint32_t>(&e - rt.timers_.get()));
  AgentSlot* s = rt.slot(owner);
  if (!s) return;
  s->in_handler = true;
  cb(Errc::ok);
  s->in_handler = false;
  rt.after_handler(owner, *s);
}

bool Runtime::cancel_timer(AgentTimerId id) {
  if (id.index >= config_.max_timers) return false;
  TimerEntry& e = timers_[id.index];
  if (!e.active() || e.generation != id.generation) return false;
  e.cb = nullptr;
  free_agent_timer(id.index);
  return true;
}

// Disarms entry `index` if it is still armed (its callback already taken or dropped)
// and frees it.
void Runtime::free_agent_timer(std::uint32_t index) {
  TimerEntry& e = timers_[index];
  reactor_.wheel().cancel(e.timer);
  ++e.generation;
  e.next_free = free_timer_;
  free_timer_ = index;
  --timers_in_use_;
}

// ---- logging ----

void Runtime::emit_log(LogLevel level, AgentId agent, std::string_view text, bool truncated) {
  if (!log_enabled(level)) return;
  if (in_log_sink_) {  // the sink logged: calling it again would recurse without end
    ++stats_.log_reentered;
    return;
  }
  const AgentSlot* s = slot(agent);
  ++stats_.log_lines;
  if (truncated) ++stats_.log_truncated;
  detail::ScopedValue<bool> in_sink(in_log_sink_, true);
  config_.log_sink(config_.log_context,
                   LogRecord{reactor_.now(), level, agent, s ? s->name : "-",
                             log_correlation_, text, truncated});
}

// The runtime's own lines: fixed words and names joined without printf, so a firmware
// that never formats a log line does not link a formatter for these.
void Runtime::log_event(LogLevel level, AgentId agent, const char* what, Errc reason) {
  if (!log_enabled(level)) return;
  char line[Logger::kLineMax];
  std::size_t n = 0;
  for (const char* part : {what, " (", errc_name(reason), ")"}) {
    for (; *part && n + 1 < sizeof line; ++part) line[n++] = *part;
  }
  emit_log(level, agent, std::string_view(line, n), false);
}

// ---- dispatch ----

void Runtime::schedule() {
  // An overdue timer fires on the reactor's next turn and keeps it from sleeping.
  if (!dispatch_timer_.armed()) reactor_.wheel().arm(dispatch_timer_, Instant(0));
}

void Runtime::on_dispatch(void* context) { static_cast<Runtime*>(context)->dispatch(); }

void Runtime::dispatch() {
  // Several passes in one reactor turn while work remains (each pass is fair: at most
  // dispatch_budget messages per agent), capped so I/O and timers still get their turn.
  constexpr Count kMaxCallsPerTurn = 256;
  // Restarts only in the first pass: one that a pass asks for waits for the next turn
  // (supervise() scheduled it), so an agent that fails in on_start cannot spin a turn.
  const Count start = stats_.delivered;  // counted modulo Count's width
  bool more = dispatch_pass(true);
  while (more && static_cast<Count>(stats_.delivered - start) < kMaxCallsPerTurn) {
    more = dispatch_pass(false);
  }
  if (more) schedule();
}

bool Runtime::dispatch_pass(bool restarts) {
  // Replies first: they end requests, which frees table slots for new work.
  // Up to the answer that was last when the pass began (pass_end_, which moves back if
  // that one is taken out early): answers given during these callbacks wait for the
  // next pass. They stay in the queue until taken, so a shutdown from a callback still
  // finds them.
  pass_end_ = answers_tail_;
  while (pass_end_ != kNil) {  // taking the head that is pass_end_ clears it
    const RequestId id = pending_.id_at(answers_head_);
    Message answer = take_answer(id);
    settle(id, static_cast<Message&&>(answer));
  }
  // The agents as the pass began: one spawned by a handler of this pass waits for the
  // next (counting it here would shift the round-robin mid-pass, visiting one agent
  // twice and another not at all).
  const std::size_t agents = agent_count_;
  for (std::size_t k = 0; k < agents; ++k) {
    auto id = static_cast<AgentId>((rr_cursor_ + k) % agents);
    AgentSlot& s = agents_[id];
    if (restarts && s.restart_pending) restart(id, s);
    for (std::size_t m = 0; m < config_.dispatch_budget; ++m) {
      if (s.state != AgentState::running || s.stop_pending) break;
      const Detached d = detach_next(s);
      if (d.node == kNil) break;
      Message msg = take_node(d.node, id, d.level);  // the node is free before the handler runs
      deliver(id, s, msg);
    }
  }
  if (agent_count_) rr_cursor_ = (rr_cursor_ + 1) % agent_count_;
  bool more = answers_head_ != kNil;
  for (std::size_t k = 0; k < agent_count_ && !more; ++k) {
    more = agents_[k].state == AgentState::running && agents_[k].mailbox.count;
  }
  return more;
}

void Runtime::deliver(AgentId id, AgentSlot& s, Message& msg) {
  Context ctx(*this, id);
  ++s.counters.messages_in;
  ++stats_.delivered;
  s.in_handler = true;
  {
    // Lines logged by this handler belong to its request, or to none for an event (even
    // when this runs nested inside another request's handler).
    const bool request = msg.kind == MessageKind::request;
    CorrelationScope scope(log_correlation_, request ? msg.correlation : RequestId{});
    if (request) {
      s.agent->on_request(ctx, msg, Reply(this, msg.correlation, msg.sender, id));
    } else {
      s.agent->on_message(ctx, msg);
    }
  }
  s.in_handler = false;
  after_handler(id, s);
}

void Runtime::after_handler(AgentId id, AgentSlot& s) {
  if (!s.stop_pending) return;
  s.stop_pending = false;
  supervise(id, s.stop_reason, s.stop_kind);
}

// ---- stopping and supervision ----

Errc Runtime::stop(AgentId agent, Errc reason) {
  return stop_agent(agent, reason, StopKind::external);
}

Errc Runtime::stop_agent(AgentId agent, Errc reason, StopKind kind) {
  AgentSlot* s = slot(agent);
  if (!s) return Errc::not_found;
  if (s->state != AgentState::running) {
    // Failed and waiting for its restart (on a later turn): a stop from outside keeps
    // it stopped.
    if (s->restart_pending && kind == StopKind::external) {
      s->restart_pending = false;
      return Errc::ok;
    }
    return Errc::closed;
  }
  if (s->in_handler) {
    s->stop_when_handler_returns(reason, kind);
    return Errc::ok;
  }
  supervise(agent, reason, kind);
  return Errc::ok;
}

void Runtime::flush_mailbox(AgentId id, AgentSlot& s, Errc reason) {
  Message msg;
  while (dequeue(id, s, &msg)) {
    if (msg.kind == MessageKind::request) {
      // Answer now so the requester is not left waiting for its deadline (terminate has
      // usually cancelled it already: then there is nobody to answer, and nothing late).
      if (pending_.pending(msg.correlation)) {
        Reply r(this, msg.correlation, msg.sender, id);
        (void)r.fail(reason == Errc::shutdown ? Errc::shutdown : Errc::cancelled);
      }
    } else {
      ++stats_.flushed;
    }
    msg = Message{};
  }
}

// Ends everything the agent owns, then calls on_stop. Callbacks of its own requests
// and timers run with Errc::cancelled before this returns.
void Runtime::terminate(AgentId id, Errc reason, bool failure) {
  CorrelationScope scope(log_correlation_, RequestId{});  // on_stop's lines belong to no request
  AgentSlot& s = agents_[id];
  (void)failure;
  s.state = AgentState::stopped;
  s.stop_reason = reason;
  s.stop_pending = false;
  Context ctx(*this, id);
  s.in_handler = true;
  // Its own requests.
  pending_.cancel_all(&s);
  // Requests others made to it: their answers can no longer come (unless one already
  // has: it waits for the next dispatch pass and ends the request there).
  pending_.for_each_pending([&](RequestId rid, const void*) {
    if (sides_[rid.slot()].agent == agent_byte(id) && !pending_.held(rid)) (void)pending_.cancel(rid);
  });
  // Its timers.
  for (std::size_t i = 0; i < config_.max_timers; ++i) {
    TimerEntry& e = timers_[i];
    if (!e.active() || e.owner != id) continue;
    AgentTimerCallback cb = std::move(e.cb);
    free_agent_timer(static_cast<std::uint32_t>(i));
    cb(Errc::cancelled);
  }
  flush_mailbox(id, s, reason);
  s.agent->on_stop(ctx);
  s.in_handler = false;
  // Anything the agent did inside on_stop that queued work for itself is refused
  // (it is stopped), so nothing is left behind.
  flush_mailbox(id, s, reason);
}

void Runtime::supervise(AgentId id, Errc reason, StopKind kind) {
  CorrelationScope scope(log_correlation_, RequestId{});  // may run inside another agent's handler
  AgentSlot& s = agents_[id];
  if (s.state != AgentState::running) return;
  const bool failure = kind == StopKind::failure;
  terminate(id, reason, failure);
  // group_stopped: its group escalated, perhaps from a callback that terminate ran.
  bool wants_restart = !shutting_down_ && !s.group_stopped &&
                       ((failure && s.restart != Restart::never) ||
                        (kind == StopKind::self && s.restart == Restart::always));
  if (!wants_restart) return;
  // Restart intensity: more than max_restarts within restart_window escalates.
  Instant now = reactor_.now();
  std::size_t recent = 0;
  for (const Instant& t : s.restart_times) {
    if (t != Instant() && now - t < s.restart_window) ++recent;
  }
  if (recent >= s.max_restarts) {
    log_event(LogLevel::error, id, "restart intensity exceeded: its group stops", reason);
    escalate(s.group, id, reason);
    return;
  }
  log_event(LogLevel::warn, id, failure ? "failed; restarting" : "stopped; restarting", reason);
  s.restart_times[s.restart_head] = now == Instant() ? Instant(1) : now;
  s.restart_head = static_cast<std::uint8_t>((s.restart_head + 1) % AgentOptions::kMaxRestarts);
  s.restart_pending = true;  // on a later turn, so a crash loop cannot recurse
  schedule();
}

void Runtime::restart(AgentId id, AgentSlot& s) {
  s.restart_pending = false;
  if (shutting_down_ || s.state != AgentState::stopped) return;
  ++s.counters.restarts;
  ++stats_.restarts;
  s.state = AgentState::running;
  s.stop_reason = Errc::ok;
  s.agent->reset();
  Context ctx(*this, id);
  s.in_handler = true;
  {
    CorrelationScope scope(log_correlation_, RequestId{});
    s.agent->on_start(ctx);
  }
  s.in_handler = false;
  after_handler(id, s);
}

void Runtime::escalate(GroupId group, AgentId culprit, Errc reason) {
  ++stats_.escalations;
  // Every member records why before any stops (a stop's callbacks may spawn into it).
  const Errc why = reason == Errc::ok ? Errc::failed : reason;
  for (std::size_t k = 0; k < agent_count_; ++k) {
    if (agents_[k].group == group) agents_[k].group_reason = why;
  }
  // Stop the whole group, newest first, with no restarts.
  for (std::size_t k = agent_count_; k-- > 0;) {
    AgentSlot& s = agents_[k];
    if (s.group != group) continue;
    s.restart_pending = false;
    s.group_stopped = true;  // never restarted, even if it is stopping right now
    if (s.state != AgentState::running) continue;
    if (s.in_handler) {  // as stop() would
      s.stop_when_handler_returns(Errc::cancelled, StopKind::external);
    } else {
      terminate(static_cast<AgentId>(k), Errc::cancelled, false);
    }
  }
  if (on_escalate_) on_escalate_(group, culprit, reason);
}

bool Runtime::quiescent() const {
  if (pending_.in_use() || answers_head_ != kNil) return false;
  for (std::size_t k = 0; k < agent_count_; ++k) {
    if (agents_[k].state == AgentState::running && agents_[k].mailbox.count) return false;
  }
  return true;
}

void Runtime::shutdown(Duration grace) {
  if (shut_down_) return;
  // Inside any reactor callback (a handler, a reply callback, a timer) the loop cannot
  // be run again, so there is no grace there.
  bool inside_callback = reactor_.in_turn();
  for (std::size_t k = 0; k < agent_count_; ++k) inside_callback |= agents_[k].in_handler;
  draining_ = true;  // new sends, publishes and requests are refused from here on
  if (!inside_callback && grace > Duration::zero()) {
    // Let queued work and requests in flight finish.
    Instant deadline = reactor_.now() + grace;
    while (!quiescent() && reactor_.now() < deadline) {
      if (reactor_.config().manual_clock) {
        if (reactor_.run_until_idle() == 0) break;
      } else {
        reactor_.run_once(deadline - reactor_.now());
      }
    }
  }
  shutting_down_ = true;
  // Answers already given end their requests first, before stopping the requesters
  // would cancel them.
  drop_answers(true);
  for (std::size_t k = agent_count_; k-- > 0;) {
    AgentSlot& s = agents_[k];
    s.restart_pending = false;
    if (s.state != AgentState::running) continue;
    if (s.in_handler) {
      s.stop_when_handler_returns(Errc::shutdown, StopKind::external);
    } else {
      terminate(static_cast<AgentId>(k), Errc::shutdown, false);
    }
  }
  // Answers still queued end their requests; requests from outside any agent that are
  // still unanswered end now, cancelled.
  drop_answers(true);
  pending_.cancel_all();
  reactor_.wheel().cancel(dispatch_timer_);
  shut_down_ = true;
}

}  // namespace tern
