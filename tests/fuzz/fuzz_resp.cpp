// The bounded RESP reader (tollgate::redis::Reader over hiredis's parser).
// The first two bytes choose how the rest is cut into chunks (as a socket
// would deliver it) and a set of small limits; the rest is the byte stream.
// Three passes over the same stream:
//   A. all at once, default limits;
//   B. in chunks, default limits;
//   C. in chunks, small limits.
// Checks, besides ASan and UBSan (and LeakSanitizer: a refused reply must
// not leak its partial tree):
//   - chunk boundaries and limits never change a reply: the replies of each
//     pass agree with those of the others as far as both got;
//   - every reply of pass C is within its limits (string length, array
//     length, nesting);
//   - after an error the reader stays unusable (next() and feed() refuse).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tollgate/redis/resp.hpp"

using tollgate::redis::Reader;
using tollgate::redis::ReaderLimits;
using tollgate::redis::Reply;

namespace {

void require(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_resp: %s\n", what);
  std::abort();
}

bool same(const Reply &a, const Reply &b) {
  if (a.type != b.type || a.integer != b.integer || a.str != b.str ||
      a.elements.size() != b.elements.size())
    return false;
  for (size_t i = 0; i < a.elements.size(); ++i)
    if (!same(*a.elements[i], *b.elements[i])) return false;
  return true;
}

void check_within(const Reply &r, const ReaderLimits &limits, int depth) {
  require(r.elements.empty() || r.type == Reply::Type::array,
          "elements on a non-array");
  require(r.str.size() <= limits.max_bulk_len, "a string beyond the limit");
  require(r.elements.size() <= limits.max_elements,
          "an array beyond the limit");
  if (r.type == Reply::Type::array)
    require(depth < limits.max_depth, "nesting beyond the limit");
  for (const auto &e : r.elements) {
    require(e != nullptr, "a null element");
    check_within(*e, limits, depth + 1);
  }
}

struct Pass {
  std::vector<std::unique_ptr<Reply>> replies;
  bool failed = false;
};

// Drains every complete reply; false once the reader reported an error.
bool drain(Reader &reader, Pass &pass) {
  for (;;) {
    std::unique_ptr<Reply> reply;
    switch (reader.next(reply)) {
      case Reader::Status::reply:
        require(reply != nullptr, "a null reply");
        pass.replies.push_back(std::move(reply));
        continue;
      case Reader::Status::more:
        return true;
      case Reader::Status::error:
        require(!reader.error().empty(), "an error without a message");
        require(reader.next(reply) == Reader::Status::error,
                "a reader usable after an error");
        require(!reader.feed("+OK\r\n", 5), "feed accepted after an error");
        require(!reader.idle(), "idle after an error");
        pass.failed = true;
        return false;
    }
  }
}

Pass run(const uint8_t *data, size_t size, const ReaderLimits &limits,
         uint8_t cut) {
  Reader reader(limits);
  Pass pass;
  size_t at = 0;
  unsigned step = 0;
  while (at < size) {
    // Chunk sizes from the cut byte: 0 is all at once, else a cycle of
    // sizes between 1 and 16 bytes.
    size_t n = size - at;
    if (cut != 0)
      n = std::min<size_t>(n, 1 + ((cut >> (step % 4)) + step) % 16);
    ++step;
    if (!reader.feed(reinterpret_cast<const char *>(data) + at, n)) {
      require(!reader.error().empty(), "a refused feed without a message");
      pass.failed = true;
      return pass;
    }
    at += n;
    if (!drain(reader, pass)) return pass;
  }
  return pass;
}

// The replies of two passes over one stream agree as far as both got.
void agree(const Pass &a, const Pass &b, const char *what) {
  const size_t n = std::min(a.replies.size(), b.replies.size());
  for (size_t i = 0; i < n; ++i)
    require(same(*a.replies[i], *b.replies[i]), what);
  // A pass that met no error read every reply there was.
  if (!a.failed) require(b.replies.size() <= a.replies.size(), what);
  if (!b.failed) require(a.replies.size() <= b.replies.size(), what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint8_t cut = data[0] | 1;  // never 0: pass B really is chunked
  const uint8_t shape = data[1];
  data += 2;
  size -= 2;

  const Pass whole = run(data, size, ReaderLimits{}, 0);
  const Pass chunked = run(data, size, ReaderLimits{}, cut);
  agree(whole, chunked, "chunk boundaries changed a reply");

  ReaderLimits small;
  small.max_bulk_len = shape & 0x0f;            // 0 .. 15 bytes
  small.max_elements = (shape >> 4) & 0x07;     // 0 .. 7 elements
  small.max_depth = 1 + ((shape >> 2) & 0x03);  // 1 .. 4
  small.max_buffer = 16 + (shape & 0x3f);       // 16 .. 79 bytes
  small.max_line = 4 + ((shape >> 3) & 0x1f);   // 4 .. 35 bytes
  const Pass bounded = run(data, size, small, cut);
  for (const auto &r : bounded.replies) check_within(*r, small, 0);
  // The limits refuse a reply; they never alter one.
  const size_t n = std::min(whole.replies.size(), bounded.replies.size());
  for (size_t i = 0; i < n; ++i)
    require(same(*whole.replies[i], *bounded.replies[i]),
            "the limits changed a reply");
  if (!bounded.failed)
    require(bounded.replies.size() == whole.replies.size() || whole.failed,
            "the limits lost a reply");
  return 0;
}
