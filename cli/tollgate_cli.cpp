// `tollgate`: look at, charge and reset limits in a shared store from a
// shell (docs/cli.md). A client of the C ABI only, like the bindings.
//
// Exit status: 0 allowed or done, 1 denied, 2 usage error, 3 store error.
#include <tollgate.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli.hpp"

namespace tollgate_cli {

constexpr const char *kHelp =
    R"(usage: tollgate [options] <command> [arguments]

Look at, charge and reset tollgate's limits in Redis from a shell.

commands:
  check KEY POLICY...      charge --cost (default 1) to KEY under every POLICY
                           and print the decision
  peek KEY POLICY...       the decision a check of cost 1 would get, charging
                           nothing
  reset KEY                forget KEY's state: usage, block, strikes, leases
  keys PATTERN POLICY...   list the states of POLICY... whose key matches
                           PATTERN (a Redis glob: * ? [a-z] \x); a pattern
                           that matches every key ('*') needs --all
  block KEY DURATION       deny KEY for DURATION (e.g. 15m, 1h)
  unblock KEY              lift KEY's block and forget its strikes
  health                   the store as this limiter sees it, node by node
  ping                     one round trip to the store (every primary of a
                           cluster)
  bench                    the headline Redis benchmark: tollgate's checks,
                           one at a time and --in-flight at once, against a
                           plain pipelined client doing INCR + PEXPIRE on
                           the same store; checks/s, latency, CPU per check,
                           ratios and the load average (writes keys under
                           the prefix and deletes them at the end)

POLICY is the policy text of every binding: "100/h", "10/s burst=20",
"5/m name=login block=15m". Give the policies your application checks
KEY with, in the same order: a state belongs to a policy's name, or to
the position of an unnamed one.

options:
  --url URL           the store: redis://, rediss://, redis+cluster://,
                      redis+sentinel://, unix:// (default: $REDIS_URL)
  --prefix TEXT       key prefix (default: tollgate:)
  --timeout MS        each store call's deadline (default: 1000)
  --cost N            check: units to charge (default 1)
  --all               keys: list every key (the pattern may be '*')
  --duration SEC      bench: seconds per figure (default 2)
  --keys N            bench: distinct keys checked in turn (default 10000)
  --in-flight N       bench: checks in flight at once (default 64)
  --json              print one JSON object (keys: one per line)
  -o, --option NAME=VALUE
                      any rl_options field by name (tls_ca_file=...,
                      username=..., connect_timeout_ms=...)
  -h, --help          print this help
  --version           print the library version

exit status: 0 allowed or done, 1 denied, 2 usage error, 3 store error
(bench: 0 finished, 2 bad arguments, 3 the store failed)
)";

// ---- output ---------------------------------------------------------------

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// A key as a human reads it: printable bytes as they are, others as \xNN.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

const char *source_name(int32_t source) {
  switch (source) {
    case RL_SOURCE_STORE:
      return "store";
    case RL_SOURCE_DENY_CACHE:
      return "deny_cache";
    case RL_SOURCE_FAIL_OPEN:
      return "fail_open";
    case RL_SOURCE_FAIL_CLOSED:
      return "fail_closed";
    case RL_SOURCE_LOCAL:
      return "local";
    case RL_SOURCE_ALLOW_LIST:
      return "allow_list";
    case RL_SOURCE_DENY_LIST:
      return "deny_list";
    default:
      return "unknown";
  }
}

const char *connection_name(int32_t c) {
  switch (c) {
    case RL_CONN_CONNECTING:
      return "connecting";
    case RL_CONN_READY:
      return "ready";
    case RL_CONN_DOWN:
      return "down";
    default:
      return "none";
  }
}

const char *topology_name(int32_t t) {
  switch (t) {
    case RL_TOPOLOGY_STANDALONE:
      return "standalone";
    case RL_TOPOLOGY_CLUSTER:
      return "cluster";
    case RL_TOPOLOGY_SENTINEL:
      return "sentinel";
    default:
      return "memory";
  }
}

// ---- arguments ------------------------------------------------------------

int usage_error(const std::string &message) {
  std::fprintf(stderr, "tollgate: %s\nRun 'tollgate --help' for usage.\n",
               message.c_str());
  return kUsage;
}

