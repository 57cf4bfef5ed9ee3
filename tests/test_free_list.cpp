// FreeList: the stash of objects handed between threads (async Redis
// checks are set up on the caller's thread and finished on the I/O
// thread).
#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "tollgate/free_list.hpp"

namespace {

std::atomic<int> g_live{0};

struct Counted {
  Counted() { ++g_live; }
  ~Counted() { --g_live; }
  int value = 0;
};

}  // namespace

TEST_CASE("free list: reuses what it is given, up to its capacity",
          "[free_list]") {
  {
    tollgate::FreeList<Counted, 2> list;
    Counted *a = list.take();
    Counted *b = list.take();
    Counted *c = list.take();
    CHECK(g_live == 3);
    a->value = 7;
    list.give(a);
    list.give(b);
    list.give(c);  // over capacity: deleted
    CHECK(g_live == 2);
    // The last one given comes back first, as it was left.
    Counted *again = list.take();
    CHECK(again == b);
    Counted *other = list.take();
    CHECK(other == a);
    CHECK(other->value == 7);
    Counted *fresh = list.take();  // empty: a new one
    CHECK(fresh != a);
    CHECK(fresh != b);
    CHECK(g_live == 3);
    list.give(again);
    list.give(other);
    delete fresh;
  }
  CHECK(g_live == 0);  // the destructor frees what it kept
}

TEST_CASE("free list: one thread takes while another gives, nothing lost",
          "[free_list][concurrency]") {
  {
    tollgate::FreeList<Counted, 64> list;
    std::atomic<Counted *> slot[128] = {};
    std::atomic<bool> stop{false};
    // The producer takes objects and hands them over; the consumer gives
    // them back (a contended lock just means new/delete).
    std::thread consumer([&] {
      while (!stop.load()) {
        for (auto &s : slot) {
          Counted *p = s.exchange(nullptr);
          if (p) list.give(p);
        }
      }
    });
    for (int i = 0; i < 200000; ++i) {
      Counted *p = list.take();
      Counted *expected = nullptr;
      if (!slot[i % 128].compare_exchange_strong(expected, p)) list.give(p);
    }
    stop.store(true);
    consumer.join();
    for (auto &s : slot)
      if (Counted *p = s.exchange(nullptr)) list.give(p);
    CHECK(g_live <= 64);
  }
  CHECK(g_live == 0);
}
