// Reactor on the real Linux backend: sockets, threads, signals.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tern/reactor/reactor.hpp"
#include "tern_test.hpp"

namespace {

using tern::Errc;
using tern::Reactor;

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0); }
  ~SocketPair() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
};

// A socket pair whose read end a reactor watches: each readable event reads what
// arrived and is counted. write() puts a byte in from the other end.
struct CountedReads {
  SocketPair sp;
  int reads = 0;
  char buf[16];
  tern::Result<tern::WatchHandle> watch(Reactor& r) {
    return r.watch(sp.fd[0], tern::kReadable, [this](unsigned events) {
      EXPECT_TRUE(events & tern::kReadable);
      ++reads;
      EXPECT_GT(::read(sp.fd[0], buf, sizeof buf), 0);
    });
  }
  void write(const char* byte) { ASSERT_EQ(::write(sp.fd[1], byte, 1), 1); }
};

TEST(ReactorIo, WatchReportsReadableAndUnwatchStopsIt) {
  Reactor r;
  CountedReads io;
  auto h = io.watch(r);
  ASSERT_TRUE(h.ok());
  io.write("x");
  for (int i = 0; i < 50 && io.reads == 0; ++i) r.run_once(tern::ms(100));
  EXPECT_EQ(io.reads, 1);
  EXPECT_EQ(r.unwatch(*h), Errc::ok);
  EXPECT_EQ(r.unwatch(*h), Errc::not_found);
  io.write("y");
  r.run_once(tern::Duration::zero());
  r.run_once(tern::ms(20));
  EXPECT_EQ(io.reads, 1);
}

// A loop kept busy by a call that re-posts itself skips the I/O poll on most turns,
// but must still poll within kMaxBusyTurnsWithoutPoll turns: I/O is never starved.
// The manual clock does not move, so only the turn bound can make it poll.
void busy_loop_still_sees_io(const tern::ManualClock* clock) {
  Reactor r(tern::ReactorConfig{.manual_clock = clock});
  CountedReads io;
  auto h = io.watch(r);
  ASSERT_TRUE(h.ok());
  struct Spinner {
    Reactor* r;
    std::uint64_t runs = 0;
    void post() {
      EXPECT_EQ(r->post([this] {
        ++runs;
        post();
      }), Errc::ok);
    }
  } spin{&r};
  spin.post();
  for (int i = 0; i < 3; ++i) r.run_once(tern::Duration::zero());  // mid-way into a busy run
  io.write("x");
  int turns = 0;
  while (io.reads == 0 && turns < 10 * static_cast<int>(Reactor::kMaxBusyTurnsWithoutPoll)) {
    r.run_once(tern::Duration::zero());
    ++turns;
  }
  EXPECT_EQ(io.reads, 1);
  EXPECT_LE(turns, static_cast<int>(Reactor::kMaxBusyTurnsWithoutPoll));
  EXPECT_GE(spin.runs, static_cast<std::uint64_t>(turns));  // the spinner ran every turn
  // And the busy turns did skip the poll: 320 more turns, at least one poll per bound,
  // and with the manual clock no more than that. (With the real clock kMaxPollGap may
  // also trigger polls: an emulator can take longer than 100 us per turn.)
  const std::uint64_t polls_before = r.stats().polls;
  const std::uint64_t n = 10 * Reactor::kMaxBusyTurnsWithoutPoll;
  for (std::uint64_t i = 0; i < n; ++i) r.run_once(tern::Duration::zero());
  const std::uint64_t polls = r.stats().polls - polls_before;
  EXPECT_GE(polls, n / Reactor::kMaxBusyTurnsWithoutPoll);
  if (clock) {
    EXPECT_LE(polls, n / Reactor::kMaxBusyTurnsWithoutPoll + 1);
  }
  EXPECT_EQ(r.unwatch(*h), Errc::ok);
}

TEST(ReactorIo, BusyLoopStillPollsForIoManualClock) {
  tern::ManualClock clock;
  busy_loop_still_sees_io(&clock);
}

TEST(ReactorIo, BusyLoopStillPollsForIoRealClock) { busy_loop_still_sees_io(nullptr); }

