// The Redis store's administration: reset a key, PING, list keys. On a
// cluster, a reset goes to the primary of the key's slot, and PING and the
// key listing visit every primary.
#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>

#include "store_admin.hpp"
#include "tollgate/redis/redis_store.hpp"
#include "tollgate/redis/scripts.hpp"
#include "tollgate/redis/slot.hpp"

namespace tollgate::redis {
namespace {

// Escapes glob metacharacters for SCAN MATCH.
std::string glob_escape(std::string_view in) {
  std::string out;
  out.reserve(in.size() + 8);
  for (char ch : in) {
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
      out += '\\';
    out += ch;
  }
  return out;
}

bool parse_i64(std::string_view s, int64_t &out) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

namespace {

// Turns a transport result into an error code, or ok if a non-error reply
// came back.
Errc check_result(const CallResult &r, const char *what) {
  if (r.code != Errc::ok) return fail(r.code, r.message);
  if (r.reply->type == Reply::Type::error) {
    std::string msg;
    const Errc code = from_error_reply(r.reply->str, msg);
    return fail(code, std::string(what) + ": " + msg);
  }
  return Errc::ok;
}

bool scan_reply(const Reply &reply, std::string &cursor,
                std::vector<std::string> &keys) {
  if (reply.type != Reply::Type::array || reply.elements.size() != 2 ||
      reply.elements[0]->type != Reply::Type::string ||
      reply.elements[1]->type != Reply::Type::array)
    return false;
  cursor = reply.elements[0]->str;
  for (const auto &e : reply.elements[1]->elements) {
    if (e->type != Reply::Type::string) return false;
    keys.push_back(e->str);
  }
  return true;
}

}  // namespace

Errc RedisStore::primaries(int64_t deadline_ns, std::vector<std::string> &out) {
  out.clear();
  if (!clustered_) {
    out.emplace_back();
    return Errc::ok;
  }
  out = transport_->primaries();
  if (!out.empty()) return Errc::ok;
  // No slot map yet: a PING to any slot waits for one (or fails saying why).
  const Errc rc = check_result(call({"PING"}, deadline_ns, 0), "cluster");
  if (rc != Errc::ok) return rc;
  out = transport_->primaries();
  if (out.empty())
    return fail(Errc::store, "store: cluster: no primary serves any slot");
  return Errc::ok;
}

// One SCAN page on one node (or the slot's primary, or the one server).
Errc RedisStore::scan_node(const std::string &node, int slot,
                           const std::string &pattern, std::string &cursor,
                           std::vector<std::string> &keys, const char *what,
                           int64_t deadline_ns) {
  CallResult r = call({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"},
                      deadline_ns, slot, &node);
  const Errc rc = check_result(r, what);
  if (rc != Errc::ok) return rc;
  if (!scan_reply(*r.reply, cursor, keys))
    return fail(Errc::protocol, "protocol: unexpected reply to SCAN");
  return Errc::ok;
}

Errc RedisStore::reset(std::string_view key, int64_t deadline_ns) {
  // Every identity's state of the key, `...v2:{<key>}` and `...}:<id>`,
  // its block `...}:!`, strike counts `...}:!s` and leases `...}:!l`.
  // The glob also matches other user keys that start with `<key>}`, so
  // each name is parsed and kept only if it is this key's.
  std::string pattern = glob_escape(settings_.key_prefix);
  pattern += "v2:{";
  pattern += glob_escape(key);
  pattern += "}*";
  // On a cluster the key's states all live in the slot of its hash tag
  // (the user key), so its primary holds them all. A user key that leaves
  // the tag empty (it starts with '}') hashes whole names: every primary.
  std::vector<std::string> nodes{""};
  int slot = kAnySlot;
  if (clustered_) {
    if (!key.empty() && key[0] != '}') {
      slot = hash_slot(settings_.key_prefix + "{" + std::string(key) + "}");
    } else {
      const Errc rc = primaries(deadline_ns, nodes);
      if (rc != Errc::ok) return rc;
    }
  }
  for (const std::string &node : nodes) {
    std::string cursor = "0";
    do {
      std::vector<std::string> keys;
      Errc rc =
          scan_node(node, slot, pattern, cursor, keys, "reset", deadline_ns);
      if (rc != Errc::ok) return rc;
      // One DEL per slot (a cluster refuses keys of several slots).
      std::map<int, std::vector<std::string_view>> by_slot;
      std::string block_key;
      append_block_key(block_key, key);
      for (const std::string &k : keys) {
        StateName name;
        if (k != block_key && k != block_key + "s" && k != block_key + "l" &&
            (!parse_redis_key(k, settings_.key_prefix, name) ||
             name.user_key != key))
          continue;
        by_slot[clustered_ ? hash_slot(k) : kAnySlot].push_back(k);
      }
      for (auto &[s, ks] : by_slot) {
        ks.insert(ks.begin(), "DEL");
        rc = check_result(call(ks, deadline_ns, s), "reset");
        if (rc != Errc::ok) return rc;
      }
    } while (cursor != "0");
  }
  return Errc::ok;
}

Errc RedisStore::block(std::string_view key, int64_t duration_us,
                       int64_t now_us, int64_t deadline_ns) {
  std::string block_key;
  append_block_key(block_key, key);
  const int slot = clustered_ ? hash_slot(block_key) : kAnySlot;
  const std::string duration = std::to_string(duration_us);
  const std::string now = std::to_string(pinned_ ? now_us : 0);
  const Script *script = block_script(pinned_);
  CallResult r = call({"EVALSHA", script->sha1, "1", block_key, duration, now},
                      deadline_ns, slot);
  if (r.code == Errc::ok && r.reply->type == Reply::Type::error &&
      r.reply->str.rfind("NOSCRIPT", 0) == 0)
    r = call({"EVAL", script->body, "1", block_key, duration, now}, deadline_ns,
             slot);
  const Errc rc = check_result(r, "block");
  if (rc != Errc::ok) return rc;
  if (r.reply->type != Reply::Type::integer)
    return fail(Errc::protocol,
                "protocol: unexpected reply to the block script");
  return Errc::ok;
}

Errc RedisStore::unblock(std::string_view key, int64_t deadline_ns) {
  std::string block_key;
  append_block_key(block_key, key);
  const int slot = clustered_ ? hash_slot(block_key) : kAnySlot;
  const std::string strikes = block_key + "s";
  return check_result(call({"DEL", block_key, strikes}, deadline_ns, slot),
                      "unblock");
}

Errc RedisStore::lease(char op, std::string_view key, std::string_view id,
                       int64_t max, int64_t ttl_us, int64_t now_us,
                       int64_t deadline_ns, std::vector<int64_t> &out) {
  std::string lease_key;
  append_block_key(lease_key, key);
  lease_key += 'l';
  const int slot = clustered_ ? hash_slot(lease_key) : kAnySlot;
  const std::string o(1, op), m = std::to_string(max),
                              ttl = std::to_string(ttl_us),
                              now = std::to_string(pinned_ ? now_us : 0);
  const Script *script = lease_script(pinned_);
  CallResult r =
      call({"EVALSHA", script->sha1, "1", lease_key, o, now, id, m, ttl},
           deadline_ns, slot);
  if (r.code == Errc::ok && r.reply->type == Reply::Type::error &&
      r.reply->str.rfind("NOSCRIPT", 0) == 0)
    r = call({"EVAL", script->body, "1", lease_key, o, now, id, m, ttl},
             deadline_ns, slot);
  const Errc rc = check_result(r, "lease");
  if (rc != Errc::ok) return rc;
  out.clear();
  const Reply &reply = *r.reply;
  if (reply.type == Reply::Type::integer) {
    out.push_back(reply.integer);
  } else if (reply.type == Reply::Type::array) {
    for (const auto &e : reply.elements) {
      if (e->type != Reply::Type::integer) break;
      out.push_back(e->integer);
    }
    if (out.size() != reply.elements.size()) out.clear();
  }
  const size_t want = op != 'a' ? 1 : (!out.empty() && out[0] == 1 ? 2 : 3);
  if (out.size() != want)
    return fail(Errc::protocol,
                "protocol: unexpected reply to the lease script");
  return Errc::ok;
}

Errc RedisStore::ping(int64_t deadline_ns, int64_t &rtt_us) {
  const int64_t start = monotonic_ns();
  std::vector<std::string> nodes;
  Errc rc = primaries(deadline_ns, nodes);
  if (rc != Errc::ok) return rc;
  // A cluster: every primary answers, or the first that does not is named.
  for (const std::string &node : nodes) {
    rc = check_result(call({"PING"}, deadline_ns, kAnySlot, &node),
                      node.empty() ? "ping" : ("ping " + node).c_str());
    if (rc != Errc::ok) return rc;
  }
  rtt_us = (monotonic_ns() - start) / 1000;
  transport_->note_ping(rtt_us);  // rl_health's last_ping_us
  return Errc::ok;
}

bool parse_redis_key(std::string_view rk, std::string_view prefix,
                     StateName &out) {
  constexpr std::string_view kVersion = "v2:{";
  if (rk.size() < prefix.size() + kVersion.size() + 1 ||
      rk.substr(0, prefix.size()) != prefix ||
      rk.substr(prefix.size(), kVersion.size()) != kVersion)
    return false;
  const std::string_view rest = rk.substr(prefix.size() + kVersion.size());
  // `<key>}` (position 0) or `<key>}:<id>`; an id never holds '}' or ':',
  // so the last ':' splits a user key that holds them.
  if (rest.back() == '}') {
    out.user_key = std::string(rest.substr(0, rest.size() - 1));
    out.position = 0;
    out.name.clear();
    return true;
  }
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || rest[colon - 1] != '}')
    return false;
  const std::string_view id = rest.substr(colon + 1);
  if (id.empty() || id.size() > kMaxNameLen) return false;
  out.user_key = std::string(rest.substr(0, colon - 1));
  out.name.clear();
  out.position = 0;
  if (id[0] >= '1' && id[0] <= '9') {
    int64_t pos;
    if (!parse_i64(id, pos) || pos >= static_cast<int64_t>(kMaxPolicies))
      return false;
    out.position = static_cast<size_t>(pos);
    return true;
  }
  if (check_policy_name(id) != Errc::ok) return false;
  out.name = std::string(id);
  return true;
}

namespace {

// Collects the peeks of one SCAN page.
struct PeekBatch {
  std::mutex mu;
  std::condition_variable cv;
  size_t left = 0;
};
struct PeekCtx {
  std::shared_ptr<PeekBatch> batch;
  StoreCheck result;
};
void peek_done(void *ctx, StoreCheck &r) {
  auto *p = static_cast<PeekCtx *>(ctx);
  p->result = r;
  std::shared_ptr<PeekBatch> batch = p->batch;
  {
    std::lock_guard<std::mutex> lock(batch->mu);
    --batch->left;
  }
  batch->cv.notify_one();
}

}  // namespace

namespace {

// One '[...]' set, `p` starting after its '[': whether byte `c` is in it,
// read as Redis's stringmatchlen reads it (a ']' right after '[' closes an
// empty set; "x-y" is a range even when y is ']'; an unclosed set runs to
// the end of the pattern). `used`: the bytes of `p` it takes.
bool glob_set(std::string_view p, unsigned char c, size_t &used) {
  size_t i = 0;
  const bool negate = i < p.size() && p[i] == '^';
  if (negate) ++i;
  bool in = false;
  while (i < p.size()) {
    const auto at = [&](size_t j) { return static_cast<unsigned char>(p[j]); };
    if (p[i] == '\\' && p.size() - i >= 2) {
      ++i;
      in = in || at(i) == c;
    } else if (p[i] == ']') {
      break;
    } else if (p.size() - i >= 3 && p[i + 1] == '-') {
      unsigned char lo = at(i), hi = at(i + 2);
      if (lo > hi) std::swap(lo, hi);
      in = in || (c >= lo && c <= hi);
      i += 2;
    } else {
      in = in || at(i) == c;
    }
    ++i;
  }
  used = i < p.size() ? i + 1 : p.size();
  return in != negate;
}

}  // namespace

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative, with one backtrack point for the last '*': linear in
  // practice, never recursive (a hostile pattern cannot exhaust the stack).
  size_t pi = 0, ti = 0, star = std::string_view::npos, star_t = 0;
  while (ti < t.size()) {
    if (pi < p.size()) {
      const char c = p[pi];
      if (c == '*') {
        star = ++pi;
        star_t = ti;
        continue;
      }
      if (c == '?') {
        ++pi;
        ++ti;
        continue;
      }
      if (c == '[') {
        size_t used = 0;
        if (glob_set(p.substr(pi + 1), static_cast<unsigned char>(t[ti]),
                     used)) {
          pi += 1 + used;
          ++ti;
          continue;
        }
      } else {
        const bool escaped = c == '\\' && pi + 1 < p.size();
        if (p[pi + (escaped ? 1 : 0)] == t[ti]) {
          pi += escaped ? 2 : 1;
          ++ti;
          continue;
        }
      }
    }
    if (star == std::string_view::npos) return false;
    pi = star;
    ti = ++star_t;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

Errc RedisStore::scan_page(std::string &cursor, std::vector<KeyEntry> &out,
                           std::span<const Policy> policies,
                           std::string_view user_pattern, int64_t now_us,
                           int64_t deadline_ns) {
  // The user pattern goes into MATCH as given (a glob of its own); the
  // listed user keys are matched against it again below, since in MATCH
  // its '*' may also run past the key's '}'.
  const std::string pattern =
      glob_escape(settings_.key_prefix) + "v2:{" +
      (user_pattern.empty() ? std::string("*")
                            : std::string(user_pattern) + "}") +
      "*";
  std::vector<std::string> nodes;
  Errc rc = primaries(deadline_ns, nodes);
  if (rc != Errc::ok) return rc;
  // A cluster's cursor is "<primary>:<its SCAN cursor>", the primaries in
  // the order the transport lists them; "0" starts at the first and comes
  // back after the last. (A failover between pages may repeat or skip
  // keys, as SCAN does during a resize.)
  size_t at = 0;
  std::string node_cursor = cursor;
  if (clustered_) {
    const size_t colon = cursor.find(':');
    if (colon != std::string::npos) {
      at = static_cast<size_t>(std::strtoull(cursor.c_str(), nullptr, 10));
      node_cursor = cursor.substr(colon + 1);
    }
    if (at >= nodes.size()) {
      cursor.clear();  // (not = "0": GCC 12 -O3 warns, -Wrestrict)
      cursor.push_back('0');
      return Errc::ok;
    }
  }
  std::vector<std::string> keys;
  rc = scan_node(nodes[at], kAnySlot, pattern, node_cursor, keys, "keys",
                 deadline_ns);
  if (rc != Errc::ok) return rc;
  if (!clustered_)
    cursor = node_cursor;
  else if (node_cursor != "0")
    cursor = std::to_string(at) + ":" + node_cursor;
  else if (at + 1 < nodes.size())
    cursor = std::to_string(at + 1) + ":0";
  else
    cursor = node_cursor;  // "0": the last primary is done

  std::vector<KeyEntry> entries;
  for (const std::string &k : keys) {
    StateName name;
    if (!parse_redis_key(k, settings_.key_prefix, name)) continue;
    if (!user_pattern.empty() && !glob_match(user_pattern, name.user_key))
      continue;
    // The policy whose identity this state is: its name, or, unnamed, its
    // position in the list.
    for (size_t i = 0; i < policies.size(); ++i) {
      const Policy &p = policies[i];
      const bool match = name.name.empty()
                             ? p.name_len == 0 && i == name.position
                             : policy_name(p) == name.name;
      if (!match) continue;
      KeyEntry e;
      e.key = std::move(name.user_key);
      e.policy = p;
      e.index = i;
      entries.push_back(std::move(e));
      break;
    }
  }
  if (entries.empty()) return Errc::ok;
  // Peek every state (cost 0), all pipelined, then wait for the batch.
  auto batch = std::make_shared<PeekBatch>();
  batch->left = entries.size();
  std::vector<std::unique_ptr<PeekCtx>> peeks;
  peeks.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    peeks.push_back(std::make_unique<PeekCtx>());
    peeks.back()->batch = batch;
  }
  for (size_t i = 0; i < entries.size(); ++i)
    check(entries[i].key, std::span<const Policy>(&entries[i].policy, 1), 0,
          now_us, deadline_ns, peek_done, peeks[i].get(), false,
          entries[i].index);
  {
    // The transport answers every check by its deadline, so this wait ends.
    std::unique_lock<std::mutex> lock(batch->mu);
    transport_->wait(lock, batch->cv, INT64_MAX,
                     [&] { return batch->left == 0; });
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const StoreCheck &res = peeks[i]->result;
    if (res.code != Errc::ok) return fail(res.code, res.message);
    entries[i].remaining = res.outcomes[0].remaining;
    entries[i].reset_after_us = res.outcomes[0].reset_after_us;
    out.push_back(std::move(entries[i]));
  }
  return Errc::ok;
}

}  // namespace tollgate::redis
