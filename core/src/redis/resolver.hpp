// Turning a host name into addresses without holding up the I/O thread.
// IP literals and unix paths resolve at once; a name is looked up on a
// helper thread of its own (getaddrinfo, or the resolver a test installed
// with set_resolver), which wakes the I/O thread through its own copy of
// the wake-up eventfd when done, so it may outlive the transport.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tollgate/redis/transport.hpp"

namespace tollgate::redis {

bool is_ip_literal(const std::string &host);

// getaddrinfo with `flags` (AI_NUMERICHOST for literals); 0 or its error.
int resolve_now(const std::string &host, uint16_t port, int flags,
                std::vector<Endpoint> &out);

// One lookup in progress on a helper thread.
class Lookup {
 public:
  // Starts looking `host` up; on success the helper writes `wake_fd` (a
  // dup of it) when done. Empty `error` on success.
  static std::shared_ptr<Lookup> start(const std::string &host, uint16_t port,
                                       int wake_fd, std::string &error);

  // True once done; then `rc` (0 or a getaddrinfo code) and the addresses
  // are moved out.
  bool take(int &rc, std::vector<Endpoint> &out);

 private:
  std::mutex mu_;
  bool done_ = false;
  int rc_ = 0;
  std::vector<Endpoint> addrs_;
};

}  // namespace tollgate::redis
