#include "tollgate/redis/resp.hpp"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <charconv>
#include <string>
#include <string_view>

namespace tollgate::redis {
namespace {

// hiredis calls the object functions below from inside
// redisReaderGetReply; they find their reader's limits through this
// pointer, set for the duration of that call.
struct ParseScope;
thread_local ParseScope *t_scope = nullptr;

struct ParseScope {
  const ReaderLimits &limits;
  std::string refused;  // why a create function returned NULL
};

int depth_of(const redisReadTask *task) {
  int d = 0;
  for (const redisReadTask *t = task->parent; t != nullptr; t = t->parent) ++d;
  return d;
}

// Attaches a new node to its parent array (hiredis passes the parent task).
void *attach(const redisReadTask *task, Reply *node) {
  if (task->parent != nullptr) {
    auto *parent = static_cast<Reply *>(task->parent->obj);
    parent->elements.emplace_back(node);
  }
  return node;
}

void *refuse(std::string why) {
  if (t_scope) t_scope->refused = std::move(why);
  return nullptr;
}

void *create_string(const redisReadTask *task, char *str, size_t len) {
  if (t_scope && len > t_scope->limits.max_bulk_len)
    return refuse("protocol: a string of " + std::to_string(len) +
                  " bytes exceeds the limit of " +
                  std::to_string(t_scope->limits.max_bulk_len));
  auto *r = new Reply;
  switch (task->type) {
    case REDIS_REPLY_ERROR:
      r->type = Reply::Type::error;
      break;
    case REDIS_REPLY_STATUS:
      r->type = Reply::Type::status;
      break;
    default:
      r->type = Reply::Type::string;
      break;
  }
  r->str.assign(str, len);
  return attach(task, r);
}

void *create_array(const redisReadTask *task, int elements) {
  if (t_scope) {
    if (elements < 0 ||
        static_cast<size_t>(elements) > t_scope->limits.max_elements)
      return refuse("protocol: an array of " + std::to_string(elements) +
                    " elements exceeds the limit of " +
                    std::to_string(t_scope->limits.max_elements));
    if (depth_of(task) >= t_scope->limits.max_depth)
      return refuse("protocol: replies nested deeper than " +
                    std::to_string(t_scope->limits.max_depth));
  }
  auto *r = new Reply;
  r->type = Reply::Type::array;
  // Reserve what is cheap; elements are appended as they are parsed.
  r->elements.reserve(static_cast<size_t>(std::min(elements, 1024)));
  return attach(task, r);
}

void *create_integer(const redisReadTask *task, long long value) {
  auto *r = new Reply;
  r->type = Reply::Type::integer;
  r->integer = value;
  return attach(task, r);
}

void *create_nil(const redisReadTask *task) {
  auto *r = new Reply;
  r->type = Reply::Type::nil;
  return attach(task, r);
}

// hiredis frees only the root (children belong to their parent).
void free_object(void *obj) {
  delete static_cast<Reply *>(obj);
}

redisReplyObjectFunctions g_functions = {
    create_string, create_array, create_integer, create_nil, free_object};

}  // namespace

struct Reader::Impl {
  ReaderLimits limits;
  redisReader *reader = nullptr;
  bool broken = false;
};

Reader::Reader(const ReaderLimits &limits) : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  impl_->reader = redisReaderCreateWithFunctions(&g_functions);
  if (impl_->reader == nullptr) throw std::bad_alloc();
}

Reader::~Reader() {
  if (impl_->reader) redisReaderFree(impl_->reader);
}

bool Reader::idle() const {
  const redisReader *r = impl_->reader;
  // hiredis leaves ridx at 0 (not -1) after a call that found no bytes; a
  // started aggregate reply has ridx >= 1, a started plain one consumes
  // nothing until it is whole.
  return !impl_->broken && r->pos == r->len && r->ridx <= 0;
}

bool Reader::feed(const char *data, size_t len) {
  if (impl_->broken) return false;
  redisReader *r = impl_->reader;
  const size_t buffered = r->len - r->pos;
  if (buffered + len > impl_->limits.max_buffer) {
    error_ = "protocol: more than " + std::to_string(impl_->limits.max_buffer) +
             " bytes of an incomplete reply";
    impl_->broken = true;
    return false;
  }
  if (redisReaderFeed(r, data, len) != REDIS_OK) {
    error_ = std::string("protocol: ") + r->errstr;
    impl_->broken = true;
    return false;
  }
  return true;
}

