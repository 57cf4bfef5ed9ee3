#include "tollgate/redis/redis_store.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "store_admin.hpp"
#include "tollgate/free_list.hpp"
#include "tollgate/redis/resp.hpp"
#include "tollgate/redis/scripts.hpp"
#include "tollgate/redis/slot.hpp"

namespace tollgate::redis {

Errc from_error_reply(const std::string &text, std::string &message) {
  if (text.rfind("NOAUTH", 0) == 0 || text.rfind("WRONGPASS", 0) == 0) {
    message = "auth: " + text;
    return Errc::auth;
  }
  message = "store: " + text;
  return Errc::store;
}

namespace {

// A blocking call: the completion fills it; shared so a completion that
// arrives after the waiter gave up writes into live memory.
struct SyncCall {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  CallResult result;
};

void sync_done(void *ctx, CallResult &&r) {
  auto *holder = static_cast<std::shared_ptr<SyncCall> *>(ctx);
  std::shared_ptr<SyncCall> call = std::move(*holder);
  delete holder;
  {
    std::lock_guard<std::mutex> lock(call->mu);
    call->result = std::move(r);
    call->done = true;
  }
  call->cv.notify_one();
}

// How long a blocking caller waits past the deadline for the I/O thread's
// own timeout answer before giving up by itself.
constexpr int64_t kSlackNs = 50'000'000;

CallResult wait_for(Transport &t, const std::shared_ptr<SyncCall> &call,
                    int64_t deadline_ns) {
  std::unique_lock<std::mutex> lock(call->mu);
  if (!t.wait(lock, call->cv, deadline_ns + kSlackNs,
              [&] { return call->done; })) {
    CallResult r;
    r.code = Errc::timeout;
    r.message = "timeout: the store did not answer before the deadline";
    return r;
  }
  return std::move(call->result);
}

// A number as a bulk string.
void put_int(std::string &out, size_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  append_bulk(out, std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
}

// A policy's values as the scripts take them (docs/redis.md, "Calling
// convention"): algorithm, limit, period_ms, capacity, interval_us,
// block_us, strikes, strike_us, shadow.
using PolicyValues = std::array<int64_t, kPolicyArgs>;
PolicyValues policy_values(const Policy &p) {
  return {static_cast<int64_t>(p.algorithm),
          p.limit,
          p.period_ms,
          p.capacity,
          p.interval_us,
          p.block_us,
          p.strikes,
          p.strike_period_us,
          p.shadow ? 1 : 0};
}

// single.lua's packed numbers: the cost, then the policy's values after
// the algorithm (the script's own).
constexpr size_t kPackedNumbers = kPolicyArgs;
constexpr size_t kPackedBytes = 8 * kPackedNumbers;

// State of one check in flight: what is needed to read the reply and, on
// NOSCRIPT, to send the script body with EVAL. The script's arguments
// (numkeys, the n state keys, cost, pinned time, then kPolicyArgs values
// per policy) lie
// back to back in `buf`, argument i at [off[i], off[i + 1]): one allocation
// for all of them, made on the caller's thread and freed on the I/O thread.
struct CheckCtx {
  RedisStore::CheckPool *pool = nullptr;
  Transport *transport = nullptr;
  CheckDone done = nullptr;
  void *ctx = nullptr;
  size_t n = 0;
  int64_t deadline = 0;
  const Script *script = nullptr;
  int slot = kAnySlot;  // cluster: the keys' slot
  bool retried = false;
  // Sent as FCALL of the script's function (see call()).
  mutable bool via_function = false;
  // Cluster: sent through the topology's routing (which follows
  // redirections and waits out failovers), not straight to a node.
  bool rerouted = false;
  std::atomic<bool> *cluster_join = nullptr;  // the store's switch
  size_t argc = 0;
  std::string buf;
  // numkeys, keys, cost, time, m and m counts (many), the policies' values.
  uint32_t off[4 + MemoryStore::kMaxKeysPerCheck +
               (1 + kPolicyArgs) * kMaxPolicies + 1];
  // A one-policy check: its own script takes the cost and the policy's
  // values packed (single.lua); a joined call takes them as text from
  // the arguments above.
  bool packed = false;
  char numbers[kPackedBytes];

  // The cost and the policy's values after the algorithm, as single.lua
  // reads them: little-endian doubles (each a whole number under 2^53).
  void pack(int64_t cost_value, const Policy &p) {
    PolicyValues values = policy_values(p);
    values[0] = cost_value;  // in the algorithm's place
    for (size_t i = 0; i < kPackedNumbers; ++i) {
      const auto bits = std::bit_cast<uint64_t>(static_cast<double>(values[i]));
      for (size_t b = 0; b < 8; ++b)
        numbers[8 * i + b] = static_cast<char>(bits >> (8 * b));
    }
    packed = true;
  }

  void push_arg(std::string_view a) {
    buf.append(a);
    off[++argc] = static_cast<uint32_t>(buf.size());
  }
  void push_int(int64_t v) {
    char tmp[24];
    const auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
    push_arg(std::string_view(tmp, static_cast<size_t>(r.ptr - tmp)));
  }
  std::string_view arg(size_t i) const {
    return std::string_view(buf).substr(off[i], off[i + 1] - off[i]);
  }
  std::string_view key(size_t i) const { return arg(1 + i); }
  std::string_view cost() const { return arg(n + 1); }
  std::string_view pinned() const { return arg(n + 2); }
  // Policy i's kPolicyArgs values start at argument policy(i).
  size_t policy(size_t i) const { return n + 3 + kPolicyArgs * i; }

  // The command that runs the check: FCALL of its script's function where
  // the library is loaded (a one-policy check), else EVALSHA of the script.
  std::string call() const {
    via_function = packed && !script->function.empty() &&
                   transport->functions().callable();
    if (via_function) return command("FCALL", script->function);
    return command("EVALSHA", script->sha1);
  }

  // `verb` `first` and the arguments, as RESP.
  std::string command(std::string_view verb, std::string_view first) const {
    std::string cmd;
    if (packed) {
      cmd.reserve(buf.size() + first.size() + kPackedBytes + 64);
      append_array_header(cmd, 6);
      append_bulk(cmd, verb);
      append_bulk(cmd, first);
      append_bulk(cmd, "1");
      append_bulk(cmd, key(0));
      append_bulk(cmd, std::string_view(numbers, kPackedBytes));
      append_bulk(cmd, pinned());
      return cmd;
    }
    cmd.reserve(buf.size() + 8 * argc + first.size() + 32);
    append_array_header(cmd, argc + 2);
    append_bulk(cmd, verb);
    append_bulk(cmd, first);
    for (size_t i = 0; i < argc; ++i) append_bulk(cmd, arg(i));
    return cmd;
  }
};

}  // namespace

// Checks in flight, reused (see FreeList).
struct RedisStore::CheckPool : FreeList<CheckCtx> {};

namespace {

void deliver(CheckCtx *c, StoreCheck &result) {
  CheckDone done = c->done;
  void *ctx = c->ctx;
  c->pool->give(c);
  done(ctx, result);
}

// Reads one check's 1 + 4n integers from reply.elements[off..] (the layout
// of every script's reply); false if they are not all there or not all
// integers.
bool parse_check(const Reply &reply, size_t off, size_t n, StoreCheck &out) {
  const size_t want = 1 + 4 * n;
  if (reply.type != Reply::Type::array || reply.elements.size() < off + want)
    return false;
  for (size_t i = off; i < off + want; ++i)
    if (reply.elements[i]->type != Reply::Type::integer) return false;
  const auto at = [&](size_t i) { return reply.elements[off + i]->integer; };
  out.allowed = at(0) == 1;
  for (size_t i = 0; i < n; ++i) {
    Outcome &o = out.outcomes[i];
    o = Outcome{};
    o.allowed = at(1 + 4 * i) == 1;
    o.remaining = at(2 + 4 * i);
    o.reset_after_us = at(3 + 4 * i);
    o.retry_after_us = at(4 + 4 * i);
  }
  return true;
}

void fail_check(CheckCtx *c, Errc code, std::string message) {
  StoreCheck out;
  out.n = c->n;
  out.code = code;
  out.message = std::move(message);
  deliver(c, out);
}

void on_check_reply(void *ctx, CallResult &&r);

bool starts_with(const std::string &s, std::string_view p) {
  return s.size() >= p.size() && std::string_view(s).substr(0, p.size()) == p;
}

// Cluster: a reply that says the command did not run because of where or
// when it was sent (a redirection, a migration, a failover under way).
bool cluster_not_run(const std::string &text) {
  for (std::string_view p : {"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN",
                             "READONLY", "MASTERDOWN", "LOADING", "CROSSSLOT"})
    if (starts_with(text, p)) return true;
  return false;
}

// Cluster: a node that cannot run the joined script at all (before Redis
// 7.0 the flags line does not compile).
bool cluster_script_refused(const std::string &text) {
  return text.find("shebang") != std::string::npos ||
         text.find("compiling script") != std::string::npos;
}

// Sends a cluster check alone through the topology's routing.
void resend_alone(CheckCtx *c) {
  c->rerouted = true;
  c->transport->submit(c->call(), c->deadline, on_check_reply, c,
                       Transport::Mode::queued, c->slot);
}

void on_functions_loaded(void *ctx, CallResult &&r) {
  auto *lib = static_cast<FunctionLibrary *>(ctx);
  if (r.code == Errc::ok && FunctionLibrary::loaded(*r.reply))
    lib->usable.store(true);
  lib->reloading.store(false);
}

// An FCALL the server could not run: its function is missing (FUNCTION
// FLUSH, a server that lost it) or FCALL is refused (an ACL, a server
// before 7.0 in a cluster of mixed versions). The check goes again as
// EVALSHA, and so do the next ones: after a missing function until the
// library is loaded again (sent now, to the same server), after a refusal
// for good. False for any other reply (the function's own errors).
bool function_fallback(CheckCtx *c, const std::string &text) {
  if (!c->via_function) return false;
  FunctionLibrary &lib = c->transport->functions();
  if (starts_with(text, "ERR Function not found")) {
    lib.usable.store(false);
    if (!lib.reloading.exchange(true)) {
      std::string cmd;
      format_command({"FUNCTION", "LOAD", lib.code}, cmd);
      c->transport->submit(std::move(cmd), c->deadline, on_functions_loaded,
                           &lib, Transport::Mode::queued, c->slot);
    }
  } else if ((starts_with(text, "NOPERM") ||
              text.find("unknown command") != std::string::npos) &&
             (text.find("fcall") != std::string::npos ||
              text.find("FCALL") != std::string::npos)) {
    lib.refuse("FCALL refused (checks call EVALSHA): " + text);
  } else {
    return false;
  }
  c->via_function = false;
  c->transport->submit(c->command("EVALSHA", c->script->sha1), c->deadline,
                       on_check_reply, c, Transport::Mode::queued, c->slot);
  return true;
}

// A cluster check that went straight to its slot's node (alone or
// joined) and came back unrun: send it again alone, through the
// topology's routing, which follows the redirection or waits for the
// cluster within the check's deadline. Once only.
bool reroute(CheckCtx *c, const CallResult &r) {
  if (c->slot == kAnySlot || c->rerouted) return false;
  const bool unrun = r.code == Errc::ok
                         ? r.reply && r.reply->type == Reply::Type::error &&
                               cluster_not_run(r.reply->str)
                         : r.code == Errc::connect || r.code == Errc::protocol;
  if (!unrun) return false;
  resend_alone(c);
  return true;
}

void on_check_reply(void *ctx, CallResult &&r) {
  auto *c = static_cast<CheckCtx *>(ctx);
  if (reroute(c, r)) return;
  StoreCheck out;
  out.n = c->n;
  if (r.code != Errc::ok) {
    out.code = r.code;
    out.message = std::move(r.message);
    deliver(c, out);
    return;
  }
  const Reply &reply = *r.reply;
  if (reply.type == Reply::Type::error) {
    if (function_fallback(c, reply.str)) return;
    if (!c->retried && reply.str.rfind("NOSCRIPT", 0) == 0) {
      // Redis lost the script (restart, failover, SCRIPT FLUSH): send the
      // body once with EVAL, which also caches it for the next EVALSHA.
      c->retried = true;
      c->transport->submit(c->command("EVAL", c->script->body), c->deadline,
                           on_check_reply, c, Transport::Mode::queued, c->slot);
      return;
    }
    out.code = from_error_reply(reply.str, out.message);
    deliver(c, out);
    return;
  }
  if (reply.elements.size() != 1 + 4 * c->n ||
      !parse_check(reply, 0, c->n, out)) {
    fail_check(c, Errc::protocol,
               "protocol: unexpected reply to the check script");
    return;
  }
  deliver(c, out);
}

// ---- joined checks (Transport's Joiner) ----------------------------------
//
// Checks queued back to back leave as one call of the batch script: the
// distinct policies once, then per check its n, cost and policy numbers
// (docs/redis.md, "Joined checks"). A part's args are those of its own
// script: numkeys, keys..., cost, pinned time, kPolicyArgs values per
// policy.

// The most distinct policies in one joined call: two checks of
// kMaxPolicies each always fit, so a join takes at least two parts.
constexpr size_t kMaxJoinPolicies = 4 * kMaxPolicies;

// Whether policy i of `a` and policy j of `b` have the same values.
bool same_policy(const CheckCtx *a, size_t i, const CheckCtx *b, size_t j) {
  const size_t x = a->policy(i), y = b->policy(j);
  for (size_t v = 0; v < kPolicyArgs; ++v)
    if (a->arg(x + v) != b->arg(y + v)) return false;
  return true;
}

// Chooses how many of `parts` (2 or more) one call carries, numbers their
// distinct policies (`index` gets one entry per policy of each part taken,
// `distinct` the first part's args of each) and formats the call.
// `keys_in_argv`: the cluster's form (batch_cluster_keys.lua): no
// declared keys, ARGV ending with the keys and their number.
size_t format_batch(std::string_view verb, std::string_view script,
                    bool keys_in_argv, std::span<CheckCtx *const> parts,
                    std::string &out) {
  struct Distinct {
    const CheckCtx *c;
    size_t i;
  };
  std::vector<Distinct> distinct;
  std::vector<uint8_t> index;
  distinct.reserve(8);
  index.reserve(parts.size());
  size_t taken = 0, keys = 0, check_args = 0, bytes = 0;
  const std::string_view pinned = parts[0]->pinned();
  for (const CheckCtx *c : parts) {
    // The pinned-clock scripts (tests) take one time per call.
    if (c->pinned() != pinned) break;
    const size_t before_distinct = distinct.size(), before_index = index.size();
    bool fits = true;
    for (size_t i = 0; i < c->n && fits; ++i) {
      size_t d = 0;
      while (d < distinct.size() &&
             !same_policy(c, i, distinct[d].c, distinct[d].i))
        ++d;
      if (d == distinct.size()) {
        if (distinct.size() == kMaxJoinPolicies)
          fits = false;
        else
          distinct.push_back({c, i});
      }
      index.push_back(static_cast<uint8_t>(d + 1));
    }
    if (!fits) {
      distinct.resize(before_distinct);
      index.resize(before_index);
      break;
    }
    ++taken;
    keys += c->n;
    check_args += 2 + c->n;
    bytes += c->buf.size();
  }
  const size_t argc = 3 + keys + 2 + kPolicyArgs * distinct.size() +
                      check_args + (keys_in_argv ? 1 : 0);
  out.reserve(out.size() + bytes + 8 * argc + script.size() + 64);
  append_array_header(out, argc);
  append_bulk(out, verb);
  append_bulk(out, script);
  const auto put_keys = [&] {
    for (size_t p = 0; p < taken; ++p)
      for (size_t i = 0; i < parts[p]->n; ++i)
        append_bulk(out, parts[p]->key(i));
  };
  put_int(out, keys_in_argv ? 0 : keys);
  if (!keys_in_argv) put_keys();
  put_int(out, distinct.size());
  append_bulk(out, pinned);
  for (const Distinct &d : distinct)
    for (size_t v = 0; v < kPolicyArgs; ++v)
      append_bulk(out, d.c->arg(d.c->policy(d.i) + v));
  size_t at = 0;
  for (size_t p = 0; p < taken; ++p) {
    const CheckCtx *c = parts[p];
    put_int(out, c->n);
    append_bulk(out, c->cost());
    for (size_t i = 0; i < c->n; ++i) put_int(out, index[at++]);
  }
  if (keys_in_argv) {
    put_keys();
    put_int(out, keys);
  }
  return taken;
}

// One joined call in flight.
struct BatchCtx {
  Transport *transport;
  const Script *script;
  bool keys_in_argv;
  std::vector<CheckCtx *> parts;
  int64_t deadline;
  bool retried = false;
};

// A joined cluster call that came back unrun (or that its node cannot
// run): every check in it goes again alone; true if so.
bool reroute_parts(BatchCtx &b, const CallResult &r) {
  CheckCtx *first = b.parts[0];
  if (first->slot == kAnySlot) return false;
  const bool error_reply =
      r.code == Errc::ok && r.reply->type == Reply::Type::error;
  const bool refused = error_reply && cluster_script_refused(r.reply->str);
  if (refused && first->cluster_join) first->cluster_join->store(false);
  if (!refused) {
    if (r.code == Errc::ok && !error_reply) return false;
    // Parts are never marked rerouted before they are joined.
    if (!(error_reply ? cluster_not_run(r.reply->str)
                      : r.code == Errc::connect || r.code == Errc::protocol))
      return false;
  }
  for (CheckCtx *c : b.parts) resend_alone(c);
  return true;
}

void on_batch_reply(void *ctx, CallResult &&r) {
  std::unique_ptr<BatchCtx> b(static_cast<BatchCtx *>(ctx));
  if (reroute_parts(*b, r)) return;
  if (r.code != Errc::ok) {
    for (CheckCtx *c : b->parts) fail_check(c, r.code, r.message);
    return;
  }
  const Reply &reply = *r.reply;
  if (reply.type == Reply::Type::error) {
    if (!b->retried && reply.str.rfind("NOSCRIPT", 0) == 0) {
      // As for one check: send the body once with EVAL.
      b->retried = true;
      std::string cmd;
      format_batch("EVAL", b->script->body, b->keys_in_argv, b->parts, cmd);
      BatchCtx *again = b.release();
      // A cluster's joined call goes back to its node: the owner of its
      // first check's slot (if the map moved meanwhile, the node answers
      // with a redirection and every check goes again alone).
      again->transport->submit(std::move(cmd), again->deadline, on_batch_reply,
                               again, Transport::Mode::queued,
                               again->parts[0]->slot);
      return;
    }
    std::string message;
    const Errc code = from_error_reply(reply.str, message);
    for (CheckCtx *c : b->parts) fail_check(c, code, message);
    return;
  }
  size_t want = 0;
  for (const CheckCtx *c : b->parts) want += 1 + 4 * c->n;
  if (reply.type != Reply::Type::array || reply.elements.size() != want) {
    for (CheckCtx *c : b->parts)
      fail_check(c, Errc::protocol,
                 "protocol: unexpected reply to the batch script");
    return;
  }
  size_t off = 0;
  for (CheckCtx *c : b->parts) {
    StoreCheck out;
    out.n = c->n;
    const size_t n = c->n;
    const Reply &first = *reply.elements[off];
    if (b->keys_in_argv && first.type == Reply::Type::integer &&
        first.integer == -1) {
      // A cluster node that does not serve this check's slot (any more)
      // ran the others: this one goes again alone, routed.
      resend_alone(c);
    } else if (parse_check(reply, off, n, out))
      deliver(c, out);
    else
      fail_check(c, Errc::protocol,
                 "protocol: unexpected reply to the batch script");
    off += 1 + 4 * n;
  }
}

class CheckJoiner final : public Joiner {
 public:
  CheckJoiner(const Script *batch, bool keys_in_argv)
      : batch_(batch), keys_in_argv_(keys_in_argv) {}

