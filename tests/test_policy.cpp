// Policy validation: bad values are refused with the right code, and values
// that would overflow are refused instead of wrapping.
#include <catch2/catch.hpp>

#include "tollgate/policy.hpp"

using namespace tollgate;

TEST_CASE("policy validation", "[policy]") {
  Policy p;
  CHECK(make_policy(0, 100, 1000, 0, 0, p) == Errc::ok);
  CHECK(p.capacity == 100);
  CHECK(p.interval_us == 10000);
  CHECK(make_policy(0, 3, 1000, 0, 0, p) == Errc::ok);
  CHECK(p.interval_us == 333334);  // rounded up: never faster than the limit

  CHECK(make_policy(0, 0, 1000, 0, 0, p) == Errc::policy);
  CHECK(std::string(last_error_message()).find("limit") != std::string::npos);
  CHECK(make_policy(0, -5, 1000, 0, 0, p) == Errc::policy);
  CHECK(make_policy(0, 10, 0, 0, 0, p) == Errc::policy);
  CHECK(std::string(last_error_message()).find("period") != std::string::npos);
  CHECK(make_policy(0, 10, -1, 0, 0, p) == Errc::policy);
  CHECK(make_policy(7, 10, 1000, 0, 0, p) == Errc::policy);
  CHECK(std::string(last_error_message()).find("algorithm") !=
        std::string::npos);
  CHECK(make_policy(-1, 10, 1000, 0, 0, p) == Errc::policy);
  CHECK(make_policy(0, 10, 1000, -1, 0, p) == Errc::policy);
  CHECK(make_policy(2, 10, 1000, 5, 0, p) == Errc::policy);  // burst on window
  CHECK(make_policy(0, 10, 1000, 0, 2, p) == Errc::policy);  // unknown flag
  CHECK(make_policy(0, 10, 1000, 0, 1, p) == Errc::ok);      // shadow
  CHECK(p.shadow);

  CHECK(make_policy(0, (int64_t{1} << 40) + 1, 1000, 0, 0, p) ==
        Errc::overflow);
  CHECK(make_policy(0, 10, (int64_t{1} << 40) + 1, 0, 0, p) == Errc::overflow);
  CHECK(make_policy(0, 1, int64_t{1} << 40, 2, 0, p) == Errc::overflow);
  CHECK(make_policy(0, 10, INT64_MAX, 0, 0, p) == Errc::overflow);
  CHECK(make_policy(0, INT64_MAX, 1000, 0, 0, p) == Errc::overflow);
  CHECK(make_policy(3, int64_t{1} << 30, int64_t{1} << 30, 0, 0, p) ==
        Errc::overflow);
  CHECK(make_policy(3, int64_t{1} << 20, int64_t{1} << 31, 0, 0, p) ==
        Errc::ok);
}

TEST_CASE("policy ids depend on every parameter and nothing else", "[policy]") {
  Policy a, b;
  REQUIRE(make_policy(0, 100, 1000, 0, 0, a) == Errc::ok);
  REQUIRE(make_policy(0, 100, 1000, 100, 0, b) == Errc::ok);
  CHECK(a.id == b.id);  // burst 0 means burst = limit
  REQUIRE(make_policy(1, 100, 1000, 0, 0, b) == Errc::ok);
  CHECK(a.id != b.id);
  REQUIRE(make_policy(0, 101, 1000, 0, 0, b) == Errc::ok);
  CHECK(a.id != b.id);
  REQUIRE(make_policy(0, 100, 1001, 0, 0, b) == Errc::ok);
  CHECK(a.id != b.id);
  REQUIRE(make_policy(0, 100, 1000, 99, 0, b) == Errc::ok);
  CHECK(a.id != b.id);
}

TEST_CASE("periods with several decimals come to exact milliseconds",
          "[policy]") {
  struct Case {
    const char *text;
    int64_t ms;
  };
  for (const Case c :
       {Case{"1.25s", 1250}, Case{"0.125s", 125}, Case{"2.75m", 165000},
        Case{"1.001s", 1001}, Case{".5h", 1800000}, Case{"1.10s", 1100}}) {
    INFO(c.text);
    int64_t ms = 0;
    size_t at = 0;
    REQUIRE(tollgate::parse_period(c.text, ms, at) == tollgate::Errc::ok);
    CHECK(ms == c.ms);
  }
  // A fraction finer than a millisecond is refused where it starts.
  int64_t ms = 0;
  size_t at = 0;
  CHECK(tollgate::parse_period("1.0005s", ms, at) == tollgate::Errc::policy);
}