Reader::Status Reader::next(std::unique_ptr<Reply> &out) {
  if (impl_->broken) return Status::error;
  ParseScope scope{impl_->limits, {}};
  t_scope = &scope;
  void *reply = nullptr;
  const int rc = redisReaderGetReply(impl_->reader, &reply);
  t_scope = nullptr;
  if (rc != REDIS_OK) {
    error_ = !scope.refused.empty()
                 ? scope.refused
                 : std::string("protocol: ") + impl_->reader->errstr;
    impl_->broken = true;
    return Status::error;
  }
  if (reply == nullptr) {
    // hiredis waits for a whole bulk string, or a whole line, before it
    // calls a create function: refuse an absurd announcement now, not
    // after max_buffer bytes of it have arrived.
    std::string why = pending_header_problem();
    if (!why.empty()) {
      error_ = std::move(why);
      impl_->broken = true;
      return Status::error;
    }
    return Status::more;
  }
  out.reset(static_cast<Reply *>(reply));
  return Status::reply;
}

namespace {
// The type of the reply hiredis is reading (its type byte consumed), or
// -1 between replies.
int current_type(const redisReader *r) {
#if HIREDIS_MAJOR >= 1
  if (r->ridx < 0 || r->task == nullptr || r->ridx >= r->tasks) return -1;
  return r->task[r->ridx]->type;
#else
  if (r->ridx < 0) return -1;
  return r->rstack[r->ridx].type;
#endif
}
}  // namespace

std::string Reader::pending_header_problem() const {
  const redisReader *r = impl_->reader;
  const int type = current_type(r);
  if (type < 0 || r->pos >= r->len) return {};
  const std::string_view rest(r->buf + r->pos, r->len - r->pos);
  const size_t eol = rest.find("\r\n");
  if (eol == std::string_view::npos) {
    // A header, integer, status or error line still without its end.
    if (rest.size() > impl_->limits.max_line)
      return "protocol: a line of more than " +
             std::to_string(impl_->limits.max_line) + " bytes";
    return {};
  }
  if (type != REDIS_REPLY_STRING) return {};
  // A bulk string's header is whole and its bytes are still coming: its
  // announced length decides now.
  const std::string_view digits = rest.substr(0, eol);
  unsigned long long len = 0;
  const auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), len);
  if (!digits.empty() && digits[0] == '-') return {};  // nil, hiredis's
  if (ec == std::errc::result_out_of_range ||
      (ec == std::errc() && end == digits.data() + digits.size() &&
       len > impl_->limits.max_bulk_len))
    return "protocol: a string of " + std::string(digits) +
           " bytes exceeds the limit of " +
           std::to_string(impl_->limits.max_bulk_len);
  return {};  // a malformed length is hiredis's to report
}

namespace {
// Appends "<prefix><n>\r\n".
void append_header(std::string &out, char prefix, size_t n) {
  char buf[24];
  buf[0] = prefix;
  const auto r = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  r.ptr[0] = '\r';
  r.ptr[1] = '\n';
  out.append(buf, static_cast<size_t>(r.ptr + 2 - buf));
}
}  // namespace

void append_array_header(std::string &out, size_t n) {
  append_header(out, '*', n);
}

void append_bulk(std::string &out, std::string_view a) {
  append_header(out, '$', a.size());
  out.append(a.data(), a.size());
  out.append("\r\n", 2);
}

// The RESP array of bulk strings Redis expects (what hiredis's
// redisFormatCommandArgv makes, without its printf and allocations: this
// runs for every check).
void format_command(const std::vector<std::string_view> &argv,
                    std::string &out) {
  size_t total = 16;
  for (std::string_view a : argv) total += a.size() + 24;
  out.reserve(out.size() + total);
  append_array_header(out, argv.size());
  for (std::string_view a : argv) append_bulk(out, a);
}

}  // namespace tollgate::redis
