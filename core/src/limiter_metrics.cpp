// The metrics snapshot (docs/metrics.md): the decision counters per policy
// label, and series read from health's counters and the transport's; and
// the fallback episodes the log hook reports.
#include "tollgate/limiter.hpp"
#include "tollgate/redis/transport.hpp"
#include "tollgate/redis/url.hpp"

namespace tollgate {
namespace {

constexpr const char *kSourceNames[kSources] = {
    "store", "deny_cache", "fail_open", "fail_closed",
    "local", "allow_list", "deny_list"};

MetricSeries series(MetricType type, const char *name, const char *help,
                    double value) {
  MetricSeries s;
  s.type = type;
  s.name = name;
  s.help = help;
  s.value = value;
  return s;
}

MetricSeries counter(const char *name, const char *help, uint64_t value) {
  return series(MetricType::counter, name, help, static_cast<double>(value));
}

MetricSeries gauge(const char *name, const char *help, double value) {
  return series(MetricType::gauge, name, help, value);
}

MetricSeries histogram(const char *name, const char *help, const RttCounts &c) {
  MetricSeries s = series(MetricType::histogram, name, help, 0);
  uint64_t below = 0;
  for (size_t i = 0; i < kRttBoundsUs.size(); ++i) {
    below += c.buckets[i];
    s.cumulative.push_back(below);
  }
  s.count = c.count;
  s.sum = static_cast<double>(c.sum_ns) / 1e9;
  return s;
}

}  // namespace

std::vector<MetricSeries> Limiter::metrics() const {
  std::vector<MetricSeries> out;
  if (decisions_) {
    const std::vector<std::string> names = label_names();
    for (const DecisionCounters::Row &row : decisions_->read()) {
      const std::string &policy = names[row.label];
      for (int allowed = 1; allowed >= 0; --allowed)
        for (size_t src = 0; src < kSources; ++src) {
          const uint64_t n =
              row.n[decision_slot(allowed == 1, static_cast<int>(src))];
          if (n == 0) continue;
          MetricSeries s = counter(
              "tollgate_checks_total",
              "Decisions given, by the reported policy's name, the decision "
              "and the path that answered",
              n);
          s.labels = {{"policy", policy},
                      {"decision", allowed ? "allowed" : "denied"},
                      {"source", kSourceNames[src]}};
          out.push_back(std::move(s));
        }
      if (row.n[kShadowSlot] != 0) {
        MetricSeries s = counter(
            "tollgate_shadow_denials_total",
            "Checks allowed only because shadow mode did not enforce a denial",
            row.n[kShadowSlot]);
        s.labels = {{"policy", policy}};
        out.push_back(std::move(s));
      }
    }
  }
  const Health h = health();
  out.push_back(counter("tollgate_check_errors_total",
                        "Calls that failed with an error instead of a decision",
                        h.errors));
  if (h.store_kind == StoreKind::memory) {
    out.push_back(gauge("tollgate_memory_keys", "Keys the memory store holds",
                        static_cast<double>(h.live_keys)));
    out.push_back(counter("tollgate_memory_evictions_total",
                          "Keys evicted to stay within max_keys", h.evictions));
    return out;
  }
  out.push_back(counter("tollgate_store_errors_total",
                        "Store calls that failed (each then answered by the "
                        "failure mode)",
                        h.store_errors));
  out.push_back(gauge("tollgate_async_pending",
                      "Async checks waiting for the store (at most max_async)",
                      static_cast<double>(h.async_pending)));
  out.push_back(counter("tollgate_async_refused_total",
                        "Async checks refused at once because max_async were "
                        "already waiting (RL_E_BUSY)",
                        h.async_refused));
  for (const NodeHealth &n : h.nodes) {
    auto add = [&](MetricSeries s) {
      s.labels = {{"node", n.address}};
      out.push_back(std::move(s));
    };
    add(gauge("tollgate_store_up",
              "1 while a connection to the node is ready, else 0",
              n.connection == 2 ? 1 : 0));
    add(gauge("tollgate_store_primary",
              "1 if the node serves the limiter's keys (a primary), else 0",
              n.primary ? 1 : 0));
    add(gauge("tollgate_store_in_flight",
              "Commands sent to the node and awaiting its reply", n.in_flight));
    add(counter("tollgate_store_connection_failures_total",
                "Connections to the node lost or refused", n.failures));
    add(counter("tollgate_store_reconnects_total",
                "Connections to the node re-established", n.reconnects));
    add(histogram("tollgate_store_round_trip_seconds",
                  "Round trips of the limiter's commands to the node, from "
                  "sending to reading the reply",
                  n.rtt));
  }
  if (h.topology == 2) {  // cluster
    MetricSeries moved =
        counter("tollgate_cluster_redirections_total",
                "MOVED and ASK redirections followed", h.moved);
    moved.labels = {{"kind", "moved"}};
    MetricSeries ask = moved;
    ask.value = static_cast<double>(h.ask);
    ask.labels = {{"kind", "ask"}};
    out.push_back(std::move(moved));
    out.push_back(std::move(ask));
    out.push_back(counter("tollgate_cluster_slot_map_refreshes_total",
                          "Slot maps read from the cluster",
                          h.slot_map_refreshes));
    if (h.slot_map_age_ms >= 0)
      out.push_back(gauge("tollgate_cluster_slot_map_age_seconds",
                          "Age of the slot map in use",
                          static_cast<double>(h.slot_map_age_ms) / 1000));
  }
  if (h.topology == 3)  // sentinel
    out.push_back(counter("tollgate_sentinel_master_switches_total",
                          "Moves to another master after a failover",
                          h.master_switches));
  return out;
}

}  // namespace tollgate

// ---- fallback episodes (the log hook) --------------------------------------

namespace tollgate {
namespace {

const char *failure_mode_text(redis::FailureMode m) {
  switch (m) {
    case redis::FailureMode::open:
      return "allowing every check (fail open)";
    case redis::FailureMode::closed:
      return "denying every check (fail closed)";
    case redis::FailureMode::local:
      return "limiting in this process alone (failure mode local)";
    case redis::FailureMode::error:
      return "failing checks with the error";
  }
  return "";
}

}  // namespace

uint64_t Limiter::fallback_answers() const noexcept {
  uint64_t n = 0;
  for (const CounterStripe &c : counters_)
    n += c.store_errors.load(std::memory_order_relaxed);
  return n;
}

void Limiter::begin_fallback(const std::string &message) {
  if (in_fallback_.exchange(true)) return;  // another thread began it
  fallback_since_ns_.store(redis::monotonic_ns());
  fallback_answers_at_start_.store(fallback_answers());
  log_->log(LogLevel::warn,
            "tollgate: the store cannot answer (" + message + "): " +
                failure_mode_text(settings_->failure_mode) + " until it can");
}

void Limiter::end_fallback() {
  if (!in_fallback_.exchange(false)) return;
  const int64_t ms =
      (redis::monotonic_ns() - fallback_since_ns_.load()) / 1000000;
  const uint64_t n = fallback_answers() - fallback_answers_at_start_.load();
  log_->log(LogLevel::info, "tollgate: the store answers again after " +
                                std::to_string(ms) + " ms; " +
                                std::to_string(n) +
                                " check(s) were answered without it meanwhile");
}

}  // namespace tollgate
