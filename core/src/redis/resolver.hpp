// Turning a host name into addresses without holding up the I/O thread.
// IP literals and unix paths resolve at once; a name is looked up on a
// helper thread of its own (getaddrinfo, or the resolver a test installed
// with set_resolver), which wakes the I/O thread through its own copy of
// the wake-up eventfd when done. The transport joins every helper: a
// finished one when the next lookup starts, the rest when it is destroyed
// (rl_destroy waits for a lookup still inside getaddrinfo).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tollgate/redis/transport.hpp"

namespace tollgate::redis {

bool is_ip_literal(const std::string &host);

// getaddrinfo with `flags` (AI_NUMERICHOST for literals); 0 or its error.
int resolve_now(const std::string &host, uint16_t port, int flags,
                std::vector<Endpoint> &out);

class Lookup;

// The helper threads of one transport's lookups.
class LookupThreads {
 public:
  LookupThreads() = default;
  ~LookupThreads();  // joins every helper
  LookupThreads(const LookupThreads &) = delete;
  LookupThreads &operator=(const LookupThreads &) = delete;

  void add(std::thread t, std::shared_ptr<Lookup> l);
  // Joins the helpers that have finished (never waits for a lookup).
  void reap();
  size_t running();  // helpers not yet joined (tests)

 private:
  std::mutex mu_;
  std::vector<std::pair<std::thread, std::shared_ptr<Lookup>>> threads_;
};

// One lookup in progress on a helper thread.
class Lookup {
 public:
  // Starts looking `host` up on a helper thread handed to `threads`; on
  // success the helper writes `wake_fd` (a dup of it) when done. Empty
  // `error` on success.
  static std::shared_ptr<Lookup> start(const std::string &host, uint16_t port,
                                       int wake_fd, LookupThreads &threads,
                                       std::string &error);

  // True once done; then `rc` (0 or a getaddrinfo code) and the addresses
  // are moved out.
  bool take(int &rc, std::vector<Endpoint> &out);

 private:
  std::mutex mu_;
  bool done_ = false;
  int rc_ = 0;
  std::vector<Endpoint> addrs_;
  std::atomic<bool> exited_{false};  // the helper's last step is done
  friend class LookupThreads;
};

}  // namespace tollgate::redis
