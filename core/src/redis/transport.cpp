// The transport's public face: TLS context and settings shared by every
// process's copy, fork detection, and submission through the topology.
// The parts: connection.hpp (one socket), pipeline.hpp (one endpoint's
// commands), lender.hpp (callers on the direct path), io_loop.hpp (the I/O
// thread), topology.hpp (which endpoint), resolver.hpp (host names).
// docs/architecture.md draws them.
#include "tollgate/redis/transport.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <time.h>

#include <mutex>

#include "cluster.hpp"
#include "io_loop.hpp"
#include "sentinel.hpp"
#include "topology.hpp"

namespace tollgate::redis {
namespace {

// Bumped in every forked child, so a transport notices it is in a new
// process and builds fresh sockets and a fresh I/O thread.
std::atomic<uint64_t> g_fork_generation{0};
void on_fork_child() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}
void register_fork_handler() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, on_fork_child); });
}

// Validates the TLS material once, so that a bad file is an error at
// creation, not at the first call.
Errc make_tls_context(const TlsSettings &t, SSL_CTX *&out) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return fail(Errc::tls, "tls: cannot create a TLS context");
  out = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(
      ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (t.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!t.ca_file.empty() || !t.ca_dir.empty()) {
      if (SSL_CTX_load_verify_locations(
              ctx, t.ca_file.empty() ? nullptr : t.ca_file.c_str(),
              t.ca_dir.empty() ? nullptr : t.ca_dir.c_str()) != 1)
        return fail(Errc::tls, "tls: cannot load the CA from " +
                                   (t.ca_file.empty() ? t.ca_dir : t.ca_file) +
                                   ": " + openssl_errors());
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return fail(Errc::tls,
                  "tls: cannot load the system CA store: " + openssl_errors());
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!t.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, t.cert_file.c_str()) != 1)
      return fail(Errc::tls, "tls: cannot load the client certificate " +
                                 t.cert_file + ": " + openssl_errors());
    if (SSL_CTX_use_PrivateKey_file(ctx, t.key_file.c_str(),
                                    SSL_FILETYPE_PEM) != 1)
      return fail(Errc::tls, "tls: cannot load the client key " + t.key_file +
                                 ": " + openssl_errors());
    if (SSL_CTX_check_private_key(ctx) != 1)
      return fail(Errc::tls,
                  "tls: the client key does not match the certificate");
  }
  return Errc::ok;
}

}  // namespace

int64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// What every Core of one Transport shares: the settings and the TLS
// context (validated once, at creation).
struct Transport::Shared {
  Settings settings;
  std::vector<std::string> preload;
  FunctionLibrary functions;
  SSL_CTX *ssl_ctx = nullptr;
  ~Shared() {
    if (ssl_ctx) SSL_CTX_free(ssl_ctx);
  }
};

// One process's connections and I/O thread.
struct Transport::Core {
  explicit Core(std::shared_ptr<Shared> sh)
      : shared(std::move(sh)),
        generation(g_fork_generation.load()),
        loop(shared->settings.spin_us),
        conn_shared{shared->settings, shared->ssl_ctx,
                    shared->preload,  shared->functions,
                    loop.ep_fd(),     loop.wake_fd(),
                    lookups},
        topology(make_topology()) {}

  std::unique_ptr<Topology> make_topology() {
    if (shared->settings.topology == TopologyKind::cluster)
      return std::make_unique<ClusterTopology>(loop, conn_shared);
    if (shared->settings.topology == TopologyKind::sentinel)
      return std::make_unique<SentinelTopology>(loop, conn_shared);
    return std::make_unique<StandaloneTopology>(loop, conn_shared);
  }
  // The thread stops (answering what is queued) before the pipelines go.
  ~Core() { loop.stop(); }

  std::shared_ptr<Shared> shared;
  uint64_t generation;
  // Joined last, after the loop has stopped and the dialers are gone.
  LookupThreads lookups;
  IoLoop loop;
  ConnectionShared conn_shared;
  std::unique_ptr<Topology> topology;
};

