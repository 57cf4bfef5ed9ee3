#include "topology.hpp"

namespace tollgate::redis {

Address address_of(const Settings &s) {
  Address a;
  a.unix_socket = s.unix_socket;
  a.host = s.host;
  a.port = s.port;
  a.path = s.path;
  return a;
}

StandaloneTopology::StandaloneTopology(IoLoop &loop, ConnectionShared &shared)
    : pipeline_(loop, shared, address_of(shared.settings),
                shared.settings.connections ? shared.settings.connections : 1) {
  loop.attach(&pipeline_);
}

}  // namespace tollgate::redis
