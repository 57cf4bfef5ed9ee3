// TLS material for the tests, made with the openssl CLI by make_certs.sh
// (EC P-256, valid one day). Every path is absolute: redis-server resolves
// relative TLS paths against its --dir.
#pragma once

#include <string>

namespace tollgate_test {

struct Certs {
  std::string dir;
  std::string ca_cert, ca_key;  // the test CA, trusted by the servers
  std::string other_ca_cert, other_ca_key;  // an unrelated CA (wrong-CA tests)
  // CN localhost, SAN DNS:localhost and IP:127.0.0.1, signed by the CA.
  std::string server_cert, server_key;
  // CN and SAN wrong.example only, signed by the CA (hostname mismatch).
  std::string wrong_cert, wrong_key;
  // Client certificate (extendedKeyUsage clientAuth) signed by the CA.
  std::string client_cert, client_key;
  // The same, signed by the unrelated CA (a client the server must refuse).
  std::string other_client_cert, other_client_key;
};

// Made once per test process (thread-safe; about 0.1 s) in a temp dir that
// is removed when the process exits. Throws std::runtime_error with
// openssl's output on failure.
const Certs &test_certs();

// Makes a fresh set in `dir` (which must exist), uncached.
Certs make_certs(const std::string &dir);

}  // namespace tollgate_test
