#include "resolver.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "request.hpp"

namespace tollgate::redis {
namespace {

std::atomic<Resolver> g_resolver{nullptr};

}  // namespace

void set_resolver(Resolver resolver) noexcept {
  g_resolver.store(resolver);
}

bool is_ip_literal(const std::string &host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

int resolve_now(const std::string &host, uint16_t port, int flags,
                std::vector<Endpoint> &out) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | flags;
  addrinfo *res = nullptr;
  const std::string p = std::to_string(port);
  const int rc = getaddrinfo(host.c_str(), p.c_str(), &hints, &res);
  if (rc != 0) return rc;
  for (const addrinfo *a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Endpoint e;
    std::memcpy(&e.addr, a->ai_addr, a->ai_addrlen);
    e.len = a->ai_addrlen;
    out.push_back(e);
  }
  freeaddrinfo(res);
  return out.empty() ? EAI_NONAME : 0;
}

LookupThreads::~LookupThreads() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto &[t, l] : threads_)
    if (t.joinable()) t.join();
}

void LookupThreads::add(std::thread t, std::shared_ptr<Lookup> l) {
  std::lock_guard<std::mutex> lock(mu_);
  threads_.emplace_back(std::move(t), std::move(l));
}

void LookupThreads::reap() {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(threads_, [](auto &entry) {
    if (!entry.second->exited_.load(std::memory_order_acquire)) return false;
    entry.first.join();  // past its last step: returns at once
    return true;
  });
}

size_t LookupThreads::running() {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_.size();
}

std::shared_ptr<Lookup> Lookup::start(const std::string &host, uint16_t port,
                                      int wake_fd, LookupThreads &threads,
                                      std::string &error) {
  threads.reap();
  auto l = std::make_shared<Lookup>();
  const int fd = fcntl(wake_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    error = "connect: dup: " + errno_text(errno);
    return nullptr;
  }
  const Resolver custom = g_resolver.load();
  try {
    std::thread helper([l, fd, custom, host, port] {
      std::vector<Endpoint> found;
      const int rc = custom ? custom(host, port, found)
                            : resolve_now(host, port, 0, found);
      {
        std::lock_guard<std::mutex> lock(l->mu_);
        l->rc_ = rc;
        l->addrs_ = std::move(found);
        l->done_ = true;
      }
      const uint64_t one = 1;
      ssize_t n;
      do {
        n = write(fd, &one, sizeof one);
      } while (n < 0 && errno == EINTR);
      close(fd);
      l->exited_.store(true, std::memory_order_release);
    });
    try {
      threads.add(std::move(helper), l);
    } catch (...) {
      helper.join();  // out of memory for the list: wait for it here
      throw;
    }
  } catch (const std::exception &e) {
    if (!l->exited_.load()) close(fd);
    error = std::string("connect: cannot start a resolver thread: ") + e.what();
    return nullptr;
  }
  return l;
}

bool Lookup::take(int &rc, std::vector<Endpoint> &out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) return false;
  rc = rc_;
  out = std::move(addrs_);
  return true;
}

}  // namespace tollgate::redis
