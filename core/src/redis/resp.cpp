// The bounded RESP reader and the command formatter, over hiredis 0.14.
//
// hiredis parses; the object functions below build the Reply tree and
// refuse anything over the limits by returning NULL. hiredis reports that
// as "Out of memory", so the reason is kept in ReaderState and reported
// instead. What hiredis 0.14 does not bound by itself, and where it is
// bounded here:
//   - A bulk string is handed over only once all of it is buffered, so a
//     header such as $999999999999 just makes hiredis wait for the bytes.
//     next() looks at the header hiredis is waiting on and refuses it at
//     once (pending_item_problem); feed() caps the buffer in any case.
//   - An array header is handed over as soon as its line is complete, and
//     hiredis allocates nothing for it: create_array refuses the count, the
//     nesting depth and the running total of one reply's elements, before
//     anything is allocated.
//   - The CRLF after a bulk string's bytes is skipped unchecked:
//     create_string checks it.
//   - Numbers: Debian's 0.14.1 parses lengths and integers strictly already
//     ("Bad bulk string length", "Multi-bulk length out of range").
// The object functions run inside hiredis (C), so no exception may leave
// them; they turn every failure into NULL plus a reason.
#include "tollgate/redis/resp.hpp"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#if !defined(HIREDIS_MAJOR) || HIREDIS_MAJOR != 0
// hiredis 1.x changed the reader: the task stack (pending_item_problem),
// createArray's count type and the RESP3 object functions (createDouble,
// createBool) must be handled before this file can use it.
#error "resp.cpp is written for hiredis 0.14's reader (Debian 12)"
#endif

namespace tollgate::redis {
namespace {

// What the object functions need; hiredis hands it to them through each
// task's privdata (copied from the reader's).
struct ReaderState {
  ReaderLimits limits;
  std::string refused;        // why an object function returned NULL
  size_t reply_elements = 0;  // elements announced so far in this reply

