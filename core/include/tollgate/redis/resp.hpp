// RESP2 on the wire, with hiredis as the codec only: its reader parses and
// its formatter encodes; sockets are ours. The reader is bounded: a reply
// that announces more elements, a longer string or deeper nesting than the
// limits is a protocol error, and nothing of that size is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::redis {

struct Reply {
  enum class Type { string, array, integer, nil, status, error };
  Type type = Type::nil;
  long long integer = 0;
  std::string str;  // string, status and error text
  std::vector<std::unique_ptr<Reply>> elements;  // array
};

// tollgate's replies are small (a few integers, an INFO text, a SCAN page),
// so the limits are tight: a hostile or broken server cannot make the
// client allocate or buffer much.
struct ReaderLimits {
  size_t max_bulk_len = 4 * 1024 * 1024;  // one bulk string
  size_t max_elements = 1024 * 1024;      // one array's announced length
  int max_depth = 7;                      // nesting (hiredis allows 7)
  size_t max_buffer = 8 * 1024 * 1024;    // unparsed bytes held
  size_t max_line = 64 * 1024;            // a header or simple reply line
};

class Reader {
 public:
  explicit Reader(const ReaderLimits &limits = {});
  ~Reader();
  Reader(const Reader &) = delete;
  Reader &operator=(const Reader &) = delete;

  // Appends bytes read from the socket. False (with error()) if the
  // buffered input would exceed max_buffer.
  bool feed(const char *data, size_t len);

  // Result of next():
  //   reply  a complete reply was parsed into *out
  //   more   need more bytes
  //   error  protocol error (error() says what); the reader is unusable
  enum class Status { reply, more, error };
  Status next(std::unique_ptr<Reply> &out);

  const std::string &error() const { return error_; }

  // True if no byte of an unfinished reply is buffered.
  bool idle() const;

 private:
  // Why the reply being read must be refused before its bytes arrive (a
  // bulk string announced beyond max_bulk_len, a line beyond max_line),
  // or "".
  std::string pending_header_problem() const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string error_;
};

// The pieces of a command, for callers that build one argument at a time:
// "*<n>\r\n", then n bulk strings "$<len>\r\n<bytes>\r\n".
void append_array_header(std::string &out, size_t n);
void append_bulk(std::string &out, std::string_view a);

// Encodes one command (binary-safe arguments) as RESP, appending to `out`.
void format_command(const std::vector<std::string_view> &argv,
                    std::string &out);

}  // namespace tollgate::redis
