// The bounded RESP reader and the command formatter.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <string>

#include "tollgate/redis/resp.hpp"

using namespace tollgate::redis;

namespace {

long rss_mb() {
  long pages = 0, rss = 0;
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (f) {
    if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    std::fclose(f);
  }
  return rss * sysconf(_SC_PAGESIZE) / (1024 * 1024);
}

std::unique_ptr<Reply> one(const std::string &bytes) {
  Reader r;
  REQUIRE(r.feed(bytes.data(), bytes.size()));
  std::unique_ptr<Reply> out;
  REQUIRE(r.next(out) == Reader::Status::reply);
  return out;
}

}  // namespace

TEST_CASE("resp: every reply type", "[resp]") {
  CHECK(one("+OK\r\n")->type == Reply::Type::status);
  auto e = one("-NOSCRIPT No matching script\r\n");
  CHECK(e->type == Reply::Type::error);
  CHECK(e->str == "NOSCRIPT No matching script");
  auto i = one(":-42\r\n");
  CHECK(i->type == Reply::Type::integer);
  CHECK(i->integer == -42);
  CHECK(one("$-1\r\n")->type == Reply::Type::nil);
  CHECK(one("*-1\r\n")->type == Reply::Type::nil);
  const std::string binary("a\0b\r\nc", 6);
  auto b = one("$6\r\n" + binary + "\r\n");
  CHECK(b->type == Reply::Type::string);
  CHECK(b->str == binary);
  auto a = one("*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n+y\r\n");
  REQUIRE(a->type == Reply::Type::array);
  REQUIRE(a->elements.size() == 3);
  CHECK(a->elements[0]->integer == 1);
  REQUIRE(a->elements[1]->elements.size() == 2);
  CHECK(a->elements[1]->elements[0]->str == "x");
  CHECK(a->elements[1]->elements[1]->type == Reply::Type::nil);
  CHECK(a->elements[2]->str == "y");
}

TEST_CASE("resp: replies split byte by byte, and several in one feed",
          "[resp]") {
  const std::string stream = "*2\r\n:7\r\n$3\r\nabc\r\n+PONG\r\n:9\r\n";
  Reader r;
  std::vector<std::unique_ptr<Reply>> got;
  for (char c : stream) {
    REQUIRE(r.feed(&c, 1));
    std::unique_ptr<Reply> out;
    while (r.next(out) == Reader::Status::reply) got.push_back(std::move(out));
  }
  REQUIRE(got.size() == 3);
  CHECK(got[0]->elements[1]->str == "abc");
  CHECK(got[1]->str == "PONG");
  CHECK(got[2]->integer == 9);
}

TEST_CASE("resp: absurd headers are refused without allocating them",
          "[resp]") {
  const long before = rss_mb();
  {
    Reader r;
    const std::string bytes = "*888888880\r\n";
    REQUIRE(r.feed(bytes.data(), bytes.size()));
    std::unique_ptr<Reply> out;
    CHECK(r.next(out) == Reader::Status::error);
    CHECK(r.error().find("888888880") != std::string::npos);
  }
  {
    // Deeper than the limit.
    Reader r;
    const std::string bytes =
        "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
    REQUIRE(r.feed(bytes.data(), bytes.size()));
    std::unique_ptr<Reply> out;
    CHECK(r.next(out) == Reader::Status::error);
  }
  {
    // A huge announced bulk string is refused as soon as its header is
    // whole, even arriving in pieces, before any of its bytes.
    Reader r;
    std::unique_ptr<Reply> out;
    REQUIRE(r.feed("$99999", 6));
    CHECK(r.next(out) == Reader::Status::more);
    REQUIRE(r.feed("9999999\r\nxx", 12));
    CHECK(r.next(out) == Reader::Status::error);
    CHECK(r.error() ==
          "protocol: a string of 999999999999 bytes exceeds the limit of " +
              std::to_string(ReaderLimits{}.max_bulk_len));
    CHECK_FALSE(r.feed("x", 1));  // the reader is done
  }
  {
    // The same inside an array, and a length beyond 64 bits (hiredis 0.14
    // reports that one itself).
    Reader r;
    const std::string bytes = "*2\r\n:1\r\n$99999999999999999999999\r\n";
    REQUIRE(r.feed(bytes.data(), bytes.size()));
    std::unique_ptr<Reply> out;
    CHECK(r.next(out) == Reader::Status::error);
    CHECK(r.error().rfind("protocol: ", 0) == 0);
  }
  {
    // A bulk string within the limit waits for its bytes; one at the limit
    // of a small reader is accepted whole.
    ReaderLimits small;
    small.max_bulk_len = 8;
    Reader r(small);
    std::unique_ptr<Reply> out;
    REQUIRE(r.feed("$8\r\nabcd", 8));
    CHECK(r.next(out) == Reader::Status::more);
    REQUIRE(r.feed("efgh\r\n$9\r\n", 10));
    REQUIRE(r.next(out) == Reader::Status::reply);
    CHECK(out->str == "abcdefgh");
    CHECK(r.next(out) == Reader::Status::error);  // 9 > 8, before its bytes
  }
  {
    // A line that never ends is refused past max_line, not max_buffer.
    Reader r;
    std::unique_ptr<Reply> out;
    const std::string head = "+" + std::string(60 * 1024, 'a');
    REQUIRE(r.feed(head.data(), head.size()));
    CHECK(r.next(out) == Reader::Status::more);
    const std::string more(8 * 1024, 'a');
    REQUIRE(r.feed(more.data(), more.size()));
    CHECK(r.next(out) == Reader::Status::error);
    CHECK(r.error() == "protocol: a line of more than 65536 bytes");
  }
  {
    Reader r;
    const std::string bytes = "!garbage\r\n";
    REQUIRE(r.feed(bytes.data(), bytes.size()));
    std::unique_ptr<Reply> out;
    CHECK(r.next(out) == Reader::Status::error);
    CHECK(r.error().rfind("protocol: ", 0) == 0);
  }
  CHECK(rss_mb() - before < 64);
}

TEST_CASE("resp: formatted commands round-trip through the reader", "[resp]") {
  const std::string binary("k\0{x}\r\n", 7);
  std::string cmd;
  format_command({"EVALSHA", "abc", "1", binary, ""}, cmd);
  Reader r;
  REQUIRE(r.feed(cmd.data(), cmd.size()));
  std::unique_ptr<Reply> out;
  REQUIRE(r.next(out) == Reader::Status::reply);
  REQUIRE(out->elements.size() == 5);
  CHECK(out->elements[0]->str == "EVALSHA");
  CHECK(out->elements[3]->str == binary);
  CHECK(out->elements[4]->str.empty());
  // Exact bytes, as Redis documents the request format.
  std::string set;
  format_command({"SET", "k", ""}, set);
  CHECK(set == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  std::string big;
  format_command({std::string(12345, 'x')}, big);
  CHECK(big.rfind("*1\r\n$12345\r\n", 0) == 0);
  CHECK(big.size() == 4 + 8 + 12345 + 2);
}