// Options may come before or after the command; "--" ends them.
// Returns -1 to go on, else the exit status.
int parse_args(int argc, char **argv, Args &a) {
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      if (a.command.empty())
        a.command = arg;
      else
        a.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      std::fputs(kHelp, stdout);
      return kAllowed;
    }
    if (arg == "--version") {
      std::printf("tollgate %s\n", rl_version_string());
      return kAllowed;
    }
    if (arg == "--all") {
      a.all = true;
      continue;
    }
    if (arg == "--json") {
      a.json = true;
      continue;
    }
    // Options with a value: "--name value" or "--name=value".
    std::string name = arg, value;
    const size_t eq = arg.find('=');
    const bool inline_value =
        arg.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    const bool known =
        name == "--url" || name == "--prefix" || name == "--timeout" ||
        name == "--cost" || name == "-o" || name == "--option" ||
        name == "--duration" || name == "--keys" || name == "--in-flight";
    if (!known) return usage_error("unknown option '" + name + "'");
    if (!inline_value) {
      if (i + 1 >= argc) return usage_error(name + " needs a value");
      value = argv[++i];
    }
    if (name == "--url") {
      a.url = value;
      a.url_given = true;
    } else if (name == "--prefix") {
      a.prefix = value;
    } else if (name == "--timeout") {
      a.timeout = value;
    } else if (name == "--cost") {
      a.cost = value;
      a.cost_given = true;
    } else if (name == "--duration" || name == "--keys" ||
               name == "--in-flight") {
      (name == "--duration" ? a.duration
       : name == "--keys"   ? a.keys
                            : a.in_flight) = value;
      a.bench_option = name;
    } else {
      const size_t at = value.find('=');
      if (at == std::string::npos || at == 0)
        return usage_error(name + " expects NAME=VALUE");
      a.options.emplace_back(value.substr(0, at), value.substr(at + 1));
    }
  }
  return -1;
}

bool parse_int(const std::string &text, int64_t &out) {
  if (text.empty()) return false;
  char *end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size()) return false;
  out = v;
  return true;
}

// ---- the limiter ----------------------------------------------------------

// An error from the library: its name and message (never a secret).
int library_error(const char *what, int rc, int status) {
  std::fprintf(stderr, "tollgate: %s: %s (%s)\n", what, rl_last_error(),
               rl_error_name(rc));
  return status;
}

// The exit status of a store call's error: bad input is a usage error,
// anything the store did is a store error.
int status_of(int rc) {
  switch (rc) {
    case RL_E_INVALID_ARG:
    case RL_E_KEY_INVALID:
    case RL_E_KEY_TOO_LONG:
    case RL_E_POLICY:
    case RL_E_OVERFLOW:
    case RL_E_URL:
    case RL_E_UNSUPPORTED:
      return kUsage;
    default:
      return kStore;
  }
}

int open_limiter(Args &a, Limiter &lim) {
  if (!a.url_given) {
    const char *env = std::getenv("REDIS_URL");
    if (env == nullptr || *env == '\0')
      return usage_error(
          "no store: pass --url redis://host:port or set REDIS_URL");
    a.url = env;
  }
  if (a.url.empty() || a.url == "memory://")
    return usage_error(
        "the CLI needs a shared store (redis://...); the memory store lives "
        "in one process");
  rl_options o = RL_OPTIONS_INIT;
  // The CLI reports what the store says: no fallback answer, no cache.
  o.failure_mode = RL_FAIL_ERROR;
  o.deny_cache = -1;
  o.timeout_ms = 1000;
  struct Field {
    const char *name;
    const std::string *value;
  };
  const Field fields[] = {
      {"url", &a.url},
      {"key_prefix", a.prefix.empty() ? nullptr : &a.prefix},
      {"timeout_ms", a.timeout.empty() ? nullptr : &a.timeout}};
  for (const Field &f : fields) {
    if (f.value == nullptr) continue;
    const int rc = rl_options_set(&o, f.name, f.value->c_str());
    if (rc != RL_OK) return library_error(f.name, rc, kUsage);
  }
  for (const auto &[name, value] : a.options) {
    const int rc = rl_options_set(&o, name.c_str(), value.c_str());
    if (rc != RL_OK) return library_error("-o", rc, kUsage);
  }
  const int rc = rl_create(&lim.p, &o);
  if (rc != RL_OK)
    return library_error("cannot use the store", rc, status_of(rc));
  return -1;
}