// A stop() that run() never consumed (the loop is driven by run_until_idle) must not
// make later turns skip the I/O poll: it is not work.
TEST(ReactorIo, RunUntilIdleAfterStopStillPollsIo) {
  tern::ManualClock clock;
  Reactor r(tern::ReactorConfig{.manual_clock = &clock});
  CountedReads io;
  auto h = io.watch(r);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(r.post([&] { r.stop(); }), Errc::ok);  // stop() from a callback, as documented
  r.run_until_idle();
  io.write("x");
  r.run_until_idle();
  EXPECT_EQ(io.reads, 1);
  EXPECT_EQ(r.unwatch(*h), Errc::ok);
}

TEST(ReactorIo, UnwatchInsideOwnCallbackIsSafe) {
  Reactor r;
  SocketPair sp;
  int calls = 0;
  tern::WatchHandle self;
  auto h = r.watch(sp.fd[0], tern::kReadable, [&](unsigned) {
    ++calls;
    EXPECT_EQ(r.unwatch(self), Errc::ok);  // frees the entry after this call returns
  });
  ASSERT_TRUE(h.ok());
  self = *h;
  ASSERT_EQ(::write(sp.fd[1], "x", 1), 1);
  for (int i = 0; i < 50 && calls == 0; ++i) r.run_once(tern::ms(100));
  r.run_once(tern::ms(20));  // still readable (never read), but unwatched
  EXPECT_EQ(calls, 1);
  // The slot is reusable.
  EXPECT_TRUE(r.watch(sp.fd[0], tern::kReadable, [](unsigned) {}).ok());
}

TEST(ReactorIo, WritableAndModify) {
  Reactor r;
  SocketPair sp;
  unsigned seen = 0;
  auto h = r.watch(sp.fd[0], tern::kWritable, [&](unsigned e) { seen |= e; });
  ASSERT_TRUE(h.ok());
  r.run_once(tern::ms(100));
  EXPECT_EQ(seen, unsigned{tern::kWritable});
  EXPECT_EQ(r.modify(*h, tern::kReadable), Errc::ok);
  seen = 0;
  r.run_once(tern::ms(20));
  EXPECT_EQ(seen, 0u);  // nothing to read yet
  ASSERT_EQ(::write(sp.fd[1], "x", 1), 1);
  for (int i = 0; i < 50 && seen == 0; ++i) r.run_once(tern::ms(100));
  EXPECT_EQ(seen, unsigned{tern::kReadable});
  EXPECT_EQ(r.unwatch(*h), Errc::ok);
}

TEST(ReactorIo, InboxFromAnotherThreadArrivesInOrder) {
  Reactor r;
  constexpr int kItems = 20000;
  int expected = 0;
  bool in_order = true;
  tern::Inbox<int, 64> inbox(r, [&](int& v) {
    if (v != expected) in_order = false;
    ++expected;
  });
  std::atomic<int> full_seen{0};
  std::thread producer([&] {
    for (int i = 0; i < kItems;) {
      if (inbox.push(i) == Errc::ok) {
        ++i;
      } else {
        full_seen.fetch_add(1);
        std::this_thread::yield();
      }
    }
  });
  for (int guard = 0; guard < 1000000 && expected < kItems; ++guard) r.run_once(tern::ms(100));
  producer.join();
  EXPECT_EQ(expected, kItems);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(inbox.rejected(), static_cast<std::uint32_t>(full_seen.load()));
}

TEST(ReactorIo, WakeEndsALongWait) {
  Reactor r;
  int ran = 0;
  std::thread t([&] { EXPECT_EQ(r.inbox().push([&ran] { ++ran; }), Errc::ok); });
  // Without the wake this would block for the whole minute.
  for (int i = 0; i < 3 && ran == 0; ++i) r.run_once(tern::seconds(60));
  t.join();
  EXPECT_EQ(ran, 1);
}

TEST(ReactorIo, SigtermStopsRunGracefully) {
  Reactor r;
  ASSERT_EQ(r.stop_on_signals(), Errc::ok);
  bool fired = false;
  ASSERT_TRUE(r.after(tern::ms(10), [&] {
    fired = true;
    ::raise(SIGTERM);
  }).ok());
  r.run();  // returns only through the signal
  EXPECT_TRUE(fired);
}

TEST(ReactorIo, RealClockTimerFires) {
  Reactor r;
  bool fired = false;
  tern::Instant start = r.now();
  ASSERT_TRUE(r.after(tern::ms(5), [&] {
    fired = true;
    r.stop();
  }).ok());
  r.run();
  EXPECT_TRUE(fired);
  EXPECT_GE(r.now() - start, tern::ms(5));  // never early
}

}  // namespace
