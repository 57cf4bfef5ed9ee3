// The Redis Cluster layout parsers (core/src/redis/cluster_map.hpp): the
// input is a RESP stream; of the first four replies the reader makes of
// it, each array (and the first reply, whatever it is) goes to
// parse_cluster_shards (plain and TLS) and parse_cluster_slots, and each
// error or status line to parse_redirect as MOVED and ASK. Checks, besides
// ASan and UBSan:
//   - a map either parser accepts is coherent: every slot's owner is -1 or
//     a primary, every primary has a host and a port, and
//     uncovered() agrees with first_uncovered();
//   - a refusal says why;
//   - an accepted redirection has a slot in 0 .. 16383 and a port.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cluster_map.hpp"
#include "tollgate/redis/resp.hpp"

using namespace tollgate::redis;

namespace {

void require(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_cluster_map: %s\n", what);
  std::abort();
}

// Not instrumented for coverage: its loops over 16384 slots would call
// libFuzzer's comparison hooks for every slot and run ten times slower,
// for no coverage of the parsers.
__attribute__((no_sanitize("coverage"))) void check_map(
    bool ok, const ClusterMap &m, const std::string &why) {
  if (!ok) {
    require(!why.empty(), "a refused map without a reason");
    return;
  }
  require(m.owner.size() == kClusterSlots, "the owner table changed size");
  size_t uncovered = 0;
  for (int16_t o : m.owner) {
    require(o >= -1 && o < static_cast<int>(m.primaries.size()),
            "an owner that is no primary");
    if (o < 0) ++uncovered;
  }
  require(uncovered == m.uncovered(), "uncovered()");
  require((uncovered == 0) == (m.first_uncovered() == -1), "first_uncovered()");
  if (uncovered) require(m.owner[m.first_uncovered()] == -1, "first_uncovered");
  for (const ClusterNodeInfo &p : m.primaries)
    require(!p.host.empty() && p.port != 0, "a primary without an address");
}

void check_redirect(const std::string &text, std::string_view verb) {
  int slot = -1;
  std::string host;
  uint16_t port = 0;
  if (!parse_redirect(text, verb, slot, host, port)) return;
  require(slot >= 0 && slot < kClusterSlots, "a redirect slot out of range");
  require(port != 0, "a redirect to port 0");
  require(text.rfind(verb, 0) == 0, "a redirect of another verb");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader reader;
  if (!reader.feed(reinterpret_cast<const char *>(data), size)) return 0;
  // A map is 16384 slots: a few replies per input keep the rate up, and
  // each map is a copy (a memcpy) of an empty one rather than constructed
  // (a loop of 16384 instrumented comparisons).
  static const ClusterMap empty;
  for (int n = 0; n < 4; ++n) {
    std::unique_ptr<Reply> reply;
    if (reader.next(reply) != Reader::Status::reply) break;
    if (reply->type == Reply::Type::error ||
        reply->type == Reply::Type::status) {
      check_redirect(reply->str, "MOVED");
      check_redirect(reply->str, "ASK");
    }
    if (reply->type != Reply::Type::array && n > 0) continue;
    for (const bool tls : {false, true}) {
      ClusterMap map = empty;
      std::string why;
      const bool ok = parse_cluster_shards(*reply, tls, map, why);
      check_map(ok, map, why);
    }
    ClusterMap map = empty;
    std::string why;
    const bool ok = parse_cluster_slots(*reply, map, why);
    check_map(ok, map, why);
  }
  return 0;
}
