// Batcher<Item, Res, B>: gathers items until it holds B of them or max_delay
// has passed since the first, then makes one batch call; each item's caller
// gets its own outcome from the batch's answer, or its own timeout. An
// embeddings API that takes many inputs in one request is the model.
//
//   using Embedder = tern::Batcher<Text, Vector, 32>;
//   Embedder batcher(reactor, {.max_delay = tern::ms(5)},
//       [this](std::span<Text> texts, Embedder::Ticket ticket) {
//         post_embeddings(texts, ticket);      // serialise the texts now
//       });
//   auto id = batcher.add(text, reactor.now() + tern::seconds(2),
//       [](tern::Result<Vector> r) { use(r); });
//   ...                            // when the response comes back:
//   for (std::size_t i = 0; i < ticket.size(); ++i)
//     ticket.complete(i, vectors[i]);
//
// See examples/embed_client for batches over HTTPS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/pending_table.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern/detail/slot_generation.hpp"
#include "tern/detail/survival.hpp"
#include "tern/reactor/reactor.hpp"

namespace tern {

struct BatcherConfig {
  // An open batch flushes this long after its first item, full or not. Zero
  // gathers only what is added within the same turn. 0..Duration::max().
  Duration max_delay = ms(10);
};

struct BatcherStats {
  std::size_t pending = 0;    // items gathered and not yet flushed
  std::size_t waiting = 0;    // items (gathered or flushed) without an outcome
  std::size_t in_flight = 0;  // batch calls made and not yet ended
  std::size_t in_flight_high_water = 0;
  Count added = 0;
  Count rejected = 0;          // add() refused with Errc::full
  Count batches = 0;           // batch calls made
  Count flushed_full = 0;      // ... because the batch held B items
  Count flushed_by_delay = 0;  // ... because of max_delay or flush()
  Count deferred = 0;  // batches due that waited for an in-flight slot
  Count items_flushed = 0;
  Count delivered = 0;  // items answered with a value
  Count failed = 0;     // items answered with an error
  Count timed_out = 0;  // items whose own deadline passed first
  Count cancelled = 0;
  // Answers for items or batches that had already ended (dropped).
  Count late = 0;
  // Batch calls whose items had all left before the answer.
  Count abandoned = 0;
};

// Capacity: B items per batch and at most MaxInFlight batch calls at once.
// There are MaxInFlight + 1 batch buffers of B items, so items keep gathering
// while MaxInFlight calls are out; add() returns Errc::full (counted, nothing
// changes, the item is not consumed) when every buffer is taken. A batch that
// falls due while MaxInFlight calls are out waits, in order, for one of them to
// end.
//
// The flush callback, flush(items, ticket), always runs from the reactor's
// timer wheel (never inside add()). `items` (in add() order, without items that
// already ended) is valid only during that call: serialise or move what the
// request needs. Answer through the ticket, now or later:
//   ticket.complete(i, value), ticket.fail(i, errc): item i's own outcome;
//   ticket.fail_all(errc): every item still waiting gets errc;
//   ticket.finish(): ends the batch; items not answered get Errc::no_reply.
// The batch call ends when no item of it is still waiting. An item keeps its
// own deadline throughout: one that times out (or is cancelled) before its
// batch is flushed is left out of the batch; after the flush, the answer for it
// is dropped and counted as late. If every item of a flushed batch has left,
// the batch is abandoned: its in-flight slot is free at once and its answers
// are late.
//
// An item's on_done may destroy the Batcher (nothing of it is touched after
// on_done returns; the items still waiting get Errc::cancelled from the
// destructor), except while the flush callback runs: the span it was given
// and the callback itself live in the Batcher, so destroying it then (from
// the flush callback, or from an on_done that an answer given inside it runs)
// is a contract violation (panic).
template <typename Item, typename Res, std::size_t B,
          std::size_t MaxInFlight = 1,
          std::size_t CallbackBytes = 4 * sizeof(void*),
          std::size_t FlushBytes = 4 * sizeof(void*)>
class Batcher {
  static_assert(B > 0 && B < 0xFFFF, "Batcher batch size out of range");
  static_assert(MaxInFlight > 0 && MaxInFlight < 0xFF,
                "Batcher MaxInFlight out of range");
  static_assert(std::is_nothrow_move_constructible_v<Item>,
                "items move within a batch when one leaves it");

 public:
  static constexpr std::size_t kBatchSize = B;
  static constexpr std::size_t kBuffers = MaxInFlight + 1;
  using Callback = InplaceFunction<void(Result<Res>), CallbackBytes>;
  using Owner = const void*;
  // Names one item: slot (buffer * B + record) and the record's generation.
  using ItemId = RequestId;

