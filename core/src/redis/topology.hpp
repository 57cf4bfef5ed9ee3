// Which pipeline a command goes to. Standalone: the one endpoint of the
// URL. Cluster (cluster.hpp): the owner of the key's hash-tag slot.
#pragma once

#include <memory>

#include "io_loop.hpp"
#include "pipeline.hpp"

namespace tollgate::redis {

class Topology {
 public:
  virtual ~Topology() = default;
  // Sends `r` (its keys in `slot`); `blocking`: the caller may carry it.
  virtual void submit(Request r, int slot, bool blocking) = 0;
  virtual std::vector<std::string> primaries() = 0;
  virtual void submit_to(const std::string &primary, Request r) = 0;
  virtual bool clustered() const { return false; }
  virtual TransportStats stats() const = 0;
  virtual void note_ping(int64_t rtt_us) = 0;
};

// The direct path first, else the pipeline's queue.
inline void send_via(Pipeline &p, Request &r, bool blocking) {
  if (p.try_direct(r, blocking)) return;
  p.submit(std::move(r));
}

// The URL's own endpoint (host and port, or unix path).
Address address_of(const Settings &s);

class StandaloneTopology final : public Topology {
 public:
  StandaloneTopology(IoLoop &loop, ConnectionShared &shared);
  void submit(Request r, int, bool blocking) override {
    send_via(pipeline_, r, blocking);
  }
  std::vector<std::string> primaries() override { return {pipeline_.where()}; }
  void submit_to(const std::string &, Request r) override {
    pipeline_.submit(std::move(r));
  }
  TransportStats stats() const override { return pipeline_.stats(); }
  void note_ping(int64_t rtt_us) override { pipeline_.note_ping(rtt_us); }

 private:
  Pipeline pipeline_;
};

}  // namespace tollgate::redis