Errc Transport::create(const Settings &settings,
                       std::vector<std::string> preload,
                       std::string_view library,
                       std::unique_ptr<Transport> &out) {
  register_fork_handler();
  auto shared = std::make_shared<Shared>();
  shared->settings = settings;
  shared->preload = std::move(preload);
  shared->functions.code = library;
  if (settings.tls.enabled) {
    const Errc rc = make_tls_context(settings.tls, shared->ssl_ctx);
    if (rc != Errc::ok) return rc;
  }
  out.reset(new Transport(std::move(shared)));
  return Errc::ok;
}

Transport::Transport(std::shared_ptr<Shared> shared)
    : shared_(std::move(shared)) {
  core_.store(new Core(shared_));
}

Transport::~Transport() {
  Core *c = core_.load();
  // A core made by another process (before a fork) has no thread here and
  // its sockets belong to the parent: leave it.
  if (c && c->generation == g_fork_generation.load()) delete c;
}

Transport::Core *Transport::core() {
  Core *c = core_.load(std::memory_order_acquire);
  const uint64_t gen = g_fork_generation.load(std::memory_order_relaxed);
  if (c->generation == gen) return c;
  // First use in a forked child: start over with our own sockets and
  // thread. The parent's core is abandoned, not freed: its mutex may have
  // been held by a thread that does not exist here.
  Core *fresh = new Core(shared_);
  if (core_.compare_exchange_strong(c, fresh, std::memory_order_acq_rel))
    return fresh;
  delete fresh;
  return c;
}

void Transport::submit(std::string command, int64_t deadline_ns,
                       Completion done, void *ctx, Mode mode, int slot) {
  core()->topology->submit(Request{std::move(command), deadline_ns, done, ctx},
                           slot, mode == Mode::blocking);
}

void Transport::submit_joinable(const Joiner *joiner, void *part,
                                int64_t deadline_ns, Completion done, Mode mode,
                                int slot) {
  core()->topology->submit(Request{{}, deadline_ns, done, part, joiner}, slot,
                           mode == Mode::blocking);
}

bool Transport::clustered() const {
  return shared_->settings.topology == TopologyKind::cluster;
}

std::vector<std::string> Transport::primaries() {
  return core()->topology->primaries();
}

void Transport::submit_to(const std::string &primary, std::string command,
                          int64_t deadline_ns, Completion done, void *ctx) {
  core()->topology->submit_to(
      primary, Request{std::move(command), deadline_ns, done, ctx});
}

void Transport::note_ping(int64_t rtt_us) {
  core()->topology->note_ping(rtt_us);
}

int Transport::host_open() {
  if (shared_->ssl_ctx != nullptr) return -1;
  Core *c = core();
  return c->loop.host_open() ? c->loop.ep_fd() : -1;
}

bool Transport::tls() const {
  return shared_->ssl_ctx != nullptr;
}

void Transport::host_close() {
  core()->loop.host_close();
}

int64_t Transport::host_turn(bool idle) {
  return core()->loop.host_turn(0, idle);
}

bool Transport::hosted_here() {
  return core()->loop.hosted_by_me();
}

void Transport::pump(int64_t until_ns) {
  core()->loop.pump(until_ns);
}

bool FunctionLibrary::loaded(const Reply &reply) {
  if (reply.type != Reply::Type::error) return true;  // the library's name
  return reply.str.find("already exists") != std::string::npos;
}

bool FunctionLibrary::refuse(const std::string &why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (refused.exchange(true)) return false;
  refusal_ = why;
  return true;
}

std::string FunctionLibrary::refusal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refusal_;
}

FunctionLibrary &Transport::functions() {
  return shared_->functions;
}

TransportStats Transport::stats() const {
  TransportStats out = const_cast<Transport *>(this)->core()->topology->stats();
  // A refused library is not an error of any connection; it is reported
  // where nothing else is.
  if (out.last_error.empty()) out.last_error = shared_->functions.refusal();
  return out;
}

}  // namespace tollgate::redis