  // The batch call's handle: copyable, every copy names the same batch. The
  // Batcher must outlive the tickets it handed out. Each function returns ok,
  // or one of:
  //   late (counted): the batch has ended, or that item already has its
  //     outcome;
  //   not_found: an empty ticket;
  //   invalid_argument: index >= size(), or Errc::ok given as an error.
  class Ticket {
   public:
    Ticket() = default;
    // Item `index` (into the span given to the flush) ends with `value`.
    Errc complete(std::size_t index, Res value) {
      if (batcher_ == nullptr) return Errc::not_found;
      return batcher_->answer_item(buffer_, generation_, index,
                                   Result<Res>(std::move(value)));
    }
    // Item `index` ends with error `e`: a batch that partly fails.
    Errc fail(std::size_t index, Errc e) {
      if (batcher_ == nullptr) return Errc::not_found;
      if (e == Errc::ok) return Errc::invalid_argument;
      return batcher_->answer_item(buffer_, generation_, index, Result<Res>(e));
    }
    // Every item still waiting ends with error `e`; the batch ends.
    Errc fail_all(Errc e) {
      if (batcher_ == nullptr) return Errc::not_found;
      if (e == Errc::ok) return Errc::invalid_argument;
      return batcher_->answer_rest(buffer_, generation_, e);
    }
    // Ends the batch; items not answered yet end with Errc::no_reply.
    Errc finish() {
      if (batcher_ == nullptr) return Errc::not_found;
      return batcher_->answer_rest(buffer_, generation_, Errc::no_reply);
    }
    // Items in the batch (the span's size at flush).
    std::size_t size() const { return size_; }
    // True while the batch still waits for answers.
    bool pending() const {
      return batcher_ != nullptr && batcher_->batch_live(buffer_, generation_);
    }

   private:
    friend class Batcher;
    Ticket(Batcher* b, std::uint32_t buffer, std::uint32_t generation,
           std::size_t size)
        : batcher_(b),
          generation_(generation),
          buffer_(static_cast<std::uint16_t>(buffer)),
          size_(static_cast<std::uint16_t>(size)) {}
    // 16 bytes on 64-bit hosts, 12 on 32-bit: cheap to capture in a callback.
    Batcher* batcher_ = nullptr;
    std::uint32_t generation_ = 0;
    std::uint16_t buffer_ = 0;
    std::uint16_t size_ = 0;
  };
  using Flush = InplaceFunction<void(std::span<Item>, Ticket), FlushBytes>;

  // An empty `flush` is a contract violation (panic).
  Batcher(Reactor& reactor, const BatcherConfig& config, Flush flush)
      : reactor_(reactor),
        wheel_(reactor.wheel()),
        config_(config),
        flush_(std::move(flush)) {
    if (!flush_) panic("Batcher: empty flush callback");
    if (config_.max_delay < Duration::zero() || config_.max_delay > Duration::max()) {
      panic("Batcher: max_delay outside 0..Duration::max()");
    }
    for (std::size_t i = 0; i < kBuffers; ++i) {
      Buffer& b = buffers_[i];
      b.self = this;
      b.index = static_cast<std::uint8_t>(i);
      b.timer.set_callback(&Batcher::on_flush_due, &b);
      for (std::size_t r = 0; r < B; ++r) {
        b.recs[r].buffer = &b;
        b.recs[r].index = static_cast<std::uint16_t>(r);
        b.recs[r].timer.set_callback(&Batcher::on_item_deadline, &b.recs[r]);
      }
      reset_records(b);
    }
  }
  // Cancels every item still waiting (callbacks run with Errc::cancelled);
  // answers through tickets handed out earlier must not arrive afterwards.
  // Destroying the Batcher while its flush callback runs is a contract
  // violation (panic).
  ~Batcher() {
    for (const Buffer& b : buffers_) {
      if (b.in_flush) panic("Batcher destroyed while its flush callback runs");
    }
    detail::object_destroyed(alive_);  // stops the loop that ran us
    closing_ = true;  // an add() from a callback run here is refused
    (void)cancel_all();
    for (Buffer& b : buffers_) wheel_.cancel(b.timer);
  }
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Adds `item` to the open batch; on_done runs exactly once, never inside
  // add(): with the item's value or error from the batch's answer,
  // Errc::no_reply (the batch finished without it), Errc::timeout at
  // `deadline` (Instant::never(): none), or Errc::cancelled.
  // Errors: full (every buffer is taken: MaxInFlight calls out and one batch
  // of B waiting; counted; the item is not consumed), invalid_argument (empty
  // on_done; on Cortex-M, a deadline or a max_delay from now that the wheel does not
  // reach: see TimerWheel::reaches()), shutdown (from a callback run by the
  // destructor; not consumed).
  Result<ItemId> add(Item&& item, Instant deadline, Callback on_done,
                     Owner owner = nullptr) {
    return add_impl(std::move(item), deadline, std::move(on_done), owner);
  }
  Result<ItemId> add(const Item& item, Instant deadline, Callback on_done,
                     Owner owner = nullptr) {
    return add_impl(item, deadline, std::move(on_done), owner);
  }

