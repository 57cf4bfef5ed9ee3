#include "cluster_map.hpp"

#include <charconv>

namespace tollgate::redis {
namespace {

bool to_int(std::string_view s, long long &out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// A reply element as an integer (CLUSTER SHARDS and SLOTS send integers;
// accept numeric strings as well).
bool int_of(const Reply &r, long long &out) {
  if (r.type == Reply::Type::integer) {
    out = r.integer;
    return true;
  }
  if (r.type == Reply::Type::string || r.type == Reply::Type::status)
    return to_int(r.str, out);
  return false;
}

bool is_text(const Reply &r) {
  return r.type == Reply::Type::string || r.type == Reply::Type::status;
}

// Adds `node` (once) and gives it slots [lo, hi].
bool own(ClusterMap &m, const ClusterNodeInfo &node, long long lo, long long hi,
         std::string &why) {
  if (lo < 0 || hi >= kClusterSlots || lo > hi) {
    why = "slot range " + std::to_string(lo) + "-" + std::to_string(hi) +
          " is out of 0-16383";
    return false;
  }
  if (node.host.empty() || node.port == 0) {
    why = "a primary without an address";
    return false;
  }
  int16_t idx = -1;
  for (size_t i = 0; i < m.primaries.size(); ++i)
    if (m.primaries[i].host == node.host && m.primaries[i].port == node.port)
      idx = static_cast<int16_t>(i);
  if (idx < 0) {
    if (m.primaries.size() >= 4096) {
      why = "more than 4096 primaries";
      return false;
    }
    idx = static_cast<int16_t>(m.primaries.size());
    m.primaries.push_back(node);
  }
  for (long long s = lo; s <= hi; ++s) m.owner[static_cast<size_t>(s)] = idx;
  return true;
}

bool port_of(long long v, uint16_t &out) {
  if (v <= 0 || v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

size_t ClusterMap::uncovered() const {
  size_t n = 0;
  for (int16_t o : owner) n += o < 0;
  return n;
}

int ClusterMap::first_uncovered() const {
  for (size_t s = 0; s < owner.size(); ++s)
    if (owner[s] < 0) return static_cast<int>(s);
  return -1;
}

bool parse_cluster_shards(const Reply &reply, bool tls, ClusterMap &out,
                          std::string &why) {
  if (reply.type != Reply::Type::array) {
    why = "CLUSTER SHARDS did not answer with a list";
    return false;
  }
  for (const auto &shard : reply.elements) {
    if (shard->type != Reply::Type::array || shard->elements.size() % 2) {
      why = "a CLUSTER SHARDS entry is not a field list";
      return false;
    }
    const Reply *slots = nullptr, *nodes = nullptr;
    for (size_t i = 0; i + 1 < shard->elements.size(); i += 2) {
      const Reply &k = *shard->elements[i];
      if (!is_text(k)) continue;
      if (k.str == "slots") slots = shard->elements[i + 1].get();
      if (k.str == "nodes") nodes = shard->elements[i + 1].get();
    }
    if (!slots || !nodes || slots->type != Reply::Type::array ||
        nodes->type != Reply::Type::array || slots->elements.size() % 2) {
      why = "a CLUSTER SHARDS entry lacks its slots or nodes";
      return false;
    }
    if (slots->elements.empty()) continue;  // a shard with no slots
    ClusterNodeInfo primary;
    bool found = false;
    for (const auto &node : nodes->elements) {
      if (node->type != Reply::Type::array) continue;
      ClusterNodeInfo info;
      std::string role, endpoint, ip, health;
      long long port = 0, tls_port = 0;
      for (size_t i = 0; i + 1 < node->elements.size(); i += 2) {
        const Reply &k = *node->elements[i];
        const Reply &v = *node->elements[i + 1];
        if (!is_text(k)) continue;
        if (k.str == "id" && is_text(v)) info.id = v.str;
        if (k.str == "role" && is_text(v)) role = v.str;
        if (k.str == "endpoint" && is_text(v)) endpoint = v.str;
        if (k.str == "ip" && is_text(v)) ip = v.str;
        if (k.str == "health" && is_text(v)) health = v.str;
        if (k.str == "port") int_of(v, port);
        if (k.str == "tls-port") int_of(v, tls_port);
      }
      if (role != "master" || health == "fail") continue;
      info.host = !endpoint.empty() && endpoint != "?" ? endpoint : ip;
      if (!port_of(tls && tls_port ? tls_port : port, info.port)) continue;
      primary = info;
      found = true;
      break;
    }
    if (!found) continue;  // its primary failed: those slots are uncovered
    for (size_t i = 0; i + 1 < slots->elements.size(); i += 2) {
      long long lo, hi;
      if (!int_of(*slots->elements[i], lo) ||
          !int_of(*slots->elements[i + 1], hi)) {
        why = "a CLUSTER SHARDS slot range is not numeric";
        return false;
      }
      if (!own(out, primary, lo, hi, why)) return false;
    }
  }
  return true;
}

bool parse_cluster_slots(const Reply &reply, ClusterMap &out,
                         std::string &why) {
  if (reply.type != Reply::Type::array) {
    why = "CLUSTER SLOTS did not answer with a list";
    return false;
  }
  for (const auto &range : reply.elements) {
    long long lo, hi, port;
    if (range->type != Reply::Type::array || range->elements.size() < 3 ||
        !int_of(*range->elements[0], lo) || !int_of(*range->elements[1], hi) ||
        range->elements[2]->type != Reply::Type::array ||
        range->elements[2]->elements.size() < 2 ||
        !is_text(*range->elements[2]->elements[0]) ||
        !int_of(*range->elements[2]->elements[1], port)) {
      why = "a CLUSTER SLOTS entry is malformed";
      return false;
    }
    const auto &node = range->elements[2]->elements;
    ClusterNodeInfo info;
    info.host = node[0]->str;
    if (!port_of(port, info.port)) {
      why = "a CLUSTER SLOTS entry has port " + std::to_string(port);
      return false;
    }
    if (node.size() > 2 && is_text(*node[2])) info.id = node[2]->str;
    if (!own(out, info, lo, hi, why)) return false;
  }
  return true;
}

bool parse_redirect(std::string_view text, std::string_view verb, int &slot,
                    std::string &host, uint16_t &port) {
  if (text.size() <= verb.size() || text.substr(0, verb.size()) != verb ||
      text[verb.size()] != ' ')
    return false;
  text.remove_prefix(verb.size() + 1);
  const size_t sp = text.find(' ');
  if (sp == std::string_view::npos) return false;
  long long s;
  if (!to_int(text.substr(0, sp), s) || s < 0 || s >= kClusterSlots)
    return false;
  std::string_view where = text.substr(sp + 1);
  const size_t colon = where.rfind(':');
  if (colon == std::string_view::npos) return false;
  long long p;
  if (!to_int(where.substr(colon + 1), p) || !port_of(p, port)) return false;
  std::string_view h = where.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  host = std::string(h);
  slot = static_cast<int>(s);
  return true;
}

}  // namespace tollgate::redis