  void single(void *part, std::string &cmd) const override {
    cmd = static_cast<const CheckCtx *>(part)->call();
  }

  size_t join(std::span<void *const> parts, std::string &cmd, Completion &done,
              void *&ctx) const override {
    auto *b = new BatchCtx{static_cast<CheckCtx *>(parts[0])->transport,
                           batch_,
                           keys_in_argv_,
                           {},
                           INT64_MAX,
                           false};
    b->parts.reserve(parts.size());
    for (void *p : parts) b->parts.push_back(static_cast<CheckCtx *>(p));
    const size_t k =
        format_batch("EVALSHA", batch_->sha1, keys_in_argv_, b->parts, cmd);
    b->parts.resize(k);
    for (const CheckCtx *c : b->parts)
      b->deadline = std::min(b->deadline, c->deadline);
    done = on_batch_reply;
    ctx = b;
    return k;
  }

 private:
  const Script *batch_;
  bool keys_in_argv_;
};

const CheckJoiner &joiner_for(bool pinned_clock, bool cluster) {
  static const CheckJoiner production(batch_script(false), false);
  static const CheckJoiner pinned(batch_script(true), false);
  static const CheckJoiner cluster_production(cluster_batch_script(false),
                                              true);
  static const CheckJoiner cluster_pinned(cluster_batch_script(true), true);
  if (cluster) return pinned_clock ? cluster_pinned : cluster_production;
  return pinned_clock ? pinned : production;
}

}  // namespace

Errc RedisStore::create(const Settings &settings, bool pinned_clock,
                        std::unique_ptr<RedisStore> &out) {
  if (pinned_clock && !has_pinned_clock_scripts())
    return fail(Errc::unsupported,
                "options: the Redis store always uses the server's clock; "
                "rl_options.clock is for the memory store");
  std::vector<std::string> preload;
  for (int a = 0; a <= 3; ++a)
    preload.emplace_back(
        script_for(static_cast<Algorithm>(a), pinned_clock)->body);
  preload.emplace_back(multi_script(pinned_clock)->body);
  preload.emplace_back(batch_script(pinned_clock)->body);
  preload.emplace_back(block_script(pinned_clock)->body);
  preload.emplace_back(many_script(pinned_clock)->body);
  preload.emplace_back(lease_script(pinned_clock)->body);
  if (settings.topology == TopologyKind::cluster)
    preload.emplace_back(cluster_batch_script(pinned_clock)->body);
  std::unique_ptr<Transport> transport;
  const std::string_view library =
      settings.functions ? function_library(pinned_clock) : std::string_view();
  const Errc rc =
      Transport::create(settings, std::move(preload), library, transport);
  if (rc != Errc::ok) return rc;
  out.reset(new RedisStore(settings, pinned_clock, std::move(transport)));
  return Errc::ok;
}

RedisStore::RedisStore(const Settings &settings, bool pinned,
                       std::unique_ptr<Transport> transport)
    : settings_(settings),
      pinned_(pinned),
      pool_(std::make_unique<CheckPool>()),
      transport_(std::move(transport)),
      clustered_(transport_->clustered()) {}

RedisStore::~RedisStore() = default;

std::string RedisStore::redis_key(std::string_view key, const Policy &p,
                                  size_t index) const {
  std::string k;
  append_redis_key(k, key, p, index);
  return k;
}

namespace {

// A policy's script arguments, formatted once per thread for the last few
// policies used (a check formats the same few policies over and over).
struct PolicyText {
  bool valid = false;
  PolicyValues values{};
  std::string args;               // the values back to back
  uint8_t len[kPolicyArgs] = {};  // their lengths
};

void append_int(std::string &out, int64_t v) {
  char tmp[24];
  const auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
  out.append(tmp, r.ptr);
}

const PolicyText &policy_text(const Policy &p) {
  constexpr unsigned kSlots = 8;
  thread_local PolicyText cache[kSlots];
  thread_local unsigned next = 0;
  const PolicyValues values = policy_values(p);
  for (const PolicyText &e : cache)
    if (e.valid && e.values == values) return e;
  PolicyText &e = cache[next++ % kSlots];
  e.valid = true;
  e.values = values;
  e.args.clear();
  for (size_t i = 0; i < kPolicyArgs; ++i) {
    const size_t before = e.args.size();
    append_int(e.args, values[i]);
    e.len[i] = static_cast<uint8_t>(e.args.size() - before);
  }
  return e;
}

}  // namespace

void RedisStore::append_redis_key(std::string &out, std::string_view key,
                                  const Policy &p, size_t index) const {
  out += settings_.key_prefix;
  out += "v2:{";
  out += key;
  out += '}';
  if (p.name_len != 0) {
    out += ':';
    out += policy_name(p);
  } else if (index != 0) {
    out += ':';
    append_int(out, static_cast<int64_t>(index));
  }
}

void RedisStore::append_block_key(std::string &out,
                                  std::string_view key) const {
  out += settings_.key_prefix;
  out += "v2:{";
  out += key;
  out += "}:!";
}

void RedisStore::check(std::string_view key, std::span<const Policy> policies,
                       int64_t cost, int64_t now_us, int64_t deadline_ns,
                       CheckDone done, void *ctx, bool blocking,
                       size_t first_index) {
  const size_t n = policies.size();
  const Script *script = n == 1 ? script_for(policies[0].algorithm, pinned_)
                                : multi_script(pinned_);
  CheckCtx *c = pool_->take();
  c->pool = pool_.get();
  c->retried = false;
  c->rerouted = false;
  c->via_function = false;
  c->cluster_join = &cluster_join_;
  c->argc = 0;
  c->buf.clear();
  c->transport = transport_.get();
  c->done = done;
  c->ctx = ctx;
  c->n = n;
  c->deadline = deadline_ns;
  c->script = script;
  c->off[0] = 0;
  c->buf.reserve(n * (settings_.key_prefix.size() + key.size() + 96) + 48);
  c->push_int(static_cast<int64_t>(n));
  for (size_t i = 0; i < n; ++i) {
    append_redis_key(c->buf, key, policies[i], first_index + i);
    c->off[++c->argc] = static_cast<uint32_t>(c->buf.size());
  }
  // A cluster sends it to the primary of its keys' slot (one slot: the
  // hash tag is the user key).
  c->slot = clustered_ ? hash_slot(c->key(0)) : kAnySlot;
  c->push_int(cost);
  c->push_int(pinned_ ? now_us : 0);
  c->packed = false;
  if (n == 1) c->pack(cost, policies[0]);
  for (const Policy &p : policies) {
    const PolicyText &t = policy_text(p);
    size_t at = 0;
    for (size_t v = 0; v < kPolicyArgs; ++v) {
      c->push_arg(std::string_view(t.args).substr(at, t.len[v]));
      at += t.len[v];
    }
  }
  const auto mode =
      blocking ? Transport::Mode::blocking : Transport::Mode::queued;
  if (clustered_ && !cluster_join_.load(std::memory_order_relaxed)) {
    // Not joined: the topology routes the check alone.
    c->rerouted = true;
    transport_->submit(c->call(), deadline_ns, on_check_reply, c, mode,
                       c->slot);
    return;
  }
  transport_->submit_joinable(&joiner_for(pinned_, clustered_), c, deadline_ns,
                              on_check_reply, mode, c->slot);
}

bool RedisStore::same_slot(
    std::span<const MemoryStore::KeyPolicies> items) const {
  if (!clustered_) return true;
  std::string k;
  int slot = kAnySlot;
  for (const MemoryStore::KeyPolicies &it : items) {
    k.clear();
    append_redis_key(k, it.key, it.policies[0], 0);
    const int s = hash_slot(k);
    if (slot != kAnySlot && s != slot) return false;
    slot = s;
  }
  return true;
}

void RedisStore::check_many(std::span<const MemoryStore::KeyPolicies> items,
                            int64_t cost, int64_t now_us, int64_t deadline_ns,
                            CheckDone done, void *ctx, bool blocking) {
  size_t n = 0;
  for (const MemoryStore::KeyPolicies &it : items) n += it.policies.size();
  const Script *script = many_script(pinned_);
  CheckCtx *c = pool_->take();
  c->pool = pool_.get();
  c->retried = false;
  c->via_function = false;
  c->rerouted = true;  // sent alone, through the topology's routing
  c->cluster_join = &cluster_join_;
  c->packed = false;
  c->argc = 0;
  c->buf.clear();
  c->transport = transport_.get();
  c->done = done;
  c->ctx = ctx;
  c->n = n;
  c->deadline = deadline_ns;
  c->script = script;
  c->off[0] = 0;
  c->push_int(static_cast<int64_t>(n));
  for (const MemoryStore::KeyPolicies &it : items)
    for (size_t i = 0; i < it.policies.size(); ++i) {
      append_redis_key(c->buf, it.key, it.policies[i], i);
      c->off[++c->argc] = static_cast<uint32_t>(c->buf.size());
    }
  c->slot = clustered_ ? hash_slot(c->key(0)) : kAnySlot;
  c->push_int(cost);
  c->push_int(pinned_ ? now_us : 0);
  c->push_int(static_cast<int64_t>(items.size()));
  for (const MemoryStore::KeyPolicies &it : items)
    c->push_int(static_cast<int64_t>(it.policies.size()));
  for (const MemoryStore::KeyPolicies &it : items)
    for (const Policy &p : it.policies) {
      const PolicyText &t = policy_text(p);
      size_t at = 0;
      for (size_t v = 0; v < kPolicyArgs; ++v) {
        c->push_arg(std::string_view(t.args).substr(at, t.len[v]));
        at += t.len[v];
      }
    }
  transport_->submit(
      c->command("EVALSHA", script->sha1), deadline_ns, on_check_reply, c,
      blocking ? Transport::Mode::blocking : Transport::Mode::queued, c->slot);
}

CallResult RedisStore::call(std::vector<std::string_view> argv,
                            int64_t deadline_ns, int slot,
                            const std::string *node) {
  std::string cmd;
  format_command(argv, cmd);
  auto call = std::make_shared<SyncCall>();
  if (node && !node->empty())
    transport_->submit_to(*node, std::move(cmd), deadline_ns, sync_done,
                          new std::shared_ptr<SyncCall>(call));
  else
    transport_->submit(std::move(cmd), deadline_ns, sync_done,
                       new std::shared_ptr<SyncCall>(call),
                       Transport::Mode::queued, slot);
  return wait_for(*transport_, call, deadline_ns);
}

}  // namespace tollgate::redis