  // Flushes the open batch on the next turn instead of after max_delay (it
  // still waits for an in-flight slot). Nothing happens if no batch is open.
  void flush() {
    if (current_ != nullptr) wheel_.arm(current_->timer, wheel_.current());
  }

  // Ends item `id` with Errc::cancelled (a gathered item leaves its batch; a
  // flushed one's answer will be late). Returns ok; late if it already ended
  // (not counted); not_found if `id` was never issued here.
  Errc cancel(ItemId id) {
    Rec* r = lookup(id);
    if (r == nullptr) return miss(id);
    ++stats_.cancelled;
    end_rec(*r, Result<Res>(Errc::cancelled), false);
    return Errc::ok;
  }
  // Cancels every item added with `owner`; returns how many.
  std::size_t cancel_all(Owner owner) {
    return cancel_matching([owner](const Rec& r) { return r.owner == owner; });
  }
  // Cancels every item; returns how many.
  std::size_t cancel_all() {
    return cancel_matching([](const Rec&) { return true; });
  }

  bool pending(ItemId id) const { return lookup(id) != nullptr; }
  const BatcherStats& stats() const { return stats_; }
  const BatcherConfig& config() const { return config_; }

 private:
  enum class RecState : std::uint8_t { free, gathered, flushed, ended };
  enum class BufState : std::uint8_t {
    free,
    open,       // gathering items; timer armed for when it is due
    in_flight,  // flushed; answers outstanding
    draining,   // ended during its own flush call; freed when that call returns
  };
  struct Buffer;
  struct Rec {
    Timer timer;
    Callback on_done;
    Owner owner = nullptr;
    Buffer* buffer = nullptr;
    std::uint32_t generation = detail::kFirstGeneration;
    std::uint16_t index = 0;
    std::uint16_t pos = 0;  // the item's place in the batch
    RecState state = RecState::free;
  };
  struct Buffer {
    Rec recs[B];
    Timer timer;  // when the open batch is due
    Batcher* self = nullptr;
    alignas(Item) unsigned char items[sizeof(Item) * B];
    std::uint16_t rec_of[B];  // place in the batch -> record
    std::uint16_t free_recs[B];
    std::uint16_t free_count = 0;
    std::uint16_t count = 0;       // items gathered (open) or sent (in flight)
    std::uint16_t waiting = 0;     // sent items still waiting (in flight)
    // Of the batch call; a Ticket carries it.
    std::uint32_t generation = detail::kFirstGeneration;
    std::uint64_t due_seq = 0;  // nonzero: due, waiting for an in-flight slot
    std::uint8_t index = 0;
    BufState state = BufState::free;
    bool in_flush = false;
    bool answered = false;  // the ticket gave at least one outcome

    Item* item(std::size_t i) {
      return std::launder(reinterpret_cast<Item*>(items + sizeof(Item) * i));
    }
  };

  template <typename U>
  Result<ItemId> add_impl(U&& item, Instant deadline, Callback on_done,
                          Owner owner) {
    if (!on_done || !wheel_.reaches_or_never(deadline)) {
      return Errc::invalid_argument;
    }
    if (closing_) return Errc::shutdown;
    Buffer* b = current_;
    if (b == nullptr || b->count == B) {
      const Instant due = reactor_.now() + config_.max_delay;
      if (!wheel_.reaches(due)) return Errc::invalid_argument;
      b = nullptr;
      for (Buffer& candidate : buffers_) {
        if (candidate.state == BufState::free) {
          b = &candidate;
          break;
        }
      }
      if (b == nullptr) {
        ++stats_.rejected;
        return Errc::full;
      }
      b->state = BufState::open;
      b->due_seq = 0;
      wheel_.arm(b->timer, due);
      current_ = b;
    }
    Rec& r = b->recs[b->free_recs[--b->free_count]];
    const std::uint16_t pos = b->count++;
    new (b->item(pos)) Item(std::forward<U>(item));
    b->rec_of[pos] = r.index;
    r.pos = pos;
    r.state = RecState::gathered;
    r.owner = owner;
    r.on_done = std::move(on_done);
    if (deadline != Instant::never()) wheel_.arm(r.timer, deadline);
    ++stats_.added;
    ++stats_.pending;
    ++stats_.waiting;
    if (b->count == B) {
      current_ = nullptr;
      wheel_.arm(b->timer, wheel_.current());  // full: flush on the next turn
    }
    return ItemId::make(static_cast<std::uint32_t>(b->index * B + r.index),
                        r.generation);
  }

