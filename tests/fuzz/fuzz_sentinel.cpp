// The Sentinel reply parsers (core/src/redis/sentinel.hpp): the input is a
// RESP stream; each reply the reader makes of it is read as an answer to
// SENTINEL GET-MASTER-ADDR-BY-NAME, as a ROLE answer and as a
// +switch-master message (for "mymaster", and for the name the message
// itself carries). Checks, besides ASan and UBSan, that what they accept
// is what they promise: an address has a host taken from the reply and a
// port, a role is the reply's first string, a switch names the master
// asked for and an address of the message.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "sentinel.hpp"
#include "tollgate/redis/resp.hpp"

using namespace tollgate::redis;

namespace {

void require(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_sentinel: %s\n", what);
  std::abort();
}

void check_switch(const Reply &reply, const std::string &name) {
  std::string host;
  uint16_t port = 0;
  if (!parse_switch_master(reply, name, host, port)) return;
  require(port != 0, "a switch to port 0");
  require(host.find(' ') == std::string::npos, "a host with a space");
  const std::string &text = reply.elements.at(2)->str;
  require(text.rfind(name + " ", 0) == 0, "a switch of another master");
  require(text.find(" " + host + " ") != std::string::npos,
          "a host not in the message");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader reader;
  if (!reader.feed(reinterpret_cast<const char *>(data), size)) return 0;
  for (int n = 0; n < 64; ++n) {
    std::unique_ptr<Reply> reply;
    if (reader.next(reply) != Reader::Status::reply) break;

    std::string host;
    uint16_t port = 0;
    switch (parse_master_addr(*reply, host, port)) {
      case MasterAddr::found:
        require(port != 0, "a master at port 0");
        require(reply->elements.size() == 2 && host == reply->elements[0]->str,
                "a host not from the reply");
        break;
      case MasterAddr::unknown:
        require(reply->type == Reply::Type::nil || reply->elements.empty(),
                "unknown, yet an answer");
        break;
      case MasterAddr::refused:
        require(reply->type == Reply::Type::error, "refused without an error");
        break;
      case MasterAddr::malformed:
        break;
    }

    const std::string role = parse_role(*reply);
    if (!role.empty())
      require(
          reply->type == Reply::Type::array && reply->elements[0]->str == role,
          "a role not from the reply");

    check_switch(*reply, "mymaster");
    if (reply->elements.size() == 3) {
      const std::string &text = reply->elements[2]->str;
      check_switch(*reply, text.substr(0, text.find(' ')));
    }
  }
  return 0;
}