  void *refuse(const char *what) noexcept {
    try {
      refused = what;
    } catch (...) {
      // Leaves `refused` as it was; hiredis's own message is used.
    }
    return nullptr;
  }
  void *refuse(std::string what) noexcept {
    refused = std::move(what);  // a move does not allocate
    return nullptr;
  }
};

ReaderState &state_of(const redisReadTask *task) {
  return *static_cast<ReaderState *>(task->privdata);
}

int depth_of(const redisReadTask *task) {
  int d = 0;
  for (const redisReadTask *t = task->parent; t != nullptr; t = t->parent) ++d;
  return d;
}

// Hands `node` to its parent array, or returns it as the root. Children
// arrive in order, so task->idx is the parent's current size (hiredis's own
// createArrayObject stores them at parent->element[task->idx]).
void *attach(const redisReadTask *task, std::unique_ptr<Reply> node) {
  Reply *raw = node.get();
  if (task->parent != nullptr) {
    auto *parent = static_cast<Reply *>(task->parent->obj);
    if (parent == nullptr || task->idx < 0 ||
        parent->elements.size() != static_cast<size_t>(task->idx))
      return state_of(task).refuse(
          "protocol: internal error: reply element out of order");
    parent->elements.push_back(std::move(node));  // may throw: node is freed
  } else {
    node.release();  // the root: hiredis owns it until it hands it out
  }
  return raw;
}

void *create_string(const redisReadTask *task, char *str, size_t len) {
  ReaderState &st = state_of(task);
  try {
    Reply::Type type;
    switch (task->type) {
      case REDIS_REPLY_STRING:
        type = Reply::Type::string;
        break;
      case REDIS_REPLY_STATUS:
        type = Reply::Type::status;
        break;
      case REDIS_REPLY_ERROR:
        type = Reply::Type::error;
        break;
      default:
        return st.refuse("protocol: unsupported reply type " +
                         std::to_string(task->type));
    }
    if (len > st.limits.max_bulk_len)
      return st.refuse("protocol: a " +
                       std::string(task->type == REDIS_REPLY_STRING
                                       ? "bulk string"
                                       : "status or error line") +
                       " of " + std::to_string(len) +
                       " bytes exceeds the limit of " +
                       std::to_string(st.limits.max_bulk_len));
    // hiredis hands a bulk string over only when its CRLF is buffered too
    // (it skips those two bytes without looking at them).
    if (task->type == REDIS_REPLY_STRING &&
        (str[len] != '\r' || str[len + 1] != '\n'))
      return st.refuse("protocol: a bulk string of " + std::to_string(len) +
                       " bytes is not followed by CRLF");
    auto node = std::make_unique<Reply>();
    node->type = type;
    node->str.assign(str, len);
    return attach(task, std::move(node));
  } catch (...) {
    return st.refuse("protocol: out of memory while reading a reply");
  }
}

void *create_array(const redisReadTask *task, int elements) {
  ReaderState &st = state_of(task);
  try {
    const ReaderLimits &lim = st.limits;
    if (elements < 0 || static_cast<size_t>(elements) > lim.max_elements)
      return st.refuse("protocol: array of " + std::to_string(elements) +
                       " elements exceeds the limit of " +
                       std::to_string(lim.max_elements));
    const int depth = depth_of(task);
    if (depth >= lim.max_depth)
      return st.refuse("protocol: arrays nested more than " +
                       std::to_string(lim.max_depth) +
                       " deep exceed the limit");
    if (task->parent == nullptr) st.reply_elements = 0;
    st.reply_elements += static_cast<size_t>(elements);
    if (st.reply_elements > lim.max_total_elements)
      return st.refuse("protocol: a reply of more than " +
                       std::to_string(lim.max_total_elements) +
                       " array elements in all exceeds the limit");
    auto node = std::make_unique<Reply>();
    node->type = Reply::Type::array;
    // Elements are appended as they arrive; reserve only what is cheap.
    node->elements.reserve(std::min<size_t>(static_cast<size_t>(elements), 64));
    return attach(task, std::move(node));
  } catch (...) {
    return st.refuse("protocol: out of memory while reading a reply");
  }
}

void *create_integer(const redisReadTask *task, long long value) {
  try {
    auto node = std::make_unique<Reply>();
    node->type = Reply::Type::integer;
    node->integer = value;
    return attach(task, std::move(node));
  } catch (...) {
    return state_of(task).refuse(
        "protocol: out of memory while reading a reply");
  }
}

void *create_nil(const redisReadTask *task) {
  try {
    auto node = std::make_unique<Reply>();  // type nil
    return attach(task, std::move(node));
  } catch (...) {
    return state_of(task).refuse(
        "protocol: out of memory while reading a reply");
  }
}

// hiredis frees only roots (a finished reply it never handed out, or a
// partial one on error); a root owns its children.
void free_object(void *obj) {
  delete static_cast<Reply *>(obj);
}

redisReplyObjectFunctions g_functions = {
    create_string, create_array, create_integer, create_nil, free_object};

// After hiredis asked for more bytes, the item it waits on starts at
// buf + pos (its type byte consumed) and its task holds the type. A bulk
// string whose header is complete is refused here if it is too long,
// rather than after its bytes arrive; lines that can never end well are
// refused too. Returns "" if there is nothing to refuse yet.
std::string pending_item_problem(const redisReader *r,
                                 const ReaderLimits &lim) {
  if (r->ridx < 0 || r->buf == nullptr) return {};
  const redisReadTask &task = r->rstack[r->ridx];
  const char *p = r->buf + r->pos;
  const size_t n = r->len - r->pos;
  // "-9223372036854775808" is the longest valid number line: 20 bytes.
  constexpr size_t kMaxNumberLine = 20;
  switch (task.type) {
    case REDIS_REPLY_STRING: {
      const void *cr = std::memchr(p, '\r', std::min(n, kMaxNumberLine + 1));
      if (cr == nullptr) {
        if (n > kMaxNumberLine) return "protocol: bad bulk string length line";
        return {};
      }
      const size_t line =
          static_cast<size_t>(static_cast<const char *>(cr) - p);
      // hiredis has checked the line's syntax (or will, once the LF is
      // here); only the value matters.
      unsigned long long len = 0;
      for (size_t i = 0; i < line && len <= lim.max_bulk_len; ++i) {
        if (p[i] < '0' || p[i] > '9') return {};  // -1, or hiredis's to judge
        len = len * 10 + static_cast<unsigned>(p[i] - '0');
      }
      if (len > lim.max_bulk_len)
        return "protocol: a bulk string of " + std::to_string(len) +
               " bytes exceeds the limit of " +
               std::to_string(lim.max_bulk_len);
      return {};
    }
    case REDIS_REPLY_ARRAY:
    case REDIS_REPLY_INTEGER:
      if (n > kMaxNumberLine + 1)  // no CRLF yet after 21 bytes
        return task.type == REDIS_REPLY_ARRAY
                   ? "protocol: bad array length line"
                   : "protocol: bad integer line";
      return {};
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      if (n > lim.max_bulk_len + 1)
        return "protocol: a status or error line of more than " +
               std::to_string(lim.max_bulk_len) + " bytes exceeds the limit";
      return {};
    default:
      return {};
  }
}

}  // namespace

struct Reader::Impl {
  ReaderState state;
  redisReader *reader = nullptr;
  bool broken = false;
};

Reader::Reader(const ReaderLimits &limits) : impl_(std::make_unique<Impl>()) {
  impl_->state.limits = limits;
  impl_->reader = redisReaderCreateWithFunctions(&g_functions);
  if (impl_->reader == nullptr) throw std::bad_alloc();
  // hiredis copies the reader's privdata into every task it creates.
  impl_->reader->privdata = &impl_->state;
}

Reader::~Reader() {
  // Also frees a partial reply hiredis still holds.
  if (impl_->reader) redisReaderFree(impl_->reader);
}

bool Reader::feed(const char *data, size_t len) {
  if (impl_->broken) return false;
  redisReader *r = impl_->reader;
  const size_t buffered = r->len - r->pos;
  const size_t limit = impl_->state.limits.max_buffer;
  if (len > limit || buffered > limit - len) {
    error_ = "protocol: more than " + std::to_string(limit) +
             " bytes of unparsed input (max_buffer)";
    impl_->broken = true;
    return false;
  }
  if (len == 0) return true;
  if (redisReaderFeed(r, data, len) != REDIS_OK) {
    error_ = std::string("protocol: ") + r->errstr;
    impl_->broken = true;
    return false;
  }
  return true;
}

Reader::Status Reader::next(std::unique_ptr<Reply> &out) {
  if (impl_->broken) return Status::error;
  redisReader *r = impl_->reader;
  void *reply = nullptr;
  if (redisReaderGetReply(r, &reply) != REDIS_OK) {
    error_ = !impl_->state.refused.empty()
                 ? impl_->state.refused
                 : std::string("protocol: ") + r->errstr;
    impl_->broken = true;
    return Status::error;
  }
  if (reply != nullptr) {
    out.reset(static_cast<Reply *>(reply));
    return Status::reply;
  }
  std::string problem = pending_item_problem(r, impl_->state.limits);
  if (!problem.empty()) {
    error_ = std::move(problem);
    impl_->broken = true;  // the partial reply is freed with the reader
    return Status::error;
  }
  return Status::more;
}

void format_command(const std::vector<std::string_view> &argv,
                    std::string &out) {
  if (argv.size() > static_cast<size_t>(INT_MAX))
    throw std::length_error("format_command: too many arguments");
  std::vector<const char *> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (std::string_view a : argv) {
    ptrs.push_back(a.data() != nullptr ? a.data() : "");  // memcpy wants one
    lens.push_back(a.size());
  }
  char *cmd = nullptr;
  const int n = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()),
                                       ptrs.data(), lens.data());
  if (n < 0 || cmd == nullptr) throw std::bad_alloc();
  try {
    out.append(cmd, static_cast<size_t>(n));
  } catch (...) {
    redisFreeCommand(cmd);
    throw;
  }
  redisFreeCommand(cmd);
}

}  // namespace tollgate::redis
