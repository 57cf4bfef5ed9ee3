#include "support/certs.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include "support/redis_server.hpp"

namespace tollgate_test {
namespace {

namespace fs = std::filesystem;

// make_certs.sh sits beside this file. CMake compiles sources by absolute
// path, so __FILE__ finds it without a compile definition;
// TOLLGATE_MAKE_CERTS overrides it.
std::string script_path() {
  if (const char *env = std::getenv("TOLLGATE_MAKE_CERTS"); env && *env)
    return env;
  const fs::path here(__FILE__);
  const fs::path script = here.parent_path() / "make_certs.sh";
  if (!here.is_absolute() || !fs::exists(script))
    throw std::runtime_error("make_certs.sh not found next to " +
                             here.string() +
                             "; set TOLLGATE_MAKE_CERTS to its absolute path");
  return script.string();
}

// The cached set, and its removal when the process that made it exits
// (not when a forked test child exits).
struct Cache {
  Certs certs;
  pid_t owner = -1;
  ~Cache() {
    if (owner == getpid() && !certs.dir.empty()) {
      std::error_code ec;
      fs::remove_all(certs.dir, ec);
    }
  }
};

}  // namespace

Certs make_certs(const std::string &dir) {
  const fs::path d = fs::absolute(dir);
  const ProcessResult r = run_process({"/bin/bash", script_path(), d.string()},
                                      std::chrono::seconds(60));
  if (r.exit_code != 0)
    throw std::runtime_error("make_certs.sh failed (exit " +
                             std::to_string(r.exit_code) + "):\n" + r.output);
  auto p = [&](const char *name) { return (d / name).string(); };
  Certs c;
  c.dir = d.string();
  c.ca_cert = p("ca.crt");
  c.ca_key = p("ca.key");
  c.other_ca_cert = p("other-ca.crt");
  c.other_ca_key = p("other-ca.key");
  c.server_cert = p("server.crt");
  c.server_key = p("server.key");
  c.wrong_cert = p("wrong.crt");
  c.wrong_key = p("wrong.key");
  c.client_cert = p("client.crt");
  c.client_key = p("client.key");
  c.other_client_cert = p("other-client.crt");
  c.other_client_key = p("other-client.key");
  for (const std::string *f :
       {&c.ca_cert, &c.ca_key, &c.other_ca_cert, &c.other_ca_key,
        &c.server_cert, &c.server_key, &c.wrong_cert, &c.wrong_key,
        &c.client_cert, &c.client_key, &c.other_client_cert,
        &c.other_client_key})
    if (!fs::exists(*f))
      throw std::runtime_error("make_certs.sh did not write " + *f + ":\n" +
                               r.output);
  return c;
}

const Certs &test_certs() {
  static Cache cache;
  static std::once_flag once;
  // An exception leaves the flag unset, so a later call tries again.
  std::call_once(once, [] {
    std::string tmpl =
        (fs::temp_directory_path() / "tollgate-certs-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed for " + tmpl);
    try {
      cache.certs = make_certs(tmpl);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(tmpl, ec);
      throw;
    }
    cache.owner = getpid();
  });
  return cache.certs;
}

}  // namespace tollgate_test
