// What the tollgate command-line tool's files share (docs/cli.md): exit
// statuses, the parsed arguments, output helpers, and the limiter made
// from --url and the options.
#pragma once

#include <tollgate.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate_cli {

constexpr int kAllowed = 0;
constexpr int kDenied = 1;
constexpr int kUsage = 2;
constexpr int kStore = 3;

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::string url;
  bool url_given = false;
  std::string prefix;
  std::string timeout;
  std::string cost = "1";
  bool cost_given = false;
  bool all = false;
  bool json = false;
  // bench's options, as typed; `bench_option` names one given (they are
  // refused with other commands).
  std::string duration = "2", keys = "10000", in_flight = "64";
  std::string bench_option;
  // name=value pairs for rl_options_set; the strings live here until
  // rl_create copies them.
  std::vector<std::pair<std::string, std::string>> options;
};

struct Limiter {
  rl_limiter *p = nullptr;
  ~Limiter() { rl_destroy(p); }
};

struct Policies {
  std::vector<rl_policy *> list;
  ~Policies() {
    for (rl_policy *p : list) rl_policy_release(p);
  }
};

// JSON string literal of `s`; a key as a human reads it (\xNN escapes).
std::string json_string(std::string_view s);
std::string printable(std::string_view s);
const char *topology_name(int32_t t);

// "tollgate: <message>" and the pointer to --help on stderr: kUsage.
int usage_error(const std::string &message);
bool parse_int(const std::string &text, int64_t &out);
// The library's error (name and message; never a secret) on stderr:
// `status`. status_of: the exit status of an error code.
int library_error(const char *what, int rc, int status);
int status_of(int rc);
// -1 when made, else the exit status (a message printed).
int open_limiter(Args &a, Limiter &lim);
int parse_policies(const std::vector<std::string> &texts, size_t from,
                   Policies &out);

// `tollgate bench` (bench.cpp).
int cmd_bench(Args &a);

}  // namespace tollgate_cli