int parse_policies(const std::vector<std::string> &texts, size_t from,
                   Policies &out) {
  if (texts.size() <= from) return usage_error("expected at least one POLICY");
  if (texts.size() - from > RL_MAX_POLICIES)
    return usage_error("at most " + std::to_string(RL_MAX_POLICIES) +
                       " policies");
  for (size_t i = from; i < texts.size(); ++i) {
    rl_policy *p = nullptr;
    size_t at = 0;
    const int rc = rl_policy_parse(&p, texts[i].data(), texts[i].size(), &at);
    if (rc != RL_OK) {
      std::fprintf(stderr, "tollgate: policy '%s': %s (at byte %zu)\n",
                   texts[i].c_str(), rl_last_error(), at);
      return kUsage;
    }
    out.list.push_back(p);
  }
  return -1;
}

// ---- commands -------------------------------------------------------------

int cmd_check(Args &a, bool peek) {
  if (a.positional.size() < 2)
    return usage_error(a.command + " expects KEY POLICY...");
  if (peek && a.cost_given) return usage_error("peek takes no --cost");
  int64_t cost = 0;
  if (!peek && !parse_int(a.cost, cost))
    return usage_error("--cost expects an integer, got '" + a.cost + "'");
  Policies pols;
  int st = parse_policies(a.positional, 1, pols);
  if (st >= 0) return st;
  Limiter lim;
  if ((st = open_limiter(a, lim)) >= 0) return st;
  const std::string &key = a.positional[0];
  rl_decision d = RL_DECISION_INIT;
  const int rc = rl_check(lim.p, &d, key.data(), key.size(), pols.list.data(),
                          pols.list.size(), cost);
  if (rc != RL_OK) return library_error(a.command.c_str(), rc, status_of(rc));
  const std::string policy = a.positional[1 + d.policy_index];
  if (a.json) {
    std::printf("{\"key\": %s, \"allowed\": %s, \"limit\": %" PRId64
                ", \"remaining\": %" PRId64 ", \"reset_after_ms\": %" PRId64
                ", \"retry_after_ms\": %" PRId64
                ", \"policy_index\": %u, \"policy\": %s, \"source\": \"%s\", "
                "\"shadow\": %s, \"cost\": %" PRId64 "}\n",
                json_string(key).c_str(), d.allowed ? "true" : "false", d.limit,
                d.remaining, d.reset_after_ms, d.retry_after_ms, d.policy_index,
                json_string(policy).c_str(), source_name(d.source),
                d.shadow ? "true" : "false", cost);
  } else {
    std::printf("%s %s  remaining %" PRId64 "/%" PRId64 "  reset in %" PRId64
                " ms",
                d.allowed ? "allowed" : "denied", printable(key).c_str(),
                d.remaining, d.limit, d.reset_after_ms);
    if (!d.allowed || d.shadow) {
      if (d.retry_after_ms == RL_RETRY_NEVER)
        std::printf("  retry never (the cost exceeds the policy)");
      else
        std::printf("  retry in %" PRId64 " ms", d.retry_after_ms);
    }
    std::printf("  policy %u (%s)", d.policy_index, policy.c_str());
    if (d.source != RL_SOURCE_STORE)
      std::printf("  source %s", source_name(d.source));
    if (d.shadow) std::printf("  shadow");
    std::printf("\n");
  }
  return d.allowed ? kAllowed : kDenied;
}