  static void on_flush_due(void* context) {
    Buffer& b = *static_cast<Buffer*>(context);
    b.self->flush_due(b);
  }

  void flush_due(Buffer& b) {
    if (b.state != BufState::open) return;
    if (in_flight_ >= MaxInFlight) {
      if (b.due_seq == 0) {
        b.due_seq = ++due_seq_;
        ++stats_.deferred;
      }
      return;
    }
    if (current_ == &b) current_ = nullptr;
    const std::uint16_t n = b.count;
    b.state = BufState::in_flight;
    b.due_seq = 0;
    b.waiting = n;
    b.answered = false;
    for (std::uint16_t i = 0; i < n; ++i)
      b.recs[b.rec_of[i]].state = RecState::flushed;
    ++in_flight_;
    ++stats_.in_flight;
    if (stats_.in_flight > stats_.in_flight_high_water)
      stats_.in_flight_high_water = stats_.in_flight;
    ++stats_.batches;
    if (n == B) {
      ++stats_.flushed_full;
    } else {
      ++stats_.flushed_by_delay;
    }
    stats_.items_flushed += n;
    stats_.pending -= n;
    b.in_flush = true;
    flush_(std::span<Item>(b.item(0), n),
           Ticket(this, b.index, b.generation, n));
    // Re-read: the batch may have been answered, even ended, inside the call.
    b.in_flush = false;
    for (std::uint16_t i = 0; i < n; ++i) b.item(i)->~Item();
    if (b.state == BufState::draining) release(b);
  }

  // Arms every batch waiting for an in-flight slot, oldest first; each flushes
  // on the next turn if a slot is still free then, else keeps its place.
  void kick_due() {
    if (in_flight_ >= MaxInFlight) return;
    std::uint64_t after = 0;
    for (;;) {
      Buffer* next = nullptr;
      for (Buffer& b : buffers_) {
        if (b.state == BufState::open && b.due_seq > after &&
            (next == nullptr || b.due_seq < next->due_seq))
          next = &b;
      }
      if (next == nullptr) return;
      wheel_.arm(next->timer, wheel_.current());
      after = next->due_seq;
    }
  }

  bool batch_live(std::uint32_t buffer, std::uint32_t generation) const {
    return buffer < kBuffers && buffers_[buffer].state == BufState::in_flight &&
           buffers_[buffer].generation == generation;
  }

  Errc check_ticket(std::uint32_t buffer, std::uint32_t generation) {
    const Errc e = detail::classify_ticket(
        buffer, generation, kBuffers,
        [&](std::uint32_t b) { return batch_live(b, generation); });
    if (e == Errc::late) ++stats_.late;
    return e;
  }

  Errc answer_item(std::uint32_t buffer, std::uint32_t generation,
                   std::size_t index, Result<Res> outcome) {
    Errc e = check_ticket(buffer, generation);
    if (e != Errc::ok) return e;
    Buffer& b = buffers_[buffer];
    if (index >= B || index >= b.count) return Errc::invalid_argument;
    Rec& r = b.recs[b.rec_of[index]];
    if (r.state != RecState::flushed) {
      ++stats_.late;  // that item timed out or was cancelled after the flush
      return Errc::late;
    }
    if (outcome.ok()) {
      ++stats_.delivered;
    } else {
      ++stats_.failed;
    }
    end_rec(r, std::move(outcome), true);
    return Errc::ok;
  }

  Errc answer_rest(std::uint32_t buffer, std::uint32_t generation, Errc error) {
    Errc e = check_ticket(buffer, generation);
    if (e != Errc::ok) return e;
    Buffer& b = buffers_[buffer];
    const std::uint16_t n = b.count;
    detail::Survival guard(alive_);
    for (std::uint16_t i = 0; i < n; ++i) {
      // Ended (and maybe reused) by one of these callbacks: stop.
      if (b.generation != generation) break;
      Rec& r = b.recs[b.rec_of[i]];
      if (r.state != RecState::flushed) continue;
      ++stats_.failed;
      end_rec(r, Result<Res>(error), true);
      if (!guard.alive) break;  // on_done destroyed the Batcher
    }
    return Errc::ok;
  }

