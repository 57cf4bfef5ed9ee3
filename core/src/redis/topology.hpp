// Which pipeline a command goes to. Standalone: the one endpoint of the
// URL. (Sentinel and Cluster pick the current master, or the owner of the
// key's hash-tag slot.)
#pragma once

#include <memory>

#include "io_loop.hpp"
#include "pipeline.hpp"

namespace tollgate::redis {

class Topology {
 public:
  virtual ~Topology() = default;
  virtual Pipeline &route() = 0;
  virtual TransportStats stats() const = 0;
  virtual void note_ping(int64_t rtt_us) = 0;
};

class StandaloneTopology final : public Topology {
 public:
  StandaloneTopology(IoLoop &loop, ConnectionShared &shared);
  Pipeline &route() override { return pipeline_; }
  TransportStats stats() const override { return pipeline_.stats(); }
  void note_ping(int64_t rtt_us) override { pipeline_.note_ping(rtt_us); }

 private:
  Pipeline pipeline_;
};

}  // namespace tollgate::redis