int cmd_key_op(Args &a) {
  const bool block = a.command == "block";
  const size_t want = block ? 2 : 1;
  if (a.positional.size() != want)
    return usage_error(a.command +
                       (block ? " expects KEY DURATION" : " expects KEY"));
  int64_t ms = 0;
  if (block) {
    const std::string &t = a.positional[1];
    const int rc = rl_period_parse(t.data(), t.size(), &ms);
    if (rc != RL_OK)
      return usage_error("DURATION '" + t + "': " + rl_last_error());
  }
  Limiter lim;
  int st = open_limiter(a, lim);
  if (st >= 0) return st;
  const std::string &key = a.positional[0];
  int rc;
  if (block)
    rc = rl_block(lim.p, key.data(), key.size(), ms);
  else if (a.command == "unblock")
    rc = rl_unblock(lim.p, key.data(), key.size());
  else
    rc = rl_reset(lim.p, key.data(), key.size());
  if (rc != RL_OK) return library_error(a.command.c_str(), rc, status_of(rc));
  if (a.json)
    std::printf(
        "{\"command\": \"%s\", \"key\": %s, \"ok\": true%s}\n",
        a.command.c_str(), json_string(key).c_str(),
        block ? (", \"duration_ms\": " + std::to_string(ms)).c_str() : "");
  else if (block)
    std::printf("blocked %s for %" PRId64 " ms\n", printable(key).c_str(), ms);
  else
    std::printf("%s %s\n", a.command == "reset" ? "reset" : "unblocked",
                printable(key).c_str());
  return kAllowed;
}

int cmd_keys(Args &a) {
  if (a.positional.size() < 2)
    return usage_error("keys expects PATTERN POLICY...");
  const std::string &pattern = a.positional[0];
  const bool everything =
      pattern.find_first_not_of('*') == std::string::npos;  // "", "*", "**"
  if (everything && !a.all)
    return usage_error("pattern '" + pattern +
                       "' lists every key; add --all to scan them all");
  Policies pols;
  int st = parse_policies(a.positional, 1, pols);
  if (st >= 0) return st;
  Limiter lim;
  if ((st = open_limiter(a, lim)) >= 0) return st;
  rl_keys *it = nullptr;
  int rc = rl_keys_open_match(lim.p, pattern.data(), pattern.size(),
                              pols.list.data(), pols.list.size(), &it);
  if (rc != RL_OK) return library_error("keys", rc, status_of(rc));
  rl_key_info info = RL_KEY_INFO_INIT;
  size_t n = 0;
  while ((rc = rl_keys_next(it, &info)) == RL_OK) {
    ++n;
    const std::string_view key(info.key, info.key_len);
    const std::string &policy = a.positional[1 + info.policy_index];
    if (a.json)
      std::printf(
          "{\"key\": %s, \"policy_index\": %zu, \"policy\": %s, "
          "\"limit\": %" PRId64 ", \"remaining\": %" PRId64
          ", \"reset_after_ms\": %" PRId64 "}\n",
          json_string(key).c_str(), info.policy_index,
          json_string(policy).c_str(), info.policy.limit, info.remaining,
          info.reset_after_ms);
    else
      std::printf("%s  remaining %" PRId64 "/%" PRId64 "  reset in %" PRId64
                  " ms  policy %zu (%s)\n",
                  printable(key).c_str(), info.remaining, info.policy.limit,
                  info.reset_after_ms, info.policy_index, policy.c_str());
  }
  rl_keys_free(it);
  if (rc != RL_E_DONE) return library_error("keys", rc, status_of(rc));
  if (!a.json) {
    std::fflush(stdout);  // the states first, also when both go to one file
    std::fprintf(stderr, "%zu state(s)\n", n);
  }
  return kAllowed;
}

int cmd_ping(Args &a) {
  if (!a.positional.empty()) return usage_error("ping takes no arguments");
  Limiter lim;
  int st = open_limiter(a, lim);
  if (st >= 0) return st;
  int64_t rtt = 0;
  const int rc = rl_ping(lim.p, &rtt);
  if (rc != RL_OK) return library_error("ping", rc, status_of(rc));
  if (a.json)
    std::printf("{\"ok\": true, \"rtt_us\": %" PRId64 "}\n", rtt);
  else
    std::printf("ok  round trip %" PRId64 " us\n", rtt);
  return kAllowed;
}