  static void on_item_deadline(void* context) {
    Rec& r = *static_cast<Rec*>(context);
    Batcher& self = *r.buffer->self;
    ++self.stats_.timed_out;
    self.end_rec(r, Result<Res>(Errc::timeout), false);
  }

  // Retires the item before running user code, so its callback may do anything.
  void end_rec(Rec& r, Result<Res> outcome, bool answered) {
    Buffer& b = *r.buffer;
    wheel_.cancel(r.timer);
    Callback cb = std::move(r.on_done);
    r.owner = nullptr;
    detail::bump_generation(r.generation);
    --stats_.waiting;
    if (r.state == RecState::gathered) {
      remove_gathered(b, r);
    } else {
      r.state = RecState::ended;
      if (answered) b.answered = true;
      if (--b.waiting == 0) {
        if (!b.answered) ++stats_.abandoned;
        end_batch(b);
      }
    }
    cb(std::move(outcome));
  }

  // Takes a gathered item out of its open batch, keeping the others in order.
  void remove_gathered(Buffer& b, Rec& r) {
    b.item(r.pos)->~Item();
    for (std::uint16_t i = r.pos; i + 1 < b.count; ++i) {
      new (b.item(i)) Item(std::move(*b.item(i + 1)));
      b.item(i + 1)->~Item();
      b.rec_of[i] = b.rec_of[i + 1];
      b.recs[b.rec_of[i]].pos = i;
    }
    --b.count;
    --stats_.pending;
    r.state = RecState::free;
    b.free_recs[b.free_count++] = r.index;
    if (b.count == 0) {
      if (current_ == &b) current_ = nullptr;
      wheel_.cancel(b.timer);
      release(b);
    }
  }

  void end_batch(Buffer& b) {
    // Its tickets read as late from now on.
    detail::bump_generation(b.generation);
    --in_flight_;
    --stats_.in_flight;
    if (b.in_flush) {
      b.state = BufState::draining;  // the flush call still reads its items
    } else {
      release(b);
    }
    kick_due();
  }

  void release(Buffer& b) {
    b.state = BufState::free;
    b.count = 0;
    b.waiting = 0;
    b.due_seq = 0;
    reset_records(b);
  }

  static void reset_records(Buffer& b) {
    b.free_count = static_cast<std::uint16_t>(B);
    for (std::size_t i = 0; i < B; ++i) {
      b.free_recs[i] = static_cast<std::uint16_t>(B - 1 - i);  // record 0 first
      b.recs[i].state = RecState::free;
    }
  }

  Rec* lookup(ItemId id) const {
    std::uint32_t slot = id.slot();
    if (slot >= kBuffers * B) return nullptr;
    Rec& r = const_cast<Rec&>(buffers_[slot / B].recs[slot % B]);
    bool live = r.state == RecState::gathered || r.state == RecState::flushed;
    return (live && r.generation == id.generation()) ? &r : nullptr;
  }
  Errc miss(ItemId id) const {
    return detail::classify_missed_id(
        id.slot(), id.generation(), kBuffers * B, [this](std::uint32_t slot) {
          return buffers_[slot / B].recs[slot % B].generation;
        });
  }

  template <typename Pred>
  std::size_t cancel_matching(Pred pred) {
    detail::Survival guard(alive_);  // an on_done may destroy this object
    std::size_t n = 0;
    for (Buffer& b : buffers_) {
      for (Rec& r : b.recs) {
        if (r.state != RecState::gathered && r.state != RecState::flushed)
          continue;
        if (!pred(static_cast<const Rec&>(r))) continue;
        ++stats_.cancelled;
        ++n;
        end_rec(r, Result<Res>(Errc::cancelled), false);
        if (!guard.alive) return n;
      }
    }
    return n;
  }

  Reactor& reactor_;
  TimerWheel& wheel_;
  BatcherConfig config_;
  Flush flush_;
  Buffer buffers_[kBuffers];
  Buffer* current_ = nullptr;  // the open batch that takes new items
  std::size_t in_flight_ = 0;
  std::uint64_t due_seq_ = 0;
  bool closing_ = false;  // being destroyed: add() refuses
  bool* alive_ = nullptr;  // the innermost Survival's flag
  BatcherStats stats_;
};

}  // namespace tern
