// Error codes and the thread-local error message shared by the core and the
// C ABI. Codes match the RL_E_* values of tollgate.h (checked in capi.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace tollgate {

enum class Errc : int {
  ok = 0,
  invalid_arg = -1,
  key_invalid = -2,
  key_too_long = -3,
  policy = -4,
  overflow = -5,
  version = -6,
  nomem = -7,
  url = -8,
  unsupported = -9,
  internal = -10,
  connect = -11,
  timeout = -12,
  auth = -13,
  tls = -14,
  protocol = -15,
  store = -16,
  closed = -17,
  done = -18,
  not_found = -19,
  busy = -20,
};

// Records `message` as the calling thread's last error and returns `code`,
// so a failing function can `return fail(Errc::policy, "...")`.
Errc fail(Errc code, std::string message);

// The calling thread's last error message ("" if none).
const char *last_error_message() noexcept;

// Clears the calling thread's last error message (cheap when already clear).
void clear_last_error() noexcept;

}  // namespace tollgate