int cmd_health(Args &a) {
  if (!a.positional.empty()) return usage_error("health takes no arguments");
  Limiter lim;
  int st = open_limiter(a, lim);
  if (st >= 0) return st;
  // One round trip first, so the figures describe a connected limiter; its
  // failure is reported below with the rest.
  int64_t rtt = -1;
  const int ping_rc = rl_ping(lim.p, &rtt);
  const std::string ping_error = ping_rc == RL_OK ? "" : rl_last_error();
  rl_health_info h = RL_HEALTH_INIT;
  int rc = rl_health(lim.p, &h);
  if (rc != RL_OK) return library_error("health", rc, kStore);
  std::vector<rl_node_info> nodes;
  for (uint32_t i = 0; i < h.nodes; ++i) {
    rl_node_info n = RL_NODE_INIT;
    if (rl_health_node(lim.p, i, &n) == RL_OK) nodes.push_back(n);
  }
  const bool ok = ping_rc == RL_OK;
  if (a.json) {
    std::printf(
        "{\"ok\": %s, \"error\": %s, \"topology\": \"%s\", "
        "\"connection\": \"%s\", \"server_version\": %s, "
        "\"ping_rtt_us\": %" PRId64 ", \"reconnects\": %" PRIu64
        ", \"store_errors\": %" PRIu64 ", \"slot_map_age_ms\": %" PRId64
        ", \"nodes\": [",
        ok ? "true" : "false", ok ? "null" : json_string(ping_error).c_str(),
        topology_name(h.topology), connection_name(h.connection),
        json_string(h.server_version).c_str(), ok ? rtt : -1, h.reconnects,
        h.store_errors, h.slot_map_age_ms);
    for (size_t i = 0; i < nodes.size(); ++i)
      std::printf(
          "%s{\"address\": %s, \"role\": \"%s\", \"connection\": "
          "\"%s\", \"in_flight\": %u, \"errors\": %" PRIu64
          ", \"reconnects\": %" PRIu64 "}",
          i ? ", " : "", json_string(nodes[i].address).c_str(),
          nodes[i].role == RL_ROLE_PRIMARY ? "primary" : "other",
          connection_name(nodes[i].connection), nodes[i].in_flight,
          nodes[i].errors, nodes[i].reconnects);
    std::printf("]}\n");
  } else {
    std::printf("store       %s, %s%s%s\n", topology_name(h.topology),
                ok ? "reachable" : "UNREACHABLE",
                h.server_version[0] ? ", redis " : "", h.server_version);
    if (ok)
      std::printf("ping        %" PRId64 " us\n", rtt);
    else
      std::printf("error       %s\n", ping_error.c_str());
    std::printf("reconnects  %" PRIu64 "\nstore errors %" PRIu64 "\n",
                h.reconnects, h.store_errors);
    if (h.topology == RL_TOPOLOGY_CLUSTER)
      std::printf("slot map    %" PRId64 " ms old, %" PRIu64
                  " refreshes, %" PRIu64 " MOVED, %" PRIu64 " ASK\n",
                  h.slot_map_age_ms, h.slot_map_refreshes, h.moved, h.ask);
    for (const rl_node_info &n : nodes)
      std::printf("node        %s  %s  %s  errors %" PRIu64
                  "  reconnects %" PRIu64 "\n",
                  n.address, n.role == RL_ROLE_PRIMARY ? "primary" : "other",
                  connection_name(n.connection), n.errors, n.reconnects);
  }
  if (!ok)
    std::fprintf(stderr, "tollgate: health: %s (%s)\n", ping_error.c_str(),
                 rl_error_name(ping_rc));
  return ok ? kAllowed : kStore;
}

}  // namespace tollgate_cli

using namespace tollgate_cli;

int main(int argc, char **argv) {
  Args a;
  const int st = parse_args(argc, argv, a);
  if (st >= 0) return st;
  if (a.command.empty()) {
    std::fputs(kHelp, stderr);
    return kUsage;
  }
  if (a.command == "bench") return cmd_bench(a);
  if (!a.bench_option.empty())
    return usage_error(a.bench_option + " is an option of bench");
  if (a.command == "check") return cmd_check(a, false);
  if (a.command == "peek") return cmd_check(a, true);
  if (a.command == "reset" || a.command == "block" || a.command == "unblock")
    return cmd_key_op(a);
  if (a.command == "keys") return cmd_keys(a);
  if (a.command == "health") return cmd_health(a);
  if (a.command == "ping") return cmd_ping(a);
  // A URL given where the command goes may hold a password: never echo it.
  if (a.command.find("://") != std::string::npos)
    return usage_error("unknown command (a URL? give it with --url)");
  return usage_error("unknown command '" + a.command + "'");
}
