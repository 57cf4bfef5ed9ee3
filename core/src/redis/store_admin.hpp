// What the Redis store's check path and its administration share.
#pragma once

#include <string>

#include "tollgate/error.hpp"

namespace tollgate::redis {

// An error reply as a tollgate error: NOAUTH and WRONGPASS are auth, the
// rest store errors; `message` gets the text with its prefix.
Errc from_error_reply(const std::string &text, std::string &message);

}  // namespace tollgate::redis
