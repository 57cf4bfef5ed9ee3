#include "tollgate/error.hpp"

#include <utility>

namespace tollgate {
namespace {
thread_local std::string t_last_error;
}

Errc fail(Errc code, std::string message) {
  t_last_error = std::move(message);
  return code;
}

const char *last_error_message() noexcept {
  return t_last_error.c_str();
}

void clear_last_error() noexcept {
  if (!t_last_error.empty()) t_last_error.clear();
}

}  // namespace tollgate
