// tollgate._native: the Python extension over the tollgate C ABI.
//
// It includes tollgate.h and nothing else of tollgate (the build puts only
// capi/include on its include path). The Python layer (tollgate/__init__.py)
// validates Limiter options and defines the exception classes; this module
// holds the types on the hot path (Policy, Decision, Limiter.check) so a
// check costs one C call and no Python-level code.
//
// Rules kept here:
//   - The GIL is released around every C call that may block (rl_check on
//     a network store, rl_reset, rl_block, rl_unblock, rl_ping,
//     rl_keys_next, rl_lease_acquire/renew/release, rl_destroy). A
//     memory-store rl_check never waits on I/O and keeps it
//     (Limiter::check).
//   - rl_last_error() is read right after the failing call, on the same
//     thread, before any other tollgate call.
//   - rl_destroy never runs while another call on the limiter is in progress
//     (ABI rule): calls are counted, close() waits for them, then frees open
//     key iterators, then destroys.
//   - A Redis limiter's log hook (rl_set_log_handler) takes the GIL on the
//     thread that logs (tollgate's I/O thread, or a checking thread) while
//     the library holds the hook's lock. So no thread may wait for that
//     lock, or for the I/O thread, while it holds the GIL: every call on a
//     Redis limiter releases the GIL (rl_check_async included: it may log
//     on the calling thread), and the hook is turned off with the GIL
//     released (close(), before a fork, at exit). See "Logs" below.
#include <pybind11/pybind11.h>

#include <tollgate.h>

#if defined(__GLIBCXX__)
#include <cxxabi.h>  // abi::__forced_unwind
#endif

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// ---- Errors ----------------------------------------------------------------

// Raises the tollgate.Error subclass for `code` (built by tollgate._errors so
// the class hierarchy lives in Python) with `message`.
[[noreturn]] void raise_code(int code, const std::string &message) {
  py::object make = py::module_::import("tollgate._errors").attr("_make");
  py::object exc =
      make(code, message.empty() ? std::string(rl_strerror(code)) : message);
  PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

[[noreturn]] void raise_type_error(const std::string &message) {
  PyErr_SetString(PyExc_TypeError, message.c_str());
  throw py::error_already_set();
}

// The last error text of this thread, or the code's static text.
std::string last_error_text(int code) {
  const char *m = rl_last_error();
  return (m && *m) ? std::string(m) : std::string(rl_strerror(code));
}

std::string type_name(py::handle h) {
  return Py_TYPE(h.ptr())->tp_name;
}

// ---- The GIL ---------------------------------------------------------------

// While the interpreter finalizes, CPython before 3.14 ends a (daemon)
// thread that asks for the GIL with pthread_exit. With glibc that is a forced
// unwind: through a noexcept destructor (~gil_scoped_release) it aborts the
// process, and through pybind11's frames it runs Py_DECREFs without the GIL
// (a crash). So a thread that is told to exit here parks instead, as CPython
// 3.14 itself does; the process is exiting anyway. The finalizing thread
// itself is never told to exit, so close() at exit still works.
[[noreturn]] void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

void retake_gil(PyThreadState *state) {
#if defined(__GLIBCXX__)
  try {
    PyEval_RestoreThread(state);
  } catch (abi::__forced_unwind &) {
    park_forever();  // never leaves the handler, so nothing is swallowed
  }
#else
  PyEval_RestoreThread(state);
#endif
}

PyGILState_STATE take_gil() {
#if defined(__GLIBCXX__)
  try {
    return PyGILState_Ensure();
  } catch (abi::__forced_unwind &) {
    park_forever();
  }
#else
  return PyGILState_Ensure();
#endif
}

// Runs `f` with the GIL released (not an RAII guard: see retake_gil). `f`
// does no Python work and must not throw.
template <class F>
void without_gil(F &&f) {
  static_assert(noexcept(f()), "without_gil needs a noexcept callable");
  PyThreadState *state = PyEval_SaveThread();
  f();
  retake_gil(state);
}

// ---- Integers --------------------------------------------------------------

// An int (or an object with __index__), never a bool or a float.
int64_t to_int64(py::handle h, const char *what) {
  if (PyBool_Check(h.ptr()))
    raise_type_error(std::string(what) + " must be an int, not bool");
  if (!PyLong_Check(h.ptr()) && !PyIndex_Check(h.ptr()))
    raise_type_error(std::string(what) + " must be an int, not " +
                     type_name(h));
  py::object as_int =
      py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!as_int) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(as_int.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow != 0)
    raise_code(RL_E_OVERFLOW,
               std::string(what) + ": value out of the 64-bit integer range");
  return static_cast<int64_t>(v);
}

// ---- Policy ----------------------------------------------------------------

const char *const kAlgorithmNames[] = {"gcra", "token_bucket", "fixed_window",
                                       "sliding_window"};
static_assert(RL_ALG_GCRA == 0 && RL_ALG_TOKEN_BUCKET == 1 &&
              RL_ALG_FIXED_WINDOW == 2 && RL_ALG_SLIDING_WINDOW == 3);

int32_t algorithm_code(py::handle h) {
  if (!PyUnicode_Check(h.ptr()))
    raise_type_error("algorithm must be a str, not " + type_name(h));
  const std::string name = h.cast<std::string>();
  for (int32_t i = 0; i < 4; ++i)
    if (name == kAlgorithmNames[i]) return i;
  raise_code(RL_E_POLICY, "algorithm: unknown '" + name +
                              "' (expected 'gcra', 'token_bucket', "
                              "'fixed_window' or 'sliding_window')");
}

// How a time span's conversion reports a bad value: a policy's period (or
// block, or strikes_period) refuses non-positive values and malformed text
// with RL_E_POLICY and too long a span with RL_E_OVERFLOW, as the library's
// policy validation does; Limiter.block's duration leaves the sign to
// rl_block and reports everything it refuses itself as RL_E_INVALID_ARG,
// the code rl_block gives a duration out of 1 .. 2^40 ms.
struct SpanRules {
  const char *what;  // the argument's name in messages
  bool policy;       // true: a policy field; false: a block's duration
  const char *least = "1 ms";  // the shortest span allowed, in messages
};

constexpr SpanRules kPeriodRules{"period", true};

// A period's text ("500ms", "1.5s", "15m", "1 hour") -> milliseconds, by
// the library's one period syntax (whose messages say "period: ").
int64_t parse_period_text(const std::string &text,
                          const SpanRules &rules = kPeriodRules) {
  int64_t ms = 0;
  const int rc = rl_period_parse(text.data(), text.size(), &ms);
  if (rc != RL_OK) {
    std::string message = last_error_text(rc);
    const std::string lib_prefix = "period: ";
    if (message.compare(0, lib_prefix.size(), lib_prefix) == 0)
      message =
          std::string(rules.what) + ": " + message.substr(lib_prefix.size());
    raise_code(rules.policy ? rc : RL_E_INVALID_ARG, message);
  }
  return ms;
}

// A period: seconds (int or float), a string with a unit, or a
// datetime.timedelta. Returns milliseconds (for a policy field, > 0 is
// checked by the caller; a duration's sign is left to rl_block).
int64_t period_ms_of(py::handle h, const SpanRules &rules = kPeriodRules) {
  const std::string what = rules.what;
  const int bad = rules.policy ? RL_E_POLICY : RL_E_INVALID_ARG;
  const int too_long = rules.policy ? RL_E_OVERFLOW : RL_E_INVALID_ARG;
  const std::string range =
      rules.policy ? what + ": too long"
                   : what + ": must be " + rules.least + " to 2^40 ms (got " +
                         py::repr(h).cast<std::string>() + " s)";
  PyObject *o = h.ptr();
  if (PyBool_Check(o))
    raise_type_error(what +
                     " must be seconds (int or float), a str or a "
                     "datetime.timedelta, not bool");
  if (PyUnicode_Check(o))
    return parse_period_text(h.cast<std::string>(), rules);
  if (PyFloat_Check(o)) {
    const double s = PyFloat_AsDouble(o);
    if (!rules.policy && !std::isfinite(s)) raise_code(bad, range);
    if (!std::isfinite(s) || (rules.policy && s <= 0))
      raise_code(bad, what + ": must be > 0 seconds (got " +
                          py::repr(h).cast<std::string>() + ")");
    const double ms = s * 1000.0;
    if (std::fabs(ms) > 9.0e15) raise_code(too_long, range);
    const double rounded = std::round(ms);
    if (std::fabs(ms - rounded) > 1e-6 * std::max(1.0, std::fabs(ms)))
      raise_code(bad, what + ": " + py::repr(h).cast<std::string>() +
                          " s is not a whole number of milliseconds");
    return static_cast<int64_t>(rounded);
  }
  if (PyLong_Check(o) || PyIndex_Check(o)) {
    const int64_t s = to_int64(h, rules.what);
    if (s > (int64_t{1} << 52) / 1000) raise_code(too_long, range);
    if (s < -(int64_t{1} << 52) / 1000) {
      if (rules.policy)
        raise_code(bad, what + ": must be > 0 seconds (got " +
                            std::to_string(s) + ")");
      raise_code(too_long, range);
    }
    return s * 1000;
  }
  py::object timedelta = py::module_::import("datetime").attr("timedelta");
  if (py::isinstance(h, timedelta)) {
    const int64_t days = h.attr("days").cast<int64_t>();
    const int64_t secs = h.attr("seconds").cast<int64_t>();
    const int64_t micros = h.attr("microseconds").cast<int64_t>();
    if (micros % 1000 != 0)
      raise_code(bad, what +
                          ": the timedelta is not a whole number of "
                          "milliseconds");
    if (days > (int64_t{1} << 40) / 86400000 || days < -(int64_t{1} << 40))
      raise_code(too_long, range);
    return days * 86400000 + secs * 1000 + micros / 1000;
  }
  raise_type_error(what +
                   " must be seconds (int or float), a str such as "
                   "\"1s\" or \"15m\", or a datetime.timedelta, not " +
                   type_name(h));
}

// A tollgate.Policy: one reference to an immutable library policy handle,
// and a copy of its fields for the attribute getters.
struct Policy {
  rl_policy *h = nullptr;
  rl_policy_spec p = RL_POLICY_SPEC_INIT;

  Policy() = default;
  // Takes over the reference `handle` (which must not be NULL).
  explicit Policy(rl_policy *handle) : h(handle) {
    const int rc = rl_policy_get(h, &p);
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
  }
  Policy(const Policy &o) : h(rl_policy_retain(o.h)), p(o.p) {}
  Policy(Policy &&o) noexcept : h(o.h), p(o.p) { o.h = nullptr; }
  Policy &operator=(const Policy &o) {
    if (this != &o) {
      rl_policy *old = h;
      h = rl_policy_retain(o.h);
      p = o.p;
      rl_policy_release(old);
    }
    return *this;
  }
  Policy &operator=(Policy &&o) noexcept {
    std::swap(h, o.h);
    std::swap(p, o.p);
    return *this;
  }
  ~Policy() { rl_policy_release(h); }
};

// A Policy made from fields by the library (which validates them).
Policy policy_from_spec(const rl_policy_spec &spec) {
  rl_policy *h = nullptr;
  const int rc = rl_policy_create(&h, &spec);
  if (rc != RL_OK) raise_code(rc, last_error_text(rc));
  return Policy(h);
}

PyTypeObject *g_policy_type = nullptr;  // set by the module init

// The C++ object inside a pybind11 instance of a final class, or nullptr if
// it was never initialized (T.__new__(T) without __init__).
template <class T>
T *pybind_value(PyObject *o) {
  auto *inst = reinterpret_cast<py::detail::instance *>(o);
  return static_cast<T *>(
      inst->get_value_and_holder(nullptr, false).value_ptr());
}

// The Policy inside `o`, or nullptr if `o` is not an initialized Policy.
const Policy *policy_of(PyObject *o) {
  if (Py_TYPE(o) != g_policy_type) return nullptr;  // the class is final
  return pybind_value<Policy>(o);
}

// The policy's name as a std::string ("" when unnamed).
std::string name_of(const rl_policy_spec &p) {
  return p.name_len ? std::string(p.name, p.name_len) : std::string();
}

// Whether the policy is in shadow mode (docs/algorithms.md, "Shadow mode").
bool is_shadow(const rl_policy_spec &p) {
  return (p.flags & RL_POLICY_SHADOW) != 0;
}

// A policy's block or strikes_period: a period (> 0) in milliseconds.
int64_t policy_span_ms(py::handle h, const char *what) {
  const int64_t ms = period_ms_of(h, SpanRules{what, true});
  if (ms < 1)
    raise_code(RL_E_POLICY, std::string(what) +
                                ": must be at least 1 ms (got " +
                                std::to_string(ms) + " ms; None means none)");
  return ms;
}

// The block fields of a spec (block=, strikes=, strikes_period=; None for
// each means none), checked here so the messages name the keywords.
void set_block_fields(rl_policy_spec &p, py::handle block, py::handle strikes,
                      py::handle strikes_period) {
  if (!block.is_none()) p.block_ms = policy_span_ms(block, "block");
  if (!strikes.is_none()) {
    p.strikes = to_int64(strikes, "strikes");
    if (p.strikes < 1)
      raise_code(RL_E_POLICY, "strikes: must be >= 1 (got " +
                                  std::to_string(p.strikes) +
                                  "; None means the first denial blocks)");
  }
  if (!strikes_period.is_none())
    p.strikes_period_ms = policy_span_ms(strikes_period, "strikes_period");
  if (p.strikes != 0 && p.block_ms == 0)
    raise_code(RL_E_POLICY,
               "strikes: need a block (block=...): they say after how many "
               "denials the block starts");
  if ((p.strikes == 0) != (p.strikes_period_ms == 0))
    raise_code(RL_E_POLICY,
               p.strikes == 0
                   ? "strikes_period: needs strikes (as in strikes=3, "
                     "strikes_period=\"1h\": the third denial within an "
                     "hour blocks)"
                   : "strikes: need strikes_period, the window they are "
                     "counted in (as in strikes=3, strikes_period=\"1h\")");
}

Policy make_policy(py::handle limit, py::handle period, py::handle algorithm,
                   py::handle burst, py::handle name, py::handle block,
                   py::handle strikes, py::handle strikes_period,
                   py::handle shadow) {
  struct {
    rl_policy_spec p = RL_POLICY_SPEC_INIT;
  } out;
  std::string name_text;
  if (!name.is_none()) {
    if (!PyUnicode_Check(name.ptr()))
      raise_type_error("name must be a str or None, not " + type_name(name));
    name_text = name.cast<std::string>();
    if (name_text.empty())
      raise_code(RL_E_POLICY,
                 "name: must not be empty (None means no name; a name is 1 "
                 "to " +
                     std::to_string(RL_MAX_NAME_LEN) +
                     " of A-Z a-z 0-9 _ . - starting with a letter)");
    out.p.name = name_text.data();
    out.p.name_len = name_text.size();
  }
  out.p.limit = to_int64(limit, "limit");
  if (out.p.limit < 1)
    raise_code(RL_E_POLICY,
               "limit: must be >= 1 (got " + std::to_string(out.p.limit) + ")");
  out.p.period_ms = period_ms_of(period);
  if (out.p.period_ms < 1)
    raise_code(RL_E_POLICY, "period: must be at least 1 ms (got " +
                                std::to_string(out.p.period_ms) + " ms)");
  out.p.algorithm = algorithm_code(algorithm);
  if (!burst.is_none()) {
    out.p.burst = to_int64(burst, "burst");
    if (out.p.algorithm == RL_ALG_FIXED_WINDOW ||
        out.p.algorithm == RL_ALG_SLIDING_WINDOW)
      raise_code(RL_E_POLICY,
                 std::string("burst: applies to 'gcra' and 'token_bucket' "
                             "only, not '") +
                     kAlgorithmNames[out.p.algorithm] + "' (leave it None)");
    if (out.p.burst < 1)
      raise_code(RL_E_POLICY, "burst: must be >= 1 (got " +
                                  std::to_string(out.p.burst) +
                                  "; None means the same as limit)");
  }
  set_block_fields(out.p, block, strikes, strikes_period);
  if (!PyBool_Check(shadow.ptr()))
    raise_type_error("shadow must be a bool, not " + type_name(shadow));
  if (shadow.ptr() == Py_True) out.p.flags = RL_POLICY_SHADOW;
  return policy_from_spec(out.p);
}

// Policy.parse(text): the library's one policy syntax ("100/h",
// "10/s burst=20", "5000/d sliding_window").
Policy parse_policy(const std::string &text) {
  rl_policy *h = nullptr;
  size_t offset = 0;
  const int rc = rl_policy_parse(&h, text.data(), text.size(), &offset);
  if (rc != RL_OK) raise_code(rc, last_error_text(rc));
  return Policy(h);
}

// "1h", "15m", "1500ms": the shortest exact spelling of a period.
std::string period_text(int64_t ms) {
  static const struct {
    int64_t ms;
    const char *unit;
  } kUnits[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  for (const auto &u : kUnits)
    if (ms % u.ms == 0) return std::to_string(ms / u.ms) + u.unit;
  return std::to_string(ms) + "ms";
}

std::string policy_repr(const Policy &self) {
  std::string r = "Policy(" + std::to_string(self.p.limit) + ", '" +
                  period_text(self.p.period_ms) + "'";
  if (self.p.algorithm != RL_ALG_GCRA)
    r += std::string(", algorithm='") + kAlgorithmNames[self.p.algorithm] + "'";
  if (self.p.burst != 0) r += ", burst=" + std::to_string(self.p.burst);
  if (self.p.name_len != 0) r += ", name='" + name_of(self.p) + "'";
  if (self.p.block_ms != 0)
    r += ", block='" + period_text(self.p.block_ms) + "'";
  if (self.p.strikes != 0)
    r += ", strikes=" + std::to_string(self.p.strikes) + ", strikes_period='" +
         period_text(self.p.strikes_period_ms) + "'";
  if (is_shadow(self.p)) r += ", shadow=True";
  return r + ")";
}

bool same_policy(const rl_policy_spec &a, const rl_policy_spec &b) {
  return a.algorithm == b.algorithm && a.limit == b.limit &&
         a.period_ms == b.period_ms && a.burst == b.burst &&
         name_of(a) == name_of(b) && a.block_ms == b.block_ms &&
         a.strikes == b.strikes && a.strikes_period_ms == b.strikes_period_ms &&
         is_shadow(a) == is_shadow(b);
}

// ---- Decision --------------------------------------------------------------
//
// A plain CPython type (not a pybind11 class): a check's answer is built on
// every call, and a pybind11 instance costs a registry insert and erase
// (about as much as the check itself). Immutable: no setters, no __dict__.

struct DecisionObject {
  PyObject_HEAD rl_decision d;
};

PyTypeObject *g_decision_type = nullptr;  // made by the module init

const char *source_name(int32_t source) {
  switch (source) {
    case RL_SOURCE_STORE:
      return "store";
    case RL_SOURCE_DENY_CACHE:
      return "deny_cache";
    case RL_SOURCE_FAIL_OPEN:
      return "fail_open";
    case RL_SOURCE_FAIL_CLOSED:
      return "fail_closed";
    case RL_SOURCE_LOCAL:
      return "local";
    case RL_SOURCE_ALLOW_LIST:
      return "allow_list";
    case RL_SOURCE_DENY_LIST:
      return "deny_list";
    default:
      return "unknown";
  }
}

// The source names as interned Python strings (made once; never freed).
PyObject *source_str(int32_t source) {
  static PyObject *cache[8] = {};
  const int idx = (source >= 0 && source <= 6) ? source : 7;
  if (cache[idx] == nullptr)
    cache[idx] = PyUnicode_InternFromString(source_name(source));
  return cache[idx];
}

double ms_to_seconds(int64_t ms) {
  return static_cast<double>(ms) / 1000.0;
}

double retry_seconds(int64_t ms) {
  return ms == RL_RETRY_NEVER ? std::numeric_limits<double>::infinity()
                              : ms_to_seconds(ms);
}

// A new Decision (a new reference), or nullptr with MemoryError set.
PyObject *new_decision(const rl_decision &d) {
  DecisionObject *o = PyObject_New(DecisionObject, g_decision_type);
  if (o != nullptr) o->d = d;
  return reinterpret_cast<PyObject *>(o);
}

// The decision inside `h`, or nullptr if `h` is not a Decision.
const rl_decision *decision_of(PyObject *h) {
  if (Py_TYPE(h) != g_decision_type) return nullptr;
  return &reinterpret_cast<DecisionObject *>(h)->d;
}

const rl_decision &dec(PyObject *self) {
  return reinterpret_cast<DecisionObject *>(self)->d;
}

std::string float_repr(double v) {
  PyObject *f = PyFloat_FromDouble(v);
  PyObject *r = f ? PyObject_Repr(f) : nullptr;
  Py_XDECREF(f);
  std::string out = "?";
  if (r != nullptr) {
    const char *u = PyUnicode_AsUTF8(r);
    if (u != nullptr) out = u;
    Py_DECREF(r);
  }
  PyErr_Clear();
  return out;
}

PyObject *decision_repr(PyObject *self) {
  const rl_decision &d = dec(self);
  const std::string retry = d.retry_after_ms == RL_RETRY_NEVER
                                ? std::string("inf")
                                : float_repr(retry_seconds(d.retry_after_ms));
  const std::string r =
      std::string("Decision(allowed=") + (d.allowed ? "True" : "False") +
      ", limit=" + std::to_string(d.limit) +
      ", remaining=" + std::to_string(d.remaining) +
      ", reset_after=" + float_repr(ms_to_seconds(d.reset_after_ms)) +
      ", retry_after=" + retry + ", source='" + source_name(d.source) +
      "', policy_index=" + std::to_string(d.policy_index) +
      ", shadow=" + (d.shadow ? "True" : "False") + ")";
  return PyUnicode_FromStringAndSize(r.data(),
                                     static_cast<Py_ssize_t>(r.size()));
}

bool same_decision(const rl_decision &a, const rl_decision &b) {
  return a.allowed == b.allowed && a.limit == b.limit &&
         a.remaining == b.remaining && a.reset_after_ms == b.reset_after_ms &&
         a.retry_after_ms == b.retry_after_ms && a.source == b.source &&
         a.policy_index == b.policy_index && a.shadow == b.shadow;
}

PyObject *decision_richcompare(PyObject *a, PyObject *b, int op) {
  const rl_decision *x = decision_of(a);
  const rl_decision *y = decision_of(b);
  if (x == nullptr || y == nullptr || (op != Py_EQ && op != Py_NE))
    Py_RETURN_NOTIMPLEMENTED;
  const bool same = same_decision(*x, *y);
  return PyBool_FromLong((op == Py_EQ) == same);
}

Py_hash_t decision_hash(PyObject *self) {
  const rl_decision &d = dec(self);
  PyObject *t = Py_BuildValue(
      "(iLLLLiii)", static_cast<int>(d.allowed),
      static_cast<long long>(d.limit), static_cast<long long>(d.remaining),
      static_cast<long long>(d.reset_after_ms),
      static_cast<long long>(d.retry_after_ms), static_cast<int>(d.source),
      static_cast<int>(d.policy_index), static_cast<int>(d.shadow != 0));
  if (t == nullptr) return -1;
  const Py_hash_t h = PyObject_Hash(t);
  Py_DECREF(t);
  return h;
}

int decision_bool(PyObject *self) {
  return dec(self).allowed != 0;
}

void decision_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(tp);  // a heap type: each instance holds a reference
}

PyObject *decision_reduce(PyObject *self, PyObject *) {
  PyErr_Format(PyExc_TypeError, "cannot pickle '%s' object",
               Py_TYPE(self)->tp_name);
  (void)self;
  return nullptr;
}

#define TOLLGATE_DECISION_GETTER(name, expr)              \
  PyObject *decision_get_##name(PyObject *self, void *) { \
    const rl_decision &d = dec(self);                     \
    return expr;                                          \
  }
TOLLGATE_DECISION_GETTER(allowed, PyBool_FromLong(d.allowed != 0))
TOLLGATE_DECISION_GETTER(limit, PyLong_FromLongLong(d.limit))
TOLLGATE_DECISION_GETTER(remaining, PyLong_FromLongLong(d.remaining))
TOLLGATE_DECISION_GETTER(reset_after,
                         PyFloat_FromDouble(ms_to_seconds(d.reset_after_ms)))
TOLLGATE_DECISION_GETTER(retry_after,
                         PyFloat_FromDouble(retry_seconds(d.retry_after_ms)))
TOLLGATE_DECISION_GETTER(reset_after_ms, PyLong_FromLongLong(d.reset_after_ms))
TOLLGATE_DECISION_GETTER(retry_after_ms, PyLong_FromLongLong(d.retry_after_ms))
TOLLGATE_DECISION_GETTER(source, (Py_INCREF(source_str(d.source)),
                                  source_str(d.source)))
TOLLGATE_DECISION_GETTER(policy_index, PyLong_FromLong(d.policy_index))
TOLLGATE_DECISION_GETTER(shadow, PyBool_FromLong(d.shadow != 0))
#undef TOLLGATE_DECISION_GETTER

PyGetSetDef g_decision_getset[] = {
    {"allowed", decision_get_allowed, nullptr,
     "True if the call passed (and was charged).", nullptr},
    {"limit", decision_get_limit, nullptr, "The deciding policy's limit.",
     nullptr},
    {"remaining", decision_get_remaining, nullptr,
     "Units still available after this call.", nullptr},
    {"reset_after", decision_get_reset_after, nullptr,
     "Seconds until the state is back to full (0.0 if full).", nullptr},
    {"retry_after", decision_get_retry_after, nullptr,
     "Seconds to wait before the same call can pass (0.0 if allowed, "
     "unless shadow: then the would-be denial's; math.inf if it never "
     "can).",
     nullptr},
    {"reset_after_ms", decision_get_reset_after_ms, nullptr,
     "reset_after in integer milliseconds.", nullptr},
    {"retry_after_ms", decision_get_retry_after_ms, nullptr,
     "retry_after in integer milliseconds (-1: never).", nullptr},
    {"source", decision_get_source, nullptr,
     "Which path decided: store, deny_cache, fail_open, fail_closed, local.",
     nullptr},
    {"policy_index", decision_get_policy_index, nullptr,
     "Index (in the check's policies) of the reported policy; check_keys "
     "counts the policies pair by pair.",
     nullptr},
    {"shadow", decision_get_shadow, nullptr,
     "True if the call is allowed only because what denied it is in shadow "
     "mode (a Policy with shadow=True, or a Limiter with shadow=True); "
     "limit, remaining, reset_after, retry_after and policy_index then "
     "describe the denial that was not enforced.",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMethodDef g_decision_methods[] = {
    {"__reduce__", decision_reduce, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr}};

const char *const kDecisionDoc = R"doc(The answer to a check. Immutable.

  allowed         True if the call passed (and was charged)
  limit           the deciding policy's limit
  remaining       units still available after this call
  reset_after     seconds until the state is back to full (0.0 if full)
  retry_after     seconds to wait before the same call can pass (0.0 if
                  allowed, unless shadow; math.inf if it never can: cost
                  above capacity, a deny-list denial)
  source          which path decided: "store", "deny_cache", "fail_open",
                  "fail_closed", "local", or "allow_list" / "deny_list"
                  (the limiter's lists, decided before any store call)
  policy_index    index (in the check's policies) of the reported policy;
                  for check_keys, counted pair by pair (the policies of
                  every pair back to back, pair 0's first)
  shadow          True if allowed only because what denied the call is in
                  shadow mode (a shadow policy, or a limiter with
                  shadow=True); limit, remaining, reset_after, retry_after
                  and policy_index then describe that would-be denial
  reset_after_ms, retry_after_ms
                  the same durations as the library's integer milliseconds
                  (retry_after_ms is -1 for never)

bool(decision) is decision.allowed.
)doc";

PyTypeObject *make_decision_type() {
  static PyType_Slot slots[] = {
      {Py_tp_doc, const_cast<char *>(kDecisionDoc)},
      {Py_tp_dealloc, reinterpret_cast<void *>(&decision_dealloc)},
      {Py_tp_repr, reinterpret_cast<void *>(&decision_repr)},
      {Py_tp_hash, reinterpret_cast<void *>(&decision_hash)},
      {Py_tp_richcompare, reinterpret_cast<void *>(&decision_richcompare)},
      {Py_nb_bool, reinterpret_cast<void *>(&decision_bool)},
      {Py_tp_getset, g_decision_getset},
      {Py_tp_methods, g_decision_methods},
      {0, nullptr}};
  unsigned flags = Py_TPFLAGS_DEFAULT;
#ifdef Py_TPFLAGS_IMMUTABLETYPE
  flags |= Py_TPFLAGS_IMMUTABLETYPE;  // 3.10+: no class attribute changes
#endif
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
  flags |= Py_TPFLAGS_DISALLOW_INSTANTIATION;  // only checks make Decisions
#endif
  static PyType_Spec spec = {"tollgate.Decision",
                             static_cast<int>(sizeof(DecisionObject)), 0, flags,
                             slots};
  return reinterpret_cast<PyTypeObject *>(PyType_FromSpec(&spec));
}

// ---- Keys ------------------------------------------------------------------

// A borrowed view of a str (UTF-8) or bytes key. The caller keeps the object
// alive; both types are immutable, so the bytes stay put without the GIL.
struct KeyView {
  const char *data = nullptr;
  size_t size = 0;
};

KeyView key_view(py::handle key) {
  KeyView v;
  Py_ssize_t n = 0;
  if (PyUnicode_Check(key.ptr())) {
    v.data = PyUnicode_AsUTF8AndSize(key.ptr(), &n);
    if (v.data == nullptr) throw py::error_already_set();
  } else if (PyBytes_Check(key.ptr())) {
    char *p = nullptr;
    if (PyBytes_AsStringAndSize(key.ptr(), &p, &n) != 0)
      throw py::error_already_set();
    v.data = p;
  } else {
    raise_type_error("key must be str or bytes, not " + type_name(key));
  }
  v.size = static_cast<size_t>(n);
  return v;
}

// ---- The clock trampoline --------------------------------------------------

// A Python exception raised by a clock callable, kept until the C call that
// invoked the clock returns on this thread (the memory store calls the clock
// on the checking thread).
thread_local py::error_already_set *t_clock_error = nullptr;
thread_local int t_in_clock = 0;

// Calls the clock. While the interpreter finalizes, the Python code may
// itself drop and retake the GIL (the eval loop's switch interval) and be
// told to exit there: that forced unwind must not cross the C library's
// frames (and the noexcept lambda around rl_check), so the thread parks.
PyObject *call_clock(PyObject *clock) {
#if defined(__GLIBCXX__)
  try {
    return PyObject_CallObject(clock, nullptr);
  } catch (abi::__forced_unwind &) {
    park_forever();
  }
#else
  return PyObject_CallObject(clock, nullptr);
#endif
}

int64_t clock_trampoline(void *user_data) {
  // Called from C with the GIL released: take it for the Python call.
  const PyGILState_STATE gil = take_gil();
  ++t_in_clock;
  int64_t value = -1;  // outside [0, 2^52): the C call fails (RL_E_OVERFLOW)
  PyObject *r = call_clock(static_cast<PyObject *>(user_data));
  if (r == nullptr) {
    if (t_clock_error == nullptr)
      t_clock_error = new py::error_already_set();  // fetches and clears
    else
      PyErr_Clear();
  } else if (PyBool_Check(r) || !PyLong_Check(r)) {
    if (t_clock_error == nullptr) {
      PyErr_Format(PyExc_TypeError,
                   "clock must return int microseconds, not %s",
                   Py_TYPE(r)->tp_name);
      t_clock_error = new py::error_already_set();
    }
  } else {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(r, &overflow);
    if (v == -1 && PyErr_Occurred())
      PyErr_Clear();
    else if (overflow == 0)
      value = v;
  }
  Py_XDECREF(r);
  --t_in_clock;
  PyGILState_Release(gil);
  return value;
}

// After a C call returns (GIL held): re-raise the clock's exception, if any.
void rethrow_clock_error() {
  if (t_clock_error == nullptr) return;
  std::unique_ptr<py::error_already_set> e(t_clock_error);
  t_clock_error = nullptr;
  e->restore();
  throw py::error_already_set();
}

// ---- Limiter ---------------------------------------------------------------

struct KeysState;

struct Core;

// Every live Core. Only touched with the GIL held (Cores are made and freed
// by Python objects), so the set is consistent whenever os.fork() runs.
std::unordered_set<Core *> &live_cores() {
  static auto *cores = new std::unordered_set<Core *>();  // never freed
  return *cores;
}

// ---- Logs ------------------------------------------------------------------
//
// A Redis limiter's log hook sends each message to a callable made by
// tollgate._log.emitter (the `tollgate` logger, or the `logger` option's),
// with the GIL taken on the thread that saw the event: tollgate's I/O thread
// or a checking thread. The library holds the hook's lock while the handler
// runs, so the rules that keep this from deadlocking are:
//   - no thread holds the GIL while it waits for that lock or for the I/O
//     thread: every call on a Redis limiter releases the GIL first, and the
//     hook is only turned off (rl_set_log_handler, which waits for a message
//     being delivered) with the GIL released;
//   - a handler never calls into its own limiter (CallGuard and close()
//     refuse, with RuntimeError: the library's lock is not re-entrant, and
//     the I/O thread cannot answer its own call);
//   - nothing is delivered once close() has begun, and nothing into a
//     finalizing interpreter: an atexit hook turns every hook off while the
//     interpreter still runs (a thread asking for the GIL after that would be
//     ended, or parked, holding the library's lock), and the handler checks
//     the interpreter's state before it asks;
//   - a fork happens with every hook off (os.register_at_fork), so that no
//     handler waiting for the forking thread's GIL holds the library's lock
//     in the child; both processes turn them on again after it.

// One limiter's hook: what the C handler is given as user_data. Freed (with
// the GIL) only after rl_set_log_handler turned the handler off.
struct LogBridge {
  PyObject *emit;              // emit(level, message); a strong reference
  std::atomic<bool> on{true};  // false from close() (or exit) on
  bool installed = false;      // handed to the library (with the GIL)

  explicit LogBridge(py::object e) : emit(e.release().ptr()) {}
  ~LogBridge() { Py_XDECREF(emit); }
  LogBridge(const LogBridge &) = delete;
  LogBridge &operator=(const LogBridge &) = delete;
};

// Set by the atexit hook: no limiter logs from then on.
std::atomic<bool> g_logs_off{false};
// The interpreter's main thread (threading.main_thread().ident).
unsigned long g_main_thread = 0;
// The hook whose message this thread is delivering (nullptr: none).
thread_local const LogBridge *t_log_bridge = nullptr;

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// Calls emit(level, text); a forced unwind (see call_clock) parks.
PyObject *call_emit(PyObject *emit, PyObject *level, PyObject *text) {
#if defined(__GLIBCXX__)
  try {
    return PyObject_CallFunctionObjArgs(emit, level, text, nullptr);
  } catch (abi::__forced_unwind &) {
    park_forever();
  }
#else
  return PyObject_CallFunctionObjArgs(emit, level, text, nullptr);
#endif
}

// The rl_log_fn of every Redis limiter.
void log_trampoline(int level, const char *message, void *user_data) {
  auto *b = static_cast<LogBridge *>(user_data);
  if (!b->on.load() || g_logs_off.load() || interpreter_finalizing()) return;
  const PyGILState_STATE gil = take_gil();
  // close() (or the exit) may have begun while this thread waited.
  if (b->on.load() && !g_logs_off.load()) {
    PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
    PyErr_Fetch(&type, &value, &tb);  // this thread's own, if any
    const LogBridge *outer = t_log_bridge;
    t_log_bridge = b;
    PyObject *lv = PyLong_FromLong(level);
    PyObject *text = PyUnicode_DecodeUTF8(
        message, static_cast<Py_ssize_t>(std::strlen(message)), "replace");
    PyObject *r = lv != nullptr && text != nullptr
                      ? call_emit(b->emit, lv, text)
                      : nullptr;
    if (r == nullptr && PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) &&
        PyThread_get_thread_ident() == g_main_thread) {
      // Ctrl-C met the handler on the main thread: not lost, raised again
      // once the call that logged returns to Python.
      PyErr_Clear();
      PyErr_SetInterrupt();
    } else if (r == nullptr) {
      PyErr_WriteUnraisable(b->emit);
    }
    Py_XDECREF(r);
    Py_XDECREF(text);
    Py_XDECREF(lv);
    t_log_bridge = outer;
    PyErr_Restore(type, value, tb);
  }
  PyGILState_Release(gil);
}

// What a Limiter and its key iterators share. Guarded by the active-call
// count (calls) and `mu` (iterators, destruction). `log` is read and
// written with the GIL.
struct Core : std::enable_shared_from_this<Core> {
  rl_limiter *lim = nullptr;
  std::atomic<int64_t> active{0};
  std::atomic<bool> closed{false};
  std::mutex mu;
  std::unordered_set<KeysState *> iterators;
  std::unique_ptr<LogBridge> log;  // a Redis limiter's log hook

  // check_async's loop driver (rl_loop_open): the asyncio loop whose thread
  // reads the Redis replies. With the GIL.
  struct Driver {
    int fd = -1;                // rl_loop_open's descriptor, read by `loop`
    PyObject *loop = nullptr;   // strong reference
    std::thread::id thread;     // the loop's thread
    bool driving = false;       // false once the I/O thread took over
    bool tried = false;         // rl_loop_open was tried
    bool turn_soon = false;     // a call_soon(turn) is pending
    PyObject *timer = nullptr;  // the TimerHandle of the next turn
    double timer_when = 0;      // its time (loop.time())
  } drv;

  Core() { live_cores().insert(this); }
  ~Core() { live_cores().erase(this); }
  Core(const Core &) = delete;
  Core &operator=(const Core &) = delete;
};

// Turns the log hook of every live limiter off, waiting (without the GIL)
// for messages being delivered; `for_good` (at exit): for the rest of the
// process, else until logs_on(). Skips a hook whose message this thread is
// delivering (turning it off here would wait for this very thread).
void logs_off(bool for_good) {
  if (for_good) g_logs_off.store(true);
  std::vector<std::shared_ptr<Core>> cores;
  for (Core *c : live_cores()) {
    LogBridge *b = c->log.get();
    if (b == nullptr || b == t_log_bridge) continue;
    if (for_good) b->on.store(false);
    if (!b->installed) continue;
    // Counted as a call: close() (which sets `closed` with the GIL) waits
    // for it before rl_destroy.
    c->active.fetch_add(1);
    if (c->closed.load()) {
      c->active.fetch_sub(1);
      continue;
    }
    b->installed = false;
    cores.push_back(c->shared_from_this());
  }
  if (cores.empty()) return;
  without_gil([&cores]() noexcept {
    for (const std::shared_ptr<Core> &c : cores) {
      rl_set_log_handler(c->lim, RL_LOG_DEBUG, nullptr, nullptr);
      c->active.fetch_sub(1);
    }
  });
  // `cores` goes with the GIL held (a Core's last reference frees its hook).
}

// Hands a limiter's hook to the library. With the GIL held: safe while the
// hook is off (no handler runs, so none waits for the GIL holding the
// library's lock) and the limiter is not closing.
void log_install(Core &c) {
  LogBridge *b = c.log.get();
  if (b == nullptr || b->installed || !b->on.load() || g_logs_off.load() ||
      c.closed.load() || c.lim == nullptr)
    return;
  if (rl_set_log_handler(c.lim, RL_LOG_DEBUG, &log_trampoline, b) == RL_OK)
    b->installed = true;
}

// After a fork, in the parent and in the child: the hooks logs_off() took.
void logs_on() {
  for (Core *c : live_cores()) log_install(*c);
}

void logs_off_for_fork() {
  logs_off(false);
}

void logs_off_at_exit() {
  logs_off(true);
}

// One iterator's C handle; `it` is freed by the iterator or by close().
struct KeysState {
  std::mutex mu;  // the C iterator is not thread-safe
  rl_keys *it = nullptr;
};

// os.register_at_fork(after_in_child=...): the child has only the forking
// thread, so calls the parent's other threads had in progress never finish
// here, and locks they held stay locked. Forget both, so close() (and exit)
// in the child do not wait for them. The C library makes its own per-fork
// arrangements (a new Redis connection on first use).
void after_fork_in_child() {
  for (Core *core : live_cores()) {
    core->active.store(0);
    new (&core->mu) std::mutex();
    for (KeysState *st : core->iterators) new (&st->mu) std::mutex();
  }
}

[[noreturn]] void raise_closed() {
  raise_code(RL_E_CLOSED, "the limiter is closed");
}

// A call from a thread other than the loop driver's, whose loop has
// stopped (asyncio.run() returned): nothing would read its replies, so the
// I/O thread takes over (the old loop stops watching if it ever runs
// again). With the GIL.
void release_stale_driver(Core &core) {
  Core::Driver &d = core.drv;
  if (!d.driving || d.thread == std::this_thread::get_id()) return;
  PyObject *running = PyObject_CallMethod(d.loop, "is_running", nullptr);
  const int yes = running ? PyObject_IsTrue(running) : -1;
  Py_XDECREF(running);
  if (yes < 0) PyErr_Clear();
  if (yes == 1) return;
  d.driving = false;
  rl_limiter *lim = core.lim;
  without_gil([lim]() noexcept { rl_loop_close(lim); });
}

// Counts a call in progress; refuses a closed limiter. Constructed with the
// GIL held.
class CallGuard {
 public:
  explicit CallGuard(Core &core) : core_(core) {
    if (t_log_bridge != nullptr && t_log_bridge == core_.log.get())
      throw std::runtime_error(
          "a limiter cannot be called from its own log handler (a handler "
          "or filter of its logger): hand the record to another thread "
          "(logging.handlers.QueueHandler)");
    core_.active.fetch_add(1);
    if (core_.closed.load()) {
      core_.active.fetch_sub(1);
      raise_closed();
    }
    if (core_.drv.driving) release_stale_driver(core_);
  }
  ~CallGuard() { core_.active.fetch_sub(1); }
  CallGuard(const CallGuard &) = delete;
  CallGuard &operator=(const CallGuard &) = delete;

 private:
  Core &core_;
};

// An option value from the dict the Python layer built (already checked).
uint64_t opt_uint(const py::dict &opts, const char *name, uint64_t max) {
  if (!opts.contains(name)) return 0;
  const int64_t v = to_int64(opts[name], name);
  if (v < 0 || static_cast<uint64_t>(v) > max)
    raise_code(RL_E_INVALID_ARG, std::string(name) + ": out of range");
  return static_cast<uint64_t>(v);
}

// ---- asyncio
// -----------------------------------------------------------------

// rl_check_async completes on tollgate's I/O thread (inline for the memory
// store). The completion never takes the GIL: it queues the result and bumps
// an eventfd; the asyncio loop watches that fd (loop.add_reader) and, on its
// own thread with the GIL, drains the queue and resolves the futures. No
// thread per call, and the event loop never blocks.
// A completed check waiting for the event loop. `fut` and `loop` are
// strong references taken (with the GIL) when the check started; the
// completion only moves the pointers, and the drain (with the GIL) releases
// them.
struct AsyncResult {
  PyObject *fut;
  PyObject *loop;
  int status;
  rl_decision d;
  std::string error;
};

struct AsyncBridge {
  int fd = -1;
  std::mutex mu;
  std::vector<AsyncResult> done;
  AsyncBridge() {
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw std::runtime_error("eventfd failed");
  }
  ~AsyncBridge() { close(fd); }
  AsyncBridge(const AsyncBridge &) = delete;
  AsyncBridge &operator=(const AsyncBridge &) = delete;
};

struct AsyncCall {
  std::shared_ptr<AsyncBridge> bridge;
  PyObject *fut;
  PyObject *loop;
};

// The bridge whose loop turn (rl_loop_turn) runs on this thread: its
// completions need no wake-up, the turn drains them next.
thread_local const AsyncBridge *t_turning = nullptr;

void async_complete(int status, const rl_decision *d, const char *message,
                    void *user) {
  std::unique_ptr<AsyncCall> call(static_cast<AsyncCall *>(user));
  AsyncResult r;
  r.fut = call->fut;
  r.loop = call->loop;
  r.status = status;
  const rl_decision fresh = RL_DECISION_INIT;
  r.d = d ? *d : fresh;
  if (status != RL_OK) r.error = message;
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(call->bridge->mu);
    was_empty = call->bridge->done.empty();
    call->bridge->done.push_back(std::move(r));
  }
  // One wake-up per batch: the drain reads the eventfd before it takes the
  // queue, so a result queued behind a non-empty queue is always seen.
  if (!was_empty || t_turning == call->bridge.get()) return;
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = write(call->bridge->fd, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
}

// The parsed arguments of check(key, *policies, cost=1) (and check_async).
// The key's bytes are borrowed from args[0].
struct CheckArgs {
  KeyView key;
  rl_policy *policies[RL_MAX_POLICIES];
  size_t n = 0;
  int64_t cost = 1;
};

// `max_wait`, when not null, takes the keyword max_wait= (check_wait; left
// null when it was not given); otherwise only cost= is known.
void parse_check_args(const char *fn, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, CheckArgs &out,
                      PyObject **max_wait = nullptr) {
  const std::string name(fn);
  if (nargs < 1) raise_type_error(name + "() missing the key (str or bytes)");
  out.key = key_view(args[0]);
  const size_t n = static_cast<size_t>(nargs - 1);
  if (n == 0)
    raise_type_error(name +
                     "() needs at least one tollgate.Policy after the key");
  if (n > RL_MAX_POLICIES)
    raise_code(RL_E_INVALID_ARG, "policies: expected 1 to " +
                                     std::to_string(RL_MAX_POLICIES) +
                                     " policies, got " + std::to_string(n));
  for (size_t i = 0; i < n; ++i) {
    const Policy *p = policy_of(args[i + 1]);
    if (p == nullptr && Py_TYPE(args[i + 1]) == g_policy_type)
      raise_type_error(name + "(): the Policy (argument " +
                       std::to_string(i + 2) + ") was never initialized");
    if (p == nullptr)
      raise_type_error(name + "() policies must be tollgate.Policy, not " +
                       type_name(args[i + 1]) + " (argument " +
                       std::to_string(i + 2) + ")");
    out.policies[i] = p->h;
  }
  out.n = n;
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    PyObject *kw = PyTuple_GET_ITEM(kwnames, i);
    if (max_wait != nullptr &&
        PyUnicode_CompareWithASCIIString(kw, "max_wait") == 0) {
      *max_wait = args[nargs + i];
      continue;
    }
    if (PyUnicode_CompareWithASCIIString(kw, "cost") != 0)
      raise_type_error(name + "() got an unexpected keyword argument '" +
                       py::str(kw).cast<std::string>() + "'");
    PyObject *v = args[nargs + i];
    if (PyLong_CheckExact(v)) {
      int overflow = 0;
      out.cost = PyLong_AsLongLongAndOverflow(v, &overflow);
      if (overflow != 0)
        raise_code(RL_E_OVERFLOW,
                   "cost: value out of the 64-bit integer range");
    } else {
      out.cost = to_int64(v, "cost");
    }
  }
}

// The parsed arguments of check_keys(pairs, cost=1) (and
// check_keys_async): the C arrays of rl_check_keys. `keep` holds tuple
// copies of `pairs`, of each pair and of each pair's policy list, so the
// keys' bytes and the policies stay alive (and unchanged) while the call
// runs without the GIL, whatever the caller does to its lists meanwhile.
struct KeysArgs {
  std::vector<py::object> keep;
  const char *keys[RL_MAX_KEYS] = {};
  size_t key_lens[RL_MAX_KEYS] = {};
  size_t n_policies[RL_MAX_KEYS] = {};
  std::vector<rl_policy *> policies;
  size_t n_keys = 0;
  int64_t cost = 1;
};

// A tuple copy of `seq` (a new reference), or an error set.
py::tuple tuple_of(py::handle seq) {
  py::tuple t = py::reinterpret_steal<py::tuple>(PySequence_Tuple(seq.ptr()));
  if (!t) throw py::error_already_set();
  return t;
}

void parse_keys_args(const char *fn, py::handle pairs, py::handle cost,
                     KeysArgs &out) {
  const std::string name(fn);
  PyObject *o = pairs.ptr();
  if (PyUnicode_Check(o) || PyBytes_Check(o) || PyByteArray_Check(o) ||
      !PySequence_Check(o))
    raise_type_error(name +
                     "() pairs must be a list of (key, policies) pairs, "
                     "not " +
                     type_name(pairs));
  py::tuple all = tuple_of(pairs);
  const size_t n = all.size();
  if (n < 1 || n > RL_MAX_KEYS)
    raise_code(RL_E_INVALID_ARG,
               "pairs: expected 1 to " + std::to_string(RL_MAX_KEYS) +
                   " (key, policies) pairs, got " + std::to_string(n));
  out.keep.reserve(2 * n + 1);
  out.keep.push_back(all);
  out.policies.reserve(RL_MAX_POLICIES);
  for (size_t j = 0; j < n; ++j) {
    const std::string at = "pairs[" + std::to_string(j) + "]";
    py::handle pair = all[j];
    if (!PyTuple_Check(pair.ptr()) && !PyList_Check(pair.ptr()))
      raise_type_error(
          name + "() " + at + " must be a (key, policies) pair, not " +
          type_name(pair) +
          (j == 0 && (PyUnicode_Check(pair.ptr()) || PyBytes_Check(pair.ptr()))
               ? " (pass a list of pairs: [(key, policies), "
                 "...])"
               : ""));
    py::tuple kp = tuple_of(pair);
    out.keep.push_back(kp);
    if (kp.size() != 2)
      raise_type_error(name + "() " + at +
                       " must be a (key, policies) pair of 2 items, not " +
                       std::to_string(kp.size()));
    py::handle key = kp[0];
    if (!PyUnicode_Check(key.ptr()) && !PyBytes_Check(key.ptr()))
      raise_type_error(name + "() " + at +
                       ": the key must be str or bytes, not " + type_name(key));
    const KeyView k = key_view(key);
    out.keys[j] = k.data;
    out.key_lens[j] = k.size;
    for (size_t i = 0; i < j; ++i)
      if (k.size != 0 && out.key_lens[i] == k.size &&
          std::memcmp(out.keys[i], k.data, k.size) == 0)
        raise_code(RL_E_INVALID_ARG,
                   at + ": the key of pairs[" + std::to_string(i) +
                       "] again (a key appears once: give it all its "
                       "policies in one pair)");
    py::handle ps = kp[1];
    const size_t first = out.policies.size();
    if (const Policy *p = policy_of(ps.ptr())) {
      out.policies.push_back(p->h);
    } else if (Py_TYPE(ps.ptr()) == g_policy_type) {
      raise_type_error(name + "() " + at +
                       ": the Policy was never initialized");
    } else if (PyList_Check(ps.ptr()) || PyTuple_Check(ps.ptr())) {
      py::tuple pt = tuple_of(ps);
      out.keep.push_back(pt);
      for (size_t i = 0; i < pt.size(); ++i) {
        const Policy *p = policy_of(pt[i].ptr());
        if (p == nullptr)
          raise_type_error(
              name + "() " + at + ": policies must be tollgate.Policy, not " +
              type_name(pt[i]) + " (index " + std::to_string(i) + ")");
        out.policies.push_back(p->h);
      }
    } else {
      raise_type_error(name + "() " + at +
                       ": policies must be a tollgate.Policy or a list of "
                       "them, not " +
                       type_name(ps));
    }
    out.n_policies[j] = out.policies.size() - first;
    if (out.n_policies[j] == 0)
      raise_code(RL_E_INVALID_ARG,
                 at + ": no policies (give a tollgate.Policy or a list of "
                      "1 or more)");
  }
  out.n_keys = n;
  if (out.policies.size() > RL_MAX_POLICIES)
    raise_code(RL_E_INVALID_ARG, "pairs: at most " +
                                     std::to_string(RL_MAX_POLICIES) +
                                     " policies in all the pairs, got " +
                                     std::to_string(out.policies.size()));
  out.cost = to_int64(cost, "cost");
}

// The library's message for a failed rl_check_keys, in this API's words:
// its "keys[j]: ..." names the pair ("pairs[j]: ...").
std::string keys_error_text(int code) {
  std::string m = last_error_text(code);
  if (m.compare(0, 5, "keys[") == 0) m.replace(0, 4, "pairs");
  return m;
}

// asyncio's C-accelerated helpers, looked up once.
struct AsyncioRefs {
  PyObject *get_running_loop = nullptr;  // asyncio.events._get_running_loop
  PyObject *make_error = nullptr;        // tollgate._errors._make
  PyObject *deliver = nullptr;           // tollgate._deliver (other loops)
  PyObject *watch = nullptr;             // tollgate._async_watch
  PyObject *s_create_future = nullptr;
  PyObject *s_done = nullptr;
  PyObject *s_set_result = nullptr;
  PyObject *s_set_exception = nullptr;
  PyObject *s_is_closed = nullptr;
  PyObject *s_call_soon_threadsafe = nullptr;
  PyObject *s_call_soon = nullptr;
  PyObject *s_ready = nullptr;
};

// Never freed: the module lives until the process ends.
AsyncioRefs &asyncio_refs() {
  static AsyncioRefs *refs = [] {
    auto *r = new AsyncioRefs();
    auto keep = [](py::object o) { return o.release().ptr(); };
    r->get_running_loop =
        keep(py::module_::import("asyncio.events").attr("_get_running_loop"));
    r->make_error = keep(py::module_::import("tollgate._errors").attr("_make"));
    py::module_ pkg = py::module_::import("tollgate");
    r->deliver = keep(pkg.attr("_deliver"));
    r->watch = keep(pkg.attr("_async_watch"));
    r->s_create_future = PyUnicode_InternFromString("create_future");
    r->s_done = PyUnicode_InternFromString("done");
    r->s_set_result = PyUnicode_InternFromString("set_result");
    r->s_set_exception = PyUnicode_InternFromString("set_exception");
    r->s_is_closed = PyUnicode_InternFromString("is_closed");
    r->s_call_soon_threadsafe =
        PyUnicode_InternFromString("call_soon_threadsafe");
    r->s_call_soon = PyUnicode_InternFromString("call_soon");
    r->s_ready = PyUnicode_InternFromString("_ready");
    return r;
  }();
  return *refs;
}

// ---- Leases ----------------------------------------------------------------

// A lease acquired by Limiter.acquire (tollgate.Lease). It owns the C
// handle, freed when the Python object dies, before or after its limiter
// (rl_lease_free allows both; freeing does not release). It keeps the
// limiter's Core, not the Limiter: the limiter may be closed or collected
// first, and a renew or release then raises RL_E_CLOSED. The fields other
// than `h` and `core` are read and written with the GIL held.
struct Lease {
  std::shared_ptr<Core> core;
  rl_lease *h = nullptr;
  py::object key;  // as given: str or bytes
  int64_t max_in_flight = 0;
  int64_t in_flight = 0;  // when acquired (the new lease included)
  int64_t ttl_ms = 0;     // as acquired or last renewed
  int32_t source = RL_SOURCE_STORE;
  bool memory = false;    // the memory store (calls never wait on I/O)
  bool released = false;  // release() returned

  Lease() = default;
  ~Lease() { rl_lease_free(h); }
  Lease(const Lease &) = delete;
  Lease &operator=(const Lease &) = delete;
};

// Raises tollgate._errors.<cls>(message, <code's name>): an Error subclass
// chosen by the call rather than by the code (a renew's RL_E_NOT_FOUND is
// LeaseLost, not NothingToRefund).
[[noreturn]] void raise_error_class(const char *cls, int code,
                                    const std::string &message) {
  py::object type = py::module_::import("tollgate._errors").attr(cls);
  const char *name = rl_error_name(code);
  py::object exc = type(message, name ? name : "RL_E_INTERNAL");
  PyErr_SetObject(type.ptr(), exc.ptr());
  throw py::error_already_set();
}

int64_t lease_max_in_flight(py::handle h) {
  const int64_t n = to_int64(h, "max_in_flight");
  if (n < 1 || n > RL_MAX_IN_FLIGHT)
    raise_code(RL_E_INVALID_ARG, "max_in_flight: must be 1 to " +
                                     std::to_string(RL_MAX_IN_FLIGHT) +
                                     " (got " + std::to_string(n) + ")");
  return n;
}

// A lease's ttl: a period (seconds, a str such as "30s", a timedelta) of
// 1 ms to 2^40 ms, else RL_E_INVALID_ARG.
int64_t lease_ttl_ms(py::handle h) {
  const int64_t ms = period_ms_of(h, SpanRules{"ttl", false});
  if (ms < 1 || ms > RL_MAX_LEASE_TTL_MS)
    raise_code(RL_E_INVALID_ARG, "ttl: must be 1 ms to 2^40 ms (got " +
                                     std::to_string(ms) + " ms)");
  return ms;
}

// The longest a waiting call waits (check_wait's max_wait, lease's wait):
// a period of 0 to 2^40 ms (RL_MAX_WAIT_MS), else RL_E_INVALID_ARG naming
// `what`.
int64_t max_wait_ms_of(py::handle h, const char *what = "max_wait") {
  const int64_t ms = period_ms_of(h, SpanRules{what, false, "0"});
  if (ms < 0 || ms > RL_MAX_WAIT_MS)
    raise_code(RL_E_INVALID_ARG, std::string(what) +
                                     ": must be 0 to 2^40 ms (got " +
                                     std::to_string(ms) + " ms)");
  return ms;
}

// Called (with the GIL) after every successful release through this module,
// with the limiter's identity (its Core's address): tollgate._leases wakes
// the asyncio lease waiters of that limiter. Set once by _set_release_hook;
// never freed.
PyObject *g_release_hook = nullptr;

uintptr_t core_id(const Core &core) {
  return reinterpret_cast<uintptr_t>(&core);
}

void notify_release(const Core &core) {
  if (g_release_hook == nullptr) return;
  PyObject *id = PyLong_FromSize_t(core_id(core));
  PyObject *r =
      id ? PyObject_CallOneArg(g_release_hook, id) : nullptr;  // new refs
  Py_XDECREF(id);
  if (r == nullptr)  // the release itself succeeded: report, do not raise
    PyErr_WriteUnraisable(g_release_hook);
  Py_XDECREF(r);
}

Lease &lease_of(py::handle h) {
  if (!py::isinstance<Lease>(h))
    raise_type_error("lease must be a tollgate.Lease, not " + type_name(h));
  return h.cast<Lease &>();
}

void check_lease_owner(const Core &via, const Lease &lease) {
  if (&via != lease.core.get())
    raise_code(RL_E_INVALID_ARG,
               "lease: acquired through another limiter (renew or release "
               "it through its own)");
}

// rl_lease_renew through the limiter of `via`; ttl None: the lease's ttl.
void lease_renew(Core &via, Lease &lease, py::handle ttl) {
  check_lease_owner(via, lease);
  const int64_t ms = ttl.is_none() ? lease.ttl_ms : lease_ttl_ms(ttl);
  int rc = RL_OK;
  {
    CallGuard guard(via);
    rl_lease *h = lease.h;
    without_gil([&]() noexcept { rc = rl_lease_renew(via.lim, h, ms); });
  }
  const std::string message = rc == RL_OK ? std::string() : last_error_text(rc);
  rethrow_clock_error();
  if (rc == RL_E_NOT_FOUND) raise_error_class("LeaseLost", rc, message);
  if (rc != RL_OK) raise_code(rc, message);
  lease.ttl_ms = ms;
}

// rl_lease_release through the limiter of `via`: true if it was held.
bool lease_release(Core &via, Lease &lease) {
  check_lease_owner(via, lease);
  int rc = RL_OK;
  int was_held = 0;
  {
    CallGuard guard(via);
    rl_lease *h = lease.h;
    without_gil(
        [&]() noexcept { rc = rl_lease_release(via.lim, h, &was_held); });
  }
  const std::string message = rc == RL_OK ? std::string() : last_error_text(rc);
  rethrow_clock_error();
  if (rc != RL_OK) raise_code(rc, message);
  lease.released = true;
  notify_release(via);
  return was_held != 0;
}

std::string lease_repr(const Lease &l) {
  return "<tollgate.Lease key=" + py::repr(l.key).cast<std::string>() +
         " in_flight=" + std::to_string(l.in_flight) + "/" +
         std::to_string(l.max_in_flight) +
         " ttl=" + float_repr(ms_to_seconds(l.ttl_ms)) + " source='" +
         source_name(l.source) + "'" + (l.released ? " released>" : ">");
}

class Limiter {
 public:
  Limiter(py::object url, py::dict opts) : core_(std::make_shared<Core>()) {
    static const char *const kKnown[] = {
        "max_keys",        "max_key_len",
        "shards",          "connect_timeout_ms",
        "timeout_ms",      "key_prefix",
        "failure_mode",    "local_divisor",
        "deny_cache",      "deny_cache_size",
        "connections",     "reconnect_max_ms",
        "username",        "password",
        "tls_ca_file",     "tls_ca_dir",
        "tls_cert_file",   "tls_key_file",
        "tls_server_name", "tls_verify",
        "clock",           "spin_us",
        "shadow",          "metrics",
        "logger",          "max_async",
        "driver"};
    for (auto item : opts) {
      if (!PyUnicode_Check(item.first.ptr()))
        raise_type_error("option names must be str");
      const std::string name = item.first.cast<std::string>();
      bool known = false;
      for (const char *k : kKnown) known = known || name == k;
      if (!known)
        raise_type_error("Limiter() got an unexpected option '" + name + "'");
    }

    rl_options o = RL_OPTIONS_INIT;
    std::string url_s;
    if (!url.is_none()) {
      if (!PyUnicode_Check(url.ptr()))
        raise_type_error("url must be a str or None, not " + type_name(url));
      url_s = url.cast<std::string>();
      if (url_s.find('\0') != std::string::npos)
        raise_code(RL_E_URL, "url: contains a NUL character");
      o.url = url_s.c_str();
    }
    constexpr uint64_t u32 = std::numeric_limits<uint32_t>::max();
    o.max_keys =
        opt_uint(opts, "max_keys", std::numeric_limits<int64_t>::max());
    o.max_key_len = static_cast<uint32_t>(opt_uint(opts, "max_key_len", u32));
    o.shards = static_cast<uint32_t>(opt_uint(opts, "shards", u32));
    o.connect_timeout_ms =
        static_cast<uint32_t>(opt_uint(opts, "connect_timeout_ms", u32));
    o.timeout_ms = static_cast<uint32_t>(opt_uint(opts, "timeout_ms", u32));
    o.local_divisor =
        static_cast<uint32_t>(opt_uint(opts, "local_divisor", u32));
    o.deny_cache_size =
        static_cast<uint32_t>(opt_uint(opts, "deny_cache_size", u32));
    o.connections = static_cast<uint32_t>(opt_uint(opts, "connections", u32));
    o.reconnect_max_ms =
        static_cast<uint32_t>(opt_uint(opts, "reconnect_max_ms", u32));
    if (opts.contains("failure_mode"))
      o.failure_mode =
          static_cast<int32_t>(to_int64(opts["failure_mode"], "failure_mode"));
    if (opts.contains("deny_cache"))
      o.deny_cache =
          static_cast<int32_t>(to_int64(opts["deny_cache"], "deny_cache"));
    if (opts.contains("spin_us"))
      o.spin_us = static_cast<int32_t>(to_int64(opts["spin_us"], "spin_us"));
    if (opts.contains("shadow"))
      o.shadow = static_cast<int32_t>(to_int64(opts["shadow"], "shadow"));
    if (opts.contains("driver"))
      driver_mode_ = opts["driver"].cast<std::string>();
    if (opts.contains("max_async"))
      o.max_async =
          static_cast<int32_t>(to_int64(opts["max_async"], "max_async"));
    if (opts.contains("tls_verify"))
      o.tls_verify =
          static_cast<int32_t>(to_int64(opts["tls_verify"], "tls_verify"));
    if (opts.contains("metrics")) {
      // Set by name (1 on, -1 off), so the binding needs no struct layout.
      const int64_t m = to_int64(opts["metrics"], "metrics");
      const int rc = rl_options_set(&o, "metrics", m > 0 ? "on" : "off");
      if (rc != RL_OK) raise_code(rc, last_error_text(rc));
    }

    // String options: copied here, and by rl_create.
    struct StrOpt {
      const char *name;
      const char **field;
      std::string value;
    } strs[] = {{"key_prefix", &o.key_prefix, {}},
                {"username", &o.username, {}},
                {"password", &o.password, {}},
                {"tls_ca_file", &o.tls_ca_file, {}},
                {"tls_ca_dir", &o.tls_ca_dir, {}},
                {"tls_cert_file", &o.tls_cert_file, {}},
                {"tls_key_file", &o.tls_key_file, {}},
                {"tls_server_name", &o.tls_server_name, {}}};
    for (auto &s : strs) {
      if (!opts.contains(s.name)) continue;
      py::object v = opts[s.name];
      // Never echo the value: it may be a password.
      if (!PyUnicode_Check(v.ptr()))
        raise_type_error(std::string(s.name) + " must be a str, not " +
                         type_name(v));
      s.value = v.cast<std::string>();
      if (s.value.find('\0') != std::string::npos)
        raise_code(RL_E_INVALID_ARG,
                   std::string(s.name) + ": contains a NUL character");
      *s.field = s.value.c_str();
    }

    if (opts.contains("clock")) {
      py::object clock = opts["clock"];
      if (!clock.is_none()) {
        if (!PyCallable_Check(clock.ptr()))
          raise_type_error(
              "clock must be callable (returning int "
              "microseconds since the epoch), not " +
              type_name(clock));
        clock_ = clock;
        o.clock = &clock_trampoline;
        o.clock_user_data = clock_.ptr();
      }
    }

    // Where a Redis limiter's log messages go (tollgate/_log.py): made
    // before rl_create, so nothing raises once the limiter exists.
    py::object emit = py::module_::import("tollgate._log")
                          .attr("emitter")(opts.contains("logger")
                                               ? py::object(opts["logger"])
                                               : py::none());

    rl_limiter *lim = nullptr;
    const int rc = rl_create(&lim, &o);
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
    core_->lim = lim;
    shadow_ = o.shadow != 0;
    rl_health_info h = RL_HEALTH_INIT;
    if (rl_health(lim, &h) == RL_OK) store_kind_ = h.store_kind;
    if (store_kind_ != RL_STORE_MEMORY) {
      // The memory store logs nothing. A new limiter has done no I/O, so no
      // handler can be waiting for the GIL: installed with it held.
      core_->log = std::make_unique<LogBridge>(std::move(emit));
      log_install(*core_);
    }
  }

  ~Limiter() {
    try {
      close();
    } catch (...) {
      // Destructors never throw; close() only raises for a re-entrant call
      // (from the limiter's clock or its log handler). The C limiter is
      // then left alive, so its hook stays too, silenced.
      if (core_->log) {
        core_->log->on.store(false);
        (void)core_->log.release();
      }
    }
  }

  Limiter(const Limiter &) = delete;
  Limiter &operator=(const Limiter &) = delete;

  // check(key, *policies, cost=1): the hot path, called through
  // check_vectorcall (METH_FASTCALL) with no pybind11 argument handling.
  PyObject *check(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    CheckArgs c;
    parse_check_args("check", args, nargs, kwnames, c);
    return check_now(c);
  }

  // The synchronous check of parsed arguments; a new Decision.
  PyObject *check_now(const CheckArgs &c) {
    const KeyView &k = c.key;
    rl_policy *const *ps = c.policies;
    const size_t n = c.n;
    const int64_t cost = c.cost;
    rl_decision out = RL_DECISION_INIT;
    int rc = RL_OK;
    if (store_kind_ == RL_STORE_MEMORY && !clock_) {
      // The memory store never waits on I/O (a check is ~0.1 us; it may
      // spin briefly on a shard lock, whose holders never need the GIL):
      // keeping the GIL costs less than handing it over twice. close() sets
      // `closed` with the GIL held, so no check here can race rl_destroy.
      if (core_->closed.load(std::memory_order_relaxed)) raise_closed();
      rc = rl_check(core_->lim, &out, k.data, k.size, ps, n, cost);
    } else {
      CallGuard guard(*core_);
      without_gil([&]() noexcept {
        rc = rl_check(core_->lim, &out, k.data, k.size, ps, n, cost);
      });
      rethrow_clock_error();
    }
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
    PyObject *d = new_decision(out);
    if (d == nullptr) throw py::error_already_set();
    return d;
  }

  // check_wait(key, *policies, max_wait, cost=1): rl_check_wait, which
  // sleeps between tries (docs/waiting.md), always without the GIL.
  PyObject *check_wait(PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames) {
    CheckArgs c;
    PyObject *max_wait = nullptr;
    parse_check_args("check_wait", args, nargs, kwnames, c, &max_wait);
    if (max_wait == nullptr)
      raise_type_error(
          "check_wait() missing the keyword argument 'max_wait' (seconds, a "
          "str such as \"5s\", or a datetime.timedelta)");
    const int64_t wait_ms = max_wait_ms_of(max_wait);
    rl_decision out = RL_DECISION_INIT;
    int rc = RL_OK;
    {
      CallGuard guard(*core_);
      without_gil([&]() noexcept {
        rc = rl_check_wait(core_->lim, &out, c.key.data, c.key.size, c.policies,
                           c.n, c.cost, wait_ms);
      });
    }
    const std::string message =
        rc == RL_OK ? std::string() : last_error_text(rc);
    rethrow_clock_error();
    if (rc != RL_OK) raise_code(rc, message);
    PyObject *d = new_decision(out);
    if (d == nullptr) throw py::error_already_set();
    return d;
  }

  // check_keys(pairs, cost=1): several (key, policies) pairs in one
  // decision, all or nothing (rl_check_keys).
  py::object check_keys(py::handle pairs, py::handle cost) {
    KeysArgs a;
    parse_keys_args("check_keys", pairs, cost, a);
    return py::reinterpret_steal<py::object>(check_keys_now(a));
  }

  // The synchronous rl_check_keys of parsed arguments; a new Decision. The
  // GIL as in check_now.
  PyObject *check_keys_now(const KeysArgs &a) {
    rl_decision out = RL_DECISION_INIT;
    int rc = RL_OK;
    if (store_kind_ == RL_STORE_MEMORY && !clock_) {
      if (core_->closed.load(std::memory_order_relaxed)) raise_closed();
      rc = rl_check_keys(core_->lim, &out, a.keys, a.key_lens, a.n_keys,
                         a.policies.data(), a.n_policies, a.cost);
    } else {
      CallGuard guard(*core_);
      without_gil([&]() noexcept {
        rc = rl_check_keys(core_->lim, &out, a.keys, a.key_lens, a.n_keys,
                           a.policies.data(), a.n_policies, a.cost);
      });
      rethrow_clock_error();
    }
    if (rc != RL_OK) raise_code(rc, keys_error_text(rc));
    PyObject *d = new_decision(out);
    if (d == nullptr) throw py::error_already_set();
    return d;
  }

  void reset(py::handle key) {
    const KeyView k = key_view(key);
    CallGuard guard(*core_);
    int rc = RL_OK;
    without_gil([&]() noexcept { rc = rl_reset(core_->lim, k.data, k.size); });
    rethrow_clock_error();
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
  }

  // _set_list(list, entries, what): rl_set_list with `entries` a list of
  // bytes (tollgate._options.list_entries made it). `what` prefixes the
  // library's message ("deny: entries[2]: ..."), or nothing when empty.
  void set_list(int list, py::handle entries, const std::string &what) {
    if (!PyList_Check(entries.ptr()))
      raise_type_error("entries must be a list of bytes, not " +
                       type_name(entries));
    const Py_ssize_t n = PyList_GET_SIZE(entries.ptr());
    std::vector<std::string> copies;
    copies.reserve(static_cast<size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject *e = PyList_GET_ITEM(entries.ptr(), i);
      if (!PyBytes_Check(e))
        raise_type_error("entries must be a list of bytes, not of " +
                         type_name(e));
      copies.emplace_back(PyBytes_AS_STRING(e),
                          static_cast<size_t>(PyBytes_GET_SIZE(e)));
    }
    std::vector<const char *> ptrs;
    std::vector<size_t> lens;
    ptrs.reserve(copies.size());
    lens.reserve(copies.size());
    for (const std::string &c : copies) {
      ptrs.push_back(c.data());
      lens.push_back(c.size());
    }
    CallGuard guard(*core_);
    int rc = RL_OK;
    without_gil([&]() noexcept {
      rc = rl_set_list(core_->lim, list, ptrs.data(), lens.data(), ptrs.size());
    });
    if (rc != RL_OK) {
      const std::string message = last_error_text(rc);
      raise_code(rc, what.empty() ? message : what + ": " + message);
    }
  }

  void block(py::handle key, py::handle duration) {
    const KeyView k = key_view(key);
    const int64_t ms = period_ms_of(duration, SpanRules{"duration", false});
    CallGuard guard(*core_);
    int rc = RL_OK;
    without_gil(
        [&]() noexcept { rc = rl_block(core_->lim, k.data, k.size, ms); });
    rethrow_clock_error();
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
  }

  void unblock(py::handle key) {
    const KeyView k = key_view(key);
    CallGuard guard(*core_);
    int rc = RL_OK;
    without_gil(
        [&]() noexcept { rc = rl_unblock(core_->lim, k.data, k.size); });
    rethrow_clock_error();
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
  }

  // acquire(key, *, max_in_flight, ttl): a tollgate.LeaseResult, holding a
  // new Lease when acquired.
  py::object acquire(py::handle key, py::handle max_in_flight, py::handle ttl) {
    return acquire_call(key, max_in_flight, ttl, nullptr);
  }

  // acquire_wait(key, *, max_in_flight, ttl, max_wait): the same through
  // rl_lease_acquire_wait (docs/waiting.md).
  py::object acquire_wait(py::handle key, py::handle max_in_flight,
                          py::handle ttl, py::handle max_wait) {
    return acquire_call(key, max_in_flight, ttl, max_wait.ptr());
  }

  // rl_lease_acquire, or rl_lease_acquire_wait when `max_wait` is given.
  py::object acquire_call(py::handle key, py::handle max_in_flight,
                          py::handle ttl, PyObject *max_wait) {
    const KeyView k = key_view(key);
    const int64_t max = lease_max_in_flight(max_in_flight);
    const int64_t ttl_ms = lease_ttl_ms(ttl);
    const int64_t wait_ms = max_wait ? max_wait_ms_of(max_wait) : -1;
    rl_lease *h = nullptr;
    rl_lease_info info = RL_LEASE_INFO_INIT;
    int rc = RL_OK;
    {
      CallGuard guard(*core_);
      without_gil([&]() noexcept {
        rc = wait_ms < 0
                 ? rl_lease_acquire(core_->lim, k.data, k.size, max, ttl_ms, &h,
                                    &info)
                 : rl_lease_acquire_wait(core_->lim, k.data, k.size, max,
                                         ttl_ms, wait_ms, &h, &info);
      });
    }
    const std::string message =
        rc == RL_OK ? std::string() : last_error_text(rc);
    // Owned from here: freed on every path that does not hand it over.
    std::unique_ptr<rl_lease, void (*)(rl_lease *)> handle(h, &rl_lease_free);
    rethrow_clock_error();
    if (rc != RL_OK) raise_code(rc, message);
    // Imported before the Lease is made: nothing after it can fail but the
    // result's construction.
    py::object result_type =
        py::module_::import("tollgate._leases").attr("LeaseResult");
    py::object key_obj = py::reinterpret_borrow<py::object>(key);
    py::object source =
        py::reinterpret_borrow<py::object>(py::handle(source_str(info.source)));
    py::object lease = py::none();
    if (info.acquired != 0) {
      if (!handle)
        raise_code(RL_E_INTERNAL, "rl_lease_acquire: acquired, no lease");
      auto l = std::make_unique<Lease>();
      l->core = core_;
      l->key = key_obj;
      l->max_in_flight = max;
      l->in_flight = info.in_flight;
      l->ttl_ms = ttl_ms;
      l->source = info.source;
      l->memory = store_kind_ == RL_STORE_MEMORY;
      l->h = handle.release();
      lease = py::cast(std::move(l));
    }
    return result_type(key_obj, info.acquired != 0, lease, info.in_flight, max,
                       info.retry_after_ms, source);
  }

  double ping() {
    CallGuard guard(*core_);
    int64_t rtt_us = 0;
    int rc = RL_OK;
    without_gil([&]() noexcept { rc = rl_ping(core_->lim, &rtt_us); });
    rethrow_clock_error();
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
    return static_cast<double>(rtt_us) / 1e6;
  }

  py::dict health() {
    CallGuard guard(*core_);
    rl_health_info h = RL_HEALTH_INIT;
    // Each node rl_health counted (the list only grows, so every index
    // below h.nodes stays valid); read without the GIL like the snapshot.
    std::vector<rl_node_info> nodes;
    int rc = RL_OK;
    without_gil([&]() noexcept {
      rc = rl_health(core_->lim, &h);
      if (rc != RL_OK) return;
      try {
        nodes.reserve(h.nodes);
      } catch (...) {
        rc = RL_E_NOMEM;
        return;
      }
      for (uint32_t i = 0; i < h.nodes; ++i) {
        rl_node_info n = RL_NODE_INIT;
        rc = rl_health_node(core_->lim, i, &n);
        if (rc != RL_OK) return;
        nodes.push_back(n);
      }
    });
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
    py::dict d;
    d["store"] = store_name(h.store_kind);
    d["connection"] = connection_name(h.connection);
    d["checks"] = h.checks;
    d["allowed"] = h.allowed;
    d["denied"] = h.denied;
    d["errors"] = h.errors;
    d["live_keys"] = h.live_keys;
    d["evictions"] = h.evictions;
    d["in_flight"] = h.in_flight;
    d["reconnects"] = h.reconnects;
    d["last_ping"] = h.last_ping_us < 0
                         ? py::object(py::none())
                         : py::object(py::float_(h.last_ping_us / 1e6));
    d["store_errors"] = h.store_errors;
    d["fail_open"] = h.fail_open;
    d["fail_closed"] = h.fail_closed;
    d["local_fallback"] = h.local_fallback;
    d["deny_cache_hits"] = h.deny_cache_hits;
    d["shadow_denied"] = h.shadow_denied;
    d["list_allowed"] = h.list_allowed;
    d["list_denied"] = h.list_denied;
    d["async_pending"] = h.async_pending;
    d["async_refused"] = h.async_refused;
    d["server_version"] = std::string(
        h.server_version, strnlen(h.server_version, sizeof h.server_version));
    d["last_error"] =
        std::string(h.last_error, strnlen(h.last_error, sizeof h.last_error));
    const char *topology = "memory";
    switch (h.topology) {
      case RL_TOPOLOGY_STANDALONE:
        topology = "standalone";
        break;
      case RL_TOPOLOGY_CLUSTER:
        topology = "cluster";
        break;
      case RL_TOPOLOGY_SENTINEL:
        topology = "sentinel";
        break;
      default:
        break;
    }
    d["topology"] = topology;
    d["slot_map_age_ms"] = h.slot_map_age_ms < 0
                               ? py::object(py::none())
                               : py::object(py::int_(h.slot_map_age_ms));
    d["slot_map_refreshes"] = h.slot_map_refreshes;
    d["moved"] = h.moved;
    d["ask"] = h.ask;
    d["master_switches"] = h.master_switches;
    py::list node_list;
    for (const rl_node_info &n : nodes) {
      py::dict nd;
      nd["address"] =
          std::string(n.address, strnlen(n.address, sizeof n.address));
      nd["role"] = n.role == RL_ROLE_PRIMARY ? "primary" : "other";
      nd["connection"] = connection_name(n.connection);
      nd["in_flight"] = n.in_flight;
      nd["errors"] = n.errors;
      nd["reconnects"] = n.reconnects;
      nd["last_error"] =
          std::string(n.last_error, strnlen(n.last_error, sizeof n.last_error));
      node_list.append(std::move(nd));
    }
    d["nodes"] = std::move(node_list);
    return d;
  }

  // metrics(): one snapshot (rl_metrics_read, without the GIL), walked
  // into tollgate._metrics.MetricSample objects.
  py::list metrics() {
    CallGuard guard(*core_);
    rl_metrics *snap = nullptr;
    int rc = RL_OK;
    without_gil([&]() noexcept { rc = rl_metrics_read(core_->lim, &snap); });
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
    std::unique_ptr<rl_metrics, void (*)(rl_metrics *)> owned(snap,
                                                              &rl_metrics_free);
    py::object sample_type =
        py::module_::import("tollgate._metrics").attr("MetricSample");
    py::list out;
    rl_metric s = RL_METRIC_INIT;
    while ((rc = rl_metrics_next(snap, &s)) == RL_OK) {
      const char *type = nullptr;
      switch (s.type) {
        case RL_METRIC_COUNTER:
          type = "counter";
          break;
        case RL_METRIC_GAUGE:
          type = "gauge";
          break;
        case RL_METRIC_HISTOGRAM:
          type = "histogram";
          break;
        default:
          continue;  // a kind this binding does not know (a newer library)
      }
      py::dict labels;
      for (uint32_t i = 0; i < s.n_labels && i < RL_METRIC_MAX_LABELS; ++i)
        labels[py::str(s.label_names[i])] = py::str(s.label_values[i]);
      py::list buckets;
      if (s.type == RL_METRIC_HISTOGRAM) {
        for (size_t i = 0; i < s.n_buckets; ++i)
          buckets.append(
              py::make_tuple(s.bucket_bounds[i], s.bucket_counts[i]));
        // The +Inf bucket holds every observation.
        buckets.append(
            py::make_tuple(std::numeric_limits<double>::infinity(), s.count));
      }
      out.append(sample_type(type, s.name, s.help, std::move(labels), s.value,
                             std::move(buckets), s.count, s.sum));
    }
    if (rc != RL_E_DONE) raise_code(rc, last_error_text(rc));
    return out;
  }

  static const char *connection_name(int32_t connection) {
    switch (connection) {
      case RL_CONN_CONNECTING:
        return "connecting";
      case RL_CONN_READY:
        return "ready";
      case RL_CONN_DOWN:
        return "down";
      default:
        return "none";
    }
  }

  // Waits for calls in progress, frees open key iterators, destroys the
  // limiter. Idempotent.
  // ---- asyncio (driven by tollgate/__init__.py's check_async) ----------

  // The eventfd the event loop watches; made on first use.
  int async_fd() {
    if (!bridge_) bridge_ = std::make_shared<AsyncBridge>();
    return bridge_->fd;
  }

  // Per-limiter Python state of the asyncio layer (pending futures, loops).
  py::dict async_state() { return async_state_; }

  // check_async's start (tollgate/__init__.py awaits what it returns): a
  // Decision at once for the memory store, else a future of the running
  // loop that async_drain() resolves.
  PyObject *async_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames) {
    CheckArgs c;
    parse_check_args("check_async", args, nargs, kwnames, c);
    if (store_kind_ == RL_STORE_MEMORY && !clock_) return check_now(c);
    return start_future("check_async", self, [&](AsyncCall *call) noexcept {
      return rl_check_async(core_->lim, c.key.data, c.key.size, c.policies, c.n,
                            c.cost, &async_complete, call);
    });
  }

  // check_keys_async's start, as async_start is check_async's.
  py::object async_start_keys(py::handle self, py::handle pairs,
                              py::handle cost) {
    KeysArgs a;
    parse_keys_args("check_keys_async", pairs, cost, a);
    if (store_kind_ == RL_STORE_MEMORY && !clock_)
      return py::reinterpret_steal<py::object>(check_keys_now(a));
    return py::reinterpret_steal<py::object>(start_future(
        "check_keys_async", self.ptr(), [&](AsyncCall *call) noexcept {
          return rl_check_keys_async(core_->lim, a.keys, a.key_lens, a.n_keys,
                                     a.policies.data(), a.n_policies, a.cost,
                                     &async_complete, call);
        }));
  }

  // A future of the running loop, resolved by async_drain() when the
  // asynchronous call `issue(call)` starts (it returns the C call's code)
  // completes; a validation error raises at once.
  template <class Issue>
  PyObject *start_future(const char *fn, PyObject *self, Issue &&issue) {
    AsyncioRefs &refs = asyncio_refs();
    py::object loop = py::reinterpret_steal<py::object>(
        PyObject_CallNoArgs(refs.get_running_loop));
    if (!loop) throw py::error_already_set();
    if (loop.is_none())
      throw std::runtime_error(std::string(fn) +
                               "() must be awaited in a running asyncio "
                               "event loop");
    async_fd();
    if (!is_last_loop(loop.ptr())) {  // first check here: watch the eventfd
      py::handle(refs.watch)(py::handle(self), loop);
      last_loop_ = py::reinterpret_steal<py::object>(
          PyWeakref_NewRef(loop.ptr(), nullptr));
      if (!last_loop_) throw py::error_already_set();
    }
    if (store_kind_ != RL_STORE_MEMORY) drive_from(self, loop.ptr());
    py::object fut = py::reinterpret_steal<py::object>(
        PyObject_CallMethodNoArgs(loop.ptr(), refs.s_create_future));
    if (!fut) throw py::error_already_set();
    CallGuard guard(*core_);
    auto call = std::make_unique<AsyncCall>(
        AsyncCall{bridge_, fut.inc_ref().ptr(), loop.inc_ref().ptr()});
    // Validation happens before the call returns; network stores then
    // complete on tollgate's I/O thread. Without the GIL: while the store
    // is down the call is answered here, and may log here (the failure
    // mode entered), taking the log hook's lock ("Logs"). The completion
    // needs no GIL; `fut` keeps this call's own reference.
    int rc = RL_OK;
    AsyncCall *started = call.get();
    without_gil([&]() noexcept { rc = issue(started); });
    if (rc != RL_OK) {
      const std::string err = keys_error_text(rc);
      Py_DECREF(call->fut);
      Py_DECREF(call->loop);
      rethrow_clock_error();
      raise_code(rc, err);
    }
    call.release();  // the completion owns it now
    // Driven from this loop: the check waits in the queue for a turn, which
    // sends it with whatever else this loop iteration queued.
    Core::Driver &d = core_->drv;
    if (d.driving && !d.turn_soon && d.loop == loop.ptr()) {
      py::object cb = py::reinterpret_steal<py::object>(
          PyObject_GetAttrString(self, "_loop_turn"));
      if (!cb) throw py::error_already_set();
      PyObject *h =
          PyObject_CallMethodOneArg(loop.ptr(), refs.s_call_soon, cb.ptr());
      if (h == nullptr) throw py::error_already_set();
      Py_DECREF(h);
      d.turn_soon = true;
    }
    return fut.release().ptr();
  }

  // check_async on the running loop `loop`: with driver="loop", the first
  // one makes this loop's thread the driver of the Redis connection
  // (rl_loop_open), unless the connection uses TLS or the I/O thread runs
  // already; a check from a loop on another thread hands the connection to
  // the I/O thread for good (several loops in threads). "auto" (and
  // "auto-loop": "auto" with TOLLGATE_DRIVER=loop, _options.py) is the loop
  // where it can drive (docs/architecture.md, "Drivers").
  void drive_from(PyObject *self, PyObject *loop) {
    Core::Driver &d = core_->drv;
    const auto me = std::this_thread::get_id();
    if (d.driving && d.thread == me) {
      if (d.loop == loop) return;
      // Another loop on the same thread (asyncio.run() again): it watches
      // the descriptor now; the old one is not running.
      stop_watching(false);
      d.driving = true;
      watch(self, loop);
      return;
    }
    if (d.driving) {
      d.driving = false;
      rl_limiter *lim = core_->lim;
      without_gil([lim]() noexcept { rl_loop_close(lim); });
      return;
    }
    // "auto" and "auto-loop": the loop where it can drive, else the I/O
    // thread without an error.
    if (d.tried || driver_mode_ == "thread") return;
    d.tried = true;
    int fd = -1;
    int rc = RL_OK;
    rl_limiter *lim = core_->lim;
    without_gil([&]() noexcept { rc = rl_loop_open(lim, &fd); });
    if (rc != RL_OK) {
      if (driver_mode_ == "loop") {
        const std::string err = last_error_text(rc);
        raise_code(rc, "driver: " + err);
      }
      return;
    }
    d.fd = fd;
    d.thread = me;
    d.driving = true;
    watch(self, loop);
  }

  // The loop watches the descriptor (its reader holds the limiter, as the
  // eventfd's does, until close() or the loop's end).
  void watch(PyObject *self, PyObject *loop) {
    Core::Driver &d = core_->drv;
    Py_INCREF(loop);
    d.loop = loop;
    py::object cb = py::reinterpret_steal<py::object>(
        PyObject_GetAttrString(self, "_loop_turn"));
    if (!cb) throw py::error_already_set();
    PyObject *r = PyObject_CallMethod(loop, "add_reader", "iO", d.fd, cb.ptr());
    if (r == nullptr) throw py::error_already_set();
    Py_DECREF(r);
  }

  // The loop stops watching the descriptor and drops its timer (on the
  // loop's thread; `threadsafe`: from another, through
  // call_soon_threadsafe). With the GIL.
  void stop_watching(bool threadsafe) {
    Core::Driver &d = core_->drv;
    d.driving = false;
    d.turn_soon = false;
    if (d.timer != nullptr) {
      PyObject *r = PyObject_CallMethod(d.timer, "cancel", nullptr);
      if (r == nullptr) PyErr_Clear();
      Py_XDECREF(r);
      Py_CLEAR(d.timer);
    }
    if (d.loop == nullptr) return;
    PyObject *closed = PyObject_CallMethod(d.loop, "is_closed", nullptr);
    const int is_closed = closed ? PyObject_IsTrue(closed) : 1;
    Py_XDECREF(closed);
    if (is_closed == 0) {
      PyObject *r = nullptr;
      if (threadsafe) {
        PyObject *rm = PyObject_GetAttrString(d.loop, "remove_reader");
        if (rm != nullptr)
          r = PyObject_CallMethod(d.loop, "call_soon_threadsafe", "Oi", rm,
                                  d.fd);
        Py_XDECREF(rm);
      } else {
        r = PyObject_CallMethod(d.loop, "remove_reader", "i", d.fd);
      }
      if (r == nullptr) PyErr_Clear();
      Py_XDECREF(r);
    } else if (is_closed < 0) {
      PyErr_Clear();
    }
    Py_CLEAR(d.loop);
  }

  // The loop's reader on the descriptor, and its call_soon after a check
  // was queued: one turn (without the GIL: it may log), then the futures.
  void loop_turn(PyObject *self) {
    Core::Driver &d = core_->drv;
    d.turn_soon = false;
    if (d.loop == nullptr) return;
    if (!d.driving || d.thread != std::this_thread::get_id()) {
      stop_watching(false);  // the I/O thread took over
      return;
    }
    core_->active.fetch_add(1);
    if (core_->closed.load()) {
      core_->active.fetch_sub(1);
      return;
    }
    int64_t next_us = -1;
    int rc = RL_OK;
    rl_limiter *lim = core_->lim;
    const AsyncBridge *bridge = bridge_.get();
    const bool idle = loop_idle(d.loop);
    without_gil([&]() noexcept {
      t_turning = bridge;
      rc =
          idle ? rl_loop_turn_idle(lim, &next_us) : rl_loop_turn(lim, &next_us);
      t_turning = nullptr;
    });
    core_->active.fetch_sub(1);
    if (rc != RL_OK)
      stop_watching(false);
    else
      set_timer(self, next_us);
    async_drain();
  }

  // Whether `loop` has nothing else ready to run: its ready queue (the
  // `_ready` deque of asyncio's BaseEventLoop, which this turn's handle
  // has left) is empty. Then a lone wait may be polled for in the turn
  // (rl_loop_turn_idle) instead of the loop sleeping and waking for it.
  // Another loop (uvloop has no such queue) never polls.
  static bool loop_idle(PyObject *loop) {
    PyObject *ready = PyObject_GetAttr(loop, asyncio_refs().s_ready);
    if (ready == nullptr) {
      PyErr_Clear();
      return false;
    }
    const Py_ssize_t n = PyObject_Length(ready);
    Py_DECREF(ready);
    if (n < 0) PyErr_Clear();
    return n == 0;
  }

  void loop_timer(PyObject *self) {
    Py_CLEAR(core_->drv.timer);
    loop_turn(self);
  }

  // The loop turns again in `next_us` (-1: only on readiness): a pending
  // timer that is due no later stays.
  void set_timer(PyObject *self, int64_t next_us) {
    Core::Driver &d = core_->drv;
    if (next_us < 0) return;  // an early timer only costs a turn
    PyObject *t = PyObject_CallMethod(d.loop, "time", nullptr);
    if (t == nullptr) throw py::error_already_set();
    const double when =
        PyFloat_AsDouble(t) + static_cast<double>(next_us) / 1e6;
    Py_DECREF(t);
    if (d.timer != nullptr && d.timer_when <= when + 0.0005) return;
    if (d.timer != nullptr) {
      PyObject *r = PyObject_CallMethod(d.timer, "cancel", nullptr);
      Py_XDECREF(r);
      Py_CLEAR(d.timer);
    }
    py::object cb = py::reinterpret_steal<py::object>(
        PyObject_GetAttrString(self, "_loop_timer"));
    if (!cb) throw py::error_already_set();
    d.timer = PyObject_CallMethod(d.loop, "call_at", "dO", when, cb.ptr());
    if (d.timer == nullptr) throw py::error_already_set();
    d.timer_when = when;
  }

  // "loop" while a loop's thread drives the Redis connection, "thread"
  // once tollgate's I/O thread does (or will), "none" for the memory store.
  const char *driver() const {
    if (store_kind_ == RL_STORE_MEMORY) return "none";
    return core_->drv.driving ? "loop" : "thread";
  }

  // Resolves the futures of every completed check (the event loop's reader
  // callback; also run by close()). Futures of other loops are handed to
  // them with call_soon_threadsafe; cancelled ones are dropped.
  void async_drain() {
    if (!bridge_) return;
    uint64_t count;
    while (read(bridge_->fd, &count, sizeof count) > 0) {
    }
    std::vector<AsyncResult> done;
    {
      std::lock_guard<std::mutex> lock(bridge_->mu);
      done.swap(bridge_->done);
    }
    if (done.empty()) return;
    AsyncioRefs &refs = asyncio_refs();
    PyObject *running = PyObject_CallNoArgs(refs.get_running_loop);
    if (running == nullptr) PyErr_Clear();
    for (AsyncResult &r : done) {
      deliver(refs, r, running);
      Py_DECREF(r.fut);
      Py_DECREF(r.loop);
    }
    Py_XDECREF(running);
  }

  bool is_last_loop(PyObject *loop) const {
    if (!last_loop_) return false;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = nullptr;
    if (PyWeakref_GetRef(last_loop_.ptr(), &obj) < 0) PyErr_Clear();
    Py_XDECREF(obj);  // only the identity is compared
    return obj == loop;
#else
    return PyWeakref_GetObject(last_loop_.ptr()) == loop;
#endif
  }

  // Settles one future; a failure is reported as unraisable and never stops
  // the other deliveries.
  static void deliver(AsyncioRefs &refs, const AsyncResult &r,
                      PyObject *running) {
    PyObject *value = nullptr;
    PyObject *exc = nullptr;
    if (r.status == RL_OK) {
      value = new_decision(r.d);
    } else {
      const std::string msg =
          r.error.empty() ? std::string(rl_strerror(r.status)) : r.error;
      PyObject *code = PyLong_FromLong(r.status);
      PyObject *text = PyUnicode_DecodeUTF8(
          msg.data(), static_cast<Py_ssize_t>(msg.size()), "replace");
      if (code != nullptr && text != nullptr)
        exc =
            PyObject_CallFunctionObjArgs(refs.make_error, code, text, nullptr);
      Py_XDECREF(code);
      Py_XDECREF(text);
    }
    if (value == nullptr && exc == nullptr) {
      // Building the result failed (MemoryError): the future gets that.
      PyObject *type = nullptr, *tb = nullptr;
      PyErr_Fetch(&type, &exc, &tb);
      PyErr_NormalizeException(&type, &exc, &tb);
      Py_XDECREF(type);
      Py_XDECREF(tb);
      if (exc == nullptr) return;
    }
    PyObject *res = nullptr;
    if (r.loop == running) {
      PyObject *is_done = PyObject_CallMethodNoArgs(r.fut, refs.s_done);
      const int done = is_done ? PyObject_IsTrue(is_done) : -1;
      Py_XDECREF(is_done);
      if (done == 0)
        res = value
                  ? PyObject_CallMethodOneArg(r.fut, refs.s_set_result, value)
                  : PyObject_CallMethodOneArg(r.fut, refs.s_set_exception, exc);
      else if (done == 1)  // cancelled meanwhile: the result is dropped
        res = (Py_INCREF(Py_None), Py_None);
    } else {
      PyObject *is_closed = PyObject_CallMethodNoArgs(r.loop, refs.s_is_closed);
      const int closed = is_closed ? PyObject_IsTrue(is_closed) : -1;
      Py_XDECREF(is_closed);
      if (closed == 0)
        res = PyObject_CallMethodObjArgs(
            r.loop, refs.s_call_soon_threadsafe, refs.deliver, r.fut,
            value ? value : Py_None, exc ? exc : Py_None, nullptr);
      else if (closed == 1)
        res = (Py_INCREF(Py_None), Py_None);
    }
    if (res == nullptr) PyErr_WriteUnraisable(r.fut);
    Py_XDECREF(res);
    Py_XDECREF(value);
    Py_XDECREF(exc);
  }

  void close() {
    if (t_in_clock > 0)
      throw std::runtime_error("a limiter cannot be closed from its clock");
    if (core_->log && t_log_bridge == core_->log.get())
      throw std::runtime_error(
          "a limiter cannot be closed from its own log handler (a handler "
          "or filter of its logger)");
    if (core_->closed.exchange(true)) return;
    Core &core = *core_;
    // The loop stops watching the descriptor rl_destroy closes.
    if (core.drv.loop != nullptr)
      stop_watching(core.drv.thread != std::this_thread::get_id());

    LogBridge *log = core.log.get();
    if (log != nullptr) log->on.store(false);  // nothing delivered from here
    without_gil([&core, log]() noexcept {
      while (core.active.load() != 0)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      // The hook first, with the GIL released: a message being delivered
      // (it needs the GIL) ends, and the handler is never called again.
      if (log != nullptr)
        rl_set_log_handler(core.lim, RL_LOG_DEBUG, nullptr, nullptr);
      std::lock_guard<std::mutex> lock(core.mu);
      for (KeysState *st : core.iterators) {
        rl_keys_free(st->it);
        st->it = nullptr;
      }
      core.iterators.clear();
      rl_destroy(core.lim);
      core.lim = nullptr;
    });
    core.log.reset();       // after rl_destroy, with the GIL
    clock_ = py::object();  // after rl_destroy: nothing calls it any more
    // rl_destroy answered every pending async check (RL_E_CLOSED); let the
    // Python layer deliver them and stop watching the eventfd.
    if (bridge_ && async_state_.contains("close")) async_state_["close"](this);
  }

  bool closed() const {
    return core_->closed.load();
  }
  const char *store() const {
    return store_name(store_kind_);
  }
  bool shadow() const {
    return shadow_;
  }

  std::shared_ptr<Core> core() const {
    return core_;
  }

  static const char *store_name(int32_t kind) {
    return kind == RL_STORE_REDIS ? "redis" : "memory";
  }

 private:
  std::shared_ptr<Core> core_;
  py::object clock_;
  int32_t store_kind_ = RL_STORE_MEMORY;
  bool shadow_ = false;
  std::shared_ptr<AsyncBridge> bridge_;
  py::dict async_state_;
  py::object last_loop_;  // a weak reference to the last loop watched
  std::string driver_mode_ = "auto";  // the driver option
};

// The policies of keys(): one tollgate.Policy or a list or tuple of 1 to
// RL_MAX_POLICIES of them, as a tuple.
py::tuple keys_policies(py::handle arg) {
  if (policy_of(arg.ptr()) != nullptr) return py::make_tuple(arg);
  if (arg.is_none())
    raise_type_error(
        "keys() needs the policies the application checks with (a "
        "tollgate.Policy or a list of them): a state is listed with the "
        "policy of its identity");
  if (!PyList_Check(arg.ptr()) && !PyTuple_Check(arg.ptr()))
    raise_type_error(
        "keys() needs the policies the application checks with: a "
        "tollgate.Policy or a list of them, not " +
        type_name(arg));
  py::tuple t = py::reinterpret_steal<py::tuple>(PySequence_Tuple(arg.ptr()));
  if (!t) throw py::error_already_set();
  const size_t n = t.size();
  if (n < 1 || n > RL_MAX_POLICIES)
    raise_code(RL_E_INVALID_ARG, "policies: expected 1 to " +
                                     std::to_string(RL_MAX_POLICIES) +
                                     " policies, got " + std::to_string(n));
  for (size_t i = 0; i < n; ++i)
    if (policy_of(t[i].ptr()) == nullptr)
      raise_type_error("keys() policies must be tollgate.Policy, not " +
                       type_name(t[i]) + " (index " + std::to_string(i) + ")");
  return t;
}

// Iterates rl_keys_open/next, yielding tollgate.KeyState tuples.
class KeysIterator {
 public:
  KeysIterator(Limiter &limiter, py::handle policies, bool raw)
      : core_(limiter.core()),
        st_(std::make_unique<KeysState>()),
        policies_(keys_policies(policies)),
        raw_(raw) {
    key_state_ = py::module_::import("tollgate._types").attr("KeyState");
    rl_policy *handles[RL_MAX_POLICIES];
    const size_t n = policies_.size();
    for (size_t i = 0; i < n; ++i)
      handles[i] = policy_of(policies_[i].ptr())->h;
    CallGuard guard(*core_);
    rl_keys *it = nullptr;
    int rc = RL_OK;
    without_gil(
        [&]() noexcept { rc = rl_keys_open(core_->lim, handles, n, &it); });
    rethrow_clock_error();
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));
    st_->it = it;
    std::lock_guard<std::mutex> lock(core_->mu);
    core_->iterators.insert(st_.get());
  }

  // Without dropping the GIL: the locks are only ever held briefly here (no
  // other reference means no next() in progress).
  ~KeysIterator() { release(/*drop_gil=*/false); }

  KeysIterator(const KeysIterator &) = delete;
  KeysIterator &operator=(const KeysIterator &) = delete;

  py::object next() {
    if (done_) throw py::stop_iteration();
    CallGuard guard(*core_);
    rl_key_info info = RL_KEY_INFO_INIT;
    std::string key;
    int rc = RL_OK;
    KeysState &st = *st_;
    without_gil([&]() noexcept {
      std::lock_guard<std::mutex> lock(st.mu);
      if (st.it == nullptr) {
        rc = RL_E_DONE;
        return;
      }
      rc = rl_keys_next(st.it, &info);
      if (rc != RL_OK) return;
      try {
        key.assign(info.key, info.key_len);  // valid until the next call
      } catch (...) {
        rc = RL_E_NOMEM;
      }
    });
    rethrow_clock_error();
    if (rc == RL_E_DONE) {
      release(/*drop_gil=*/true);
      throw py::stop_iteration();
    }
    if (rc == RL_E_NOMEM) throw std::bad_alloc();
    if (rc != RL_OK) raise_code(rc, last_error_text(rc));

    py::object key_obj;
    if (raw_) {
      key_obj = py::bytes(key);
    } else {
      PyObject *s = PyUnicode_DecodeUTF8(
          key.data(), static_cast<Py_ssize_t>(key.size()), "strict");
      if (s != nullptr) {
        key_obj = py::reinterpret_steal<py::object>(s);
      } else {
        PyErr_Clear();
        key_obj = py::bytes(key);  // not UTF-8: the raw bytes
      }
    }
    // The state is listed with the policy of its identity: the caller's own
    // Policy object at that position.
    const size_t index = info.policy_index;
    py::object policy =
        index < policies_.size()
            ? py::reinterpret_borrow<py::object>(policies_[index])
            : py::cast(policy_from_spec(info.policy));
    return key_state_(key_obj, policy, info.remaining,
                      ms_to_seconds(info.reset_after_ms), index);
  }

  // Frees the C iterator now (also done at the end and by the limiter's
  // close()).
  void release(bool drop_gil) {
    done_ = true;
    KeysState *st = st_.get();
    Core &core = *core_;
    auto free_it = [st, &core]() noexcept {
      std::lock_guard<std::mutex> it_lock(st->mu);
      std::lock_guard<std::mutex> lock(core.mu);
      if (core.iterators.erase(st) != 0) {
        rl_keys_free(st->it);
        st->it = nullptr;
      }
    };
    if (drop_gil)
      without_gil(free_it);
    else
      free_it();
  }

 private:
  std::shared_ptr<Core> core_;
  std::unique_ptr<KeysState> st_;
  py::tuple policies_;
  py::object key_state_;
  bool raw_ = false;
  bool done_ = false;
};

// Limiter.check and Limiter._async_start as METH_FASTCALL methods:
// pybind11's dispatcher (overload resolution, py::args, a kwargs dict) costs
// several times the check itself.
template <class F>
PyObject *call_limiter(PyObject *self, F &&f) noexcept {
  try {
    Limiter *lim = pybind_value<Limiter>(self);
    if (lim == nullptr) {
      PyErr_SetString(PyExc_TypeError, "the Limiter was never initialized");
      return nullptr;
    }
    return f(*lim);
  } catch (py::error_already_set &e) {
    e.restore();
  } catch (const std::bad_alloc &) {
    PyErr_NoMemory();
  } catch (const std::exception &e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyObject *limiter_check(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames) {
  return call_limiter(
      self, [&](Limiter &lim) { return lim.check(args, nargs, kwnames); });
}

PyObject *limiter_async_start(PyObject *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
  return call_limiter(self, [&](Limiter &lim) {
    return lim.async_start(self, args, nargs, kwnames);
  });
}

PyObject *limiter_check_wait(PyObject *self, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames) {
  return call_limiter(
      self, [&](Limiter &lim) { return lim.check_wait(args, nargs, kwnames); });
}

PyMethodDef g_check_wait_def = {
    "check_wait",
    reinterpret_cast<PyCFunction>(
        reinterpret_cast<void *>(&limiter_check_wait)),
    METH_FASTCALL | METH_KEYWORDS,
    "check_wait($self, key, /, *policies, max_wait, cost=1)\n--\n\n"
    "check() that waits up to `max_wait` (seconds as int or float, a str "
    "such as \"5s\", or a datetime.timedelta; 0 to 2^40 ms, 0 is one try) "
    "for the check to be allowed (docs/waiting.md): after a denial it "
    "sleeps the decision's retry_after and tries again. It returns the "
    "denial at once when retry_after is math.inf (the cost exceeds a "
    "policy's capacity) or longer than the wait left. Returns a "
    "tollgate.Decision: the first allowed one, or the last denial. Waiters "
    "are not queued. Blocks the calling thread, with the GIL released; "
    "close() waits for it."};

PyMethodDef g_async_start_def = {
    "_async_start",
    reinterpret_cast<PyCFunction>(
        reinterpret_cast<void *>(&limiter_async_start)),
    METH_FASTCALL | METH_KEYWORDS,
    "Starts check_async(): a Decision (memory store) or a future."};

PyMethodDef g_check_def = {
    "check",
    reinterpret_cast<PyCFunction>(reinterpret_cast<void *>(&limiter_check)),
    METH_FASTCALL | METH_KEYWORDS,
    "check($self, key, /, *policies, cost=1)\n--\n\n"
    "Check `key` (str or bytes) against every policy and, if all allow, "
    "charge `cost` units to each; if any denies, nothing is charged. cost=0 "
    "peeks. Returns a tollgate.Decision."};

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() =
      "tollgate's C ABI for Python (use the tollgate package, not this "
      "module)";

  py::module_::import("os").attr("register_at_fork")(
      py::arg("after_in_child") = py::cpp_function(&after_fork_in_child));
  // The log hooks ("Logs"): off across a fork, on again on both sides
  // (after after_fork_in_child, registered first), and off at exit. logging
  // is imported first so that its own atexit hook (logging.shutdown, which
  // flushes the handlers) runs after this one.
  py::module_::import("os").attr("register_at_fork")(
      py::arg("before") = py::cpp_function(&logs_off_for_fork),
      py::arg("after_in_parent") = py::cpp_function(&logs_on),
      py::arg("after_in_child") = py::cpp_function(&logs_on));
  py::module_::import("logging");
  g_main_thread = py::module_::import("threading")
                      .attr("main_thread")()
                      .attr("ident")
                      .cast<unsigned long>();
  py::module_::import("atexit").attr("register")(
      py::cpp_function(&logs_off_at_exit));

  m.attr("VERSION") = rl_version_string();
  m.attr("VERSION_NUMBER") = rl_version_number();
  m.attr("HEADER_VERSION_NUMBER") = static_cast<unsigned>(RL_VERSION_NUMBER);
  py::dict codes;
  // Every code the library knows, by its own names (RL_OK down to the
  // first code rl_error_name does not know).
  for (int c = -1; rl_error_name(c) != nullptr; --c)
    codes[rl_error_name(c)] = c;
  m.attr("ERROR_CODES") = codes;
  m.attr("MAX_POLICIES") = RL_MAX_POLICIES;
  m.attr("MAX_KEYS") = RL_MAX_KEYS;
  py::dict modes;
  modes["open"] = RL_FAIL_OPEN;
  modes["closed"] = RL_FAIL_CLOSED;
  modes["local"] = RL_FAIL_LOCAL;
  modes["error"] = RL_FAIL_ERROR;
  m.attr("FAILURE_MODES") = modes;
  m.attr("MAX_WAIT_MS") = static_cast<int64_t>(RL_MAX_WAIT_MS);
  m.def(
      "_max_wait_ms",
      [](py::handle value, const std::string &what) {
        return max_wait_ms_of(value, what.c_str());
      },
      py::arg("value"), py::arg("what") = "max_wait",
      "A wait (seconds, a str or a datetime.timedelta) in milliseconds, 0 .. "
      "2^40; InvalidArgument naming `what` otherwise.");
  m.def(
      "_set_release_hook",
      [](py::object hook) {
        PyObject *old = g_release_hook;
        g_release_hook = hook.is_none() ? nullptr : hook.release().ptr();
        Py_XDECREF(old);
      },
      py::arg("hook"),
      "hook(core_id) runs after every successful lease release (the asyncio "
      "lease waiters' wake-up).");
  m.def(
      "rate_limit_headers",
      [](py::handle decision, const Policy &policy, py::handle name) {
        const rl_decision *d = decision_of(decision.ptr());
        if (d == nullptr)
          raise_type_error("decision must be a tollgate.Decision, not " +
                           type_name(decision));
        std::string n = "default";
        if (!name.is_none()) {
          if (!py::isinstance<py::str>(name))
            raise_type_error("name must be a str, not " + type_name(name));
          n = name.cast<std::string>();
        }
        rl_headers h = RL_HEADERS_INIT;
        const int rc = rl_headers_format(&h, d, policy.h, n.data(), n.size());
        if (rc != RL_OK) raise_code(rc, last_error_text(rc));
        py::dict out;
        out["RateLimit-Policy"] = h.ratelimit_policy;
        out["RateLimit"] = h.ratelimit;
        out["X-RateLimit-Limit"] = h.x_ratelimit_limit;
        out["X-RateLimit-Remaining"] = h.x_ratelimit_remaining;
        out["X-RateLimit-Reset"] = h.x_ratelimit_reset;
        if (h.retry_after[0] != '\0') out["Retry-After"] = h.retry_after;
        return out;
      },
      py::arg("decision"), py::arg("policy"), py::arg("name") = "default",
      "rate_limit_headers(decision, policy, name='default') -> dict\n\n"
      "The response headers for `decision` (which reported `policy`): "
      "RateLimit-Policy, RateLimit, X-RateLimit-Limit/Remaining/Reset and, "
      "when denied, Retry-After. The text comes from the C library, so every "
      "tollgate binding emits the same bytes.");
  m.def(
      "strerror", [](int code) { return std::string(rl_strerror(code)); },
      py::arg("code"), "The library's static text for an RL_E_* code.");

  py::class_<Policy>(m, "Policy", py::is_final(), R"doc(
A rate limit: at most `limit` units per `period`.

Policy(limit, period, algorithm="gcra", burst=None, *, name=None,
       block=None, strikes=None, strikes_period=None, shadow=False)
Policy.parse("100/h"), Policy.parse("10/s burst=20 token_bucket"),
Policy.parse("100/h name=hourly"), Policy.parse("5/m block=15m strikes=3/h"),
Policy.parse("100/h shadow")

  limit      int >= 1
  period     seconds (int or float, whole milliseconds), a str such as
             "500ms", "1.5s", "15m", "1h", "1d", "2 minutes" (the
             library's period syntax), or a datetime.timedelta
  algorithm  "gcra" (default), "token_bucket", "fixed_window" or
             "sliding_window"
  burst      gcra and token_bucket: units that may pass at once (the bucket
             capacity); None means the same as limit
  name       None, or the policy's identity under a key: 1 to 32 of
             A-Z a-z 0-9 _ . - starting with a letter. A key's state is kept
             under the name (or, unnamed, under the policy's position in the
             check's list), so a changed limit keeps what was used.
  block      None, or a period (as `period`): when this policy denies a
             charge, the key is blocked that long, denied by every check
             whatever its policies (Limiter.unblock or reset lifts it)
  strikes, strikes_period
             None, or both: the block starts at the strikes-th denial
             within one strikes_period window (epoch-aligned), not the
             first; they need a block
  shadow     True: shadow mode. The policy is evaluated and its state kept
             as if enforced, but its denial does not deny the check: the
             decision is allowed with shadow=True and describes the
             would-be denial. Not part of the identity: turning shadow off
             keeps the usage.

Immutable and hashable. Invalid values raise tollgate.InvalidArgument (a
ValueError); wrong types raise TypeError.
)doc")
      .def(py::init(&make_policy), py::arg("limit"), py::arg("period"),
           py::arg("algorithm") = "gcra", py::arg("burst") = py::none(),
           py::kw_only(), py::arg("name") = py::none(),
           py::arg("block") = py::none(), py::arg("strikes") = py::none(),
           py::arg("strikes_period") = py::none(), py::arg("shadow") = false)
      .def_static("parse", &parse_policy, py::arg("text"),
                  "Policy.parse(text) -> Policy\n\n"
                  "A policy from the library's one text syntax: \"100/h\", "
                  "\"100 per 15m\", \"10/s burst=20\", \"5000/d "
                  "sliding_window\", \"100/h name=hourly\", \"5/m block=15m "
                  "strikes=3/h\", \"100/h shadow\". A malformed text raises "
                  "tollgate.InvalidArgument naming the byte offset of the "
                  "problem.")
      .def_property_readonly(
          "limit", [](const Policy &s) { return s.p.limit; },
          "Units allowed per period.")
      .def_property_readonly(
          "period",
          [](const Policy &s) { return ms_to_seconds(s.p.period_ms); },
          "The period in seconds (float).")
      .def_property_readonly(
          "period_ms", [](const Policy &s) { return s.p.period_ms; },
          "The period in milliseconds (int).")
      .def_property_readonly(
          "algorithm",
          [](const Policy &s) {
            return std::string(kAlgorithmNames[s.p.algorithm]);
          },
          "The algorithm's name.")
      .def_property_readonly(
          "burst",
          [](const Policy &s) -> py::object {
            if (s.p.burst == 0) return py::none();
            return py::int_(s.p.burst);
          },
          "The burst (bucket capacity), or None for the same as limit.")
      .def_property_readonly(
          "name",
          [](const Policy &s) -> py::object {
            if (s.p.name_len == 0) return py::none();
            return py::str(s.p.name, s.p.name_len);
          },
          "The policy's name (its identity under a key), or None.")
      .def_property_readonly(
          "block",
          [](const Policy &s) -> py::object {
            if (s.p.block_ms == 0) return py::none();
            return py::float_(ms_to_seconds(s.p.block_ms));
          },
          "How long a denial by this policy blocks the key, in seconds "
          "(float), or None.")
      .def_property_readonly(
          "block_ms",
          [](const Policy &s) -> py::object {
            if (s.p.block_ms == 0) return py::none();
            return py::int_(s.p.block_ms);
          },
          "block in milliseconds (int), or None.")
      .def_property_readonly(
          "strikes",
          [](const Policy &s) -> py::object {
            if (s.p.strikes == 0) return py::none();
            return py::int_(s.p.strikes);
          },
          "The denial within one strikes_period that starts the block, or "
          "None (the first).")
      .def_property_readonly(
          "strikes_period",
          [](const Policy &s) -> py::object {
            if (s.p.strikes_period_ms == 0) return py::none();
            return py::float_(ms_to_seconds(s.p.strikes_period_ms));
          },
          "The window strikes are counted in, in seconds (float), or None.")
      .def_property_readonly(
          "strikes_period_ms",
          [](const Policy &s) -> py::object {
            if (s.p.strikes_period_ms == 0) return py::none();
            return py::int_(s.p.strikes_period_ms);
          },
          "strikes_period in milliseconds (int), or None.")
      .def_property_readonly(
          "shadow", [](const Policy &s) { return is_shadow(s.p); },
          "True if the policy is in shadow mode: evaluated and its state "
          "kept as if enforced, but its denial does not deny the check.")
      .def("__repr__", &policy_repr)
      .def("__eq__",
           [](const Policy &a, py::handle b) -> py::object {
             if (!py::isinstance<Policy>(b))
               return py::reinterpret_borrow<py::object>(Py_NotImplemented);
             return py::bool_(same_policy(a.p, b.cast<const Policy &>().p));
           })
      .def("__ne__",
           [](const Policy &a, py::handle b) -> py::object {
             if (!py::isinstance<Policy>(b))
               return py::reinterpret_borrow<py::object>(Py_NotImplemented);
             return py::bool_(!same_policy(a.p, b.cast<const Policy &>().p));
           })
      .def("__hash__",
           [](const Policy &s) {
             return py::hash(py::make_tuple(
                 s.p.algorithm, s.p.limit, s.p.period_ms, s.p.burst,
                 name_of(s.p), s.p.block_ms, s.p.strikes, s.p.strikes_period_ms,
                 is_shadow(s.p)));
           })
      .def(py::pickle(
          [](const Policy &s) {
            py::object name = py::none();
            if (s.p.name_len != 0) name = py::str(s.p.name, s.p.name_len);
            py::tuple t = py::make_tuple(
                s.p.limit, s.p.period_ms,
                std::string(kAlgorithmNames[s.p.algorithm]), s.p.burst, name,
                s.p.block_ms, s.p.strikes, s.p.strikes_period_ms);
            // A ninth field only in shadow mode: a pickle of an enforced
            // policy still loads in a version without shadow mode.
            if (is_shadow(s.p)) return py::tuple(t + py::make_tuple(true));
            return t;
          },
          [](const py::tuple &t) {
            // 4 fields: a policy pickled before names existed; 5, before
            // blocks; 9: a shadow policy.
            if (t.size() != 4 && t.size() != 5 && t.size() != 8 &&
                t.size() != 9)
              throw std::runtime_error("bad Policy state");
            rl_policy_spec spec = RL_POLICY_SPEC_INIT;
            spec.limit = t[0].cast<int64_t>();
            spec.period_ms = t[1].cast<int64_t>();
            spec.algorithm = algorithm_code(t[2]);
            spec.burst = t[3].cast<int64_t>();
            std::string name;
            if (t.size() >= 5 && !t[4].is_none()) {
              name = t[4].cast<std::string>();
              spec.name = name.data();
              spec.name_len = name.size();
            }
            if (t.size() >= 8) {
              spec.block_ms = t[5].cast<int64_t>();
              spec.strikes = t[6].cast<int64_t>();
              spec.strikes_period_ms = t[7].cast<int64_t>();
            }
            if (t.size() == 9 && t[8].cast<bool>())
              spec.flags = RL_POLICY_SHADOW;
            return policy_from_spec(spec);
          }));

  g_policy_type = reinterpret_cast<PyTypeObject *>(m.attr("Policy").ptr());
  g_decision_type = make_decision_type();
  if (g_decision_type == nullptr) throw py::error_already_set();
  m.attr("Decision") =
      py::handle(reinterpret_cast<PyObject *>(g_decision_type));

  py::class_<KeysIterator>(m, "KeysIterator", py::is_final(),
                           "Iterator over a limiter's stored (key, policy) "
                           "states (tollgate.KeyState).")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &KeysIterator::next)
      .def(
          "close", [](KeysIterator &self) { self.release(/*drop_gil=*/true); },
          "Free the listing now (it is also freed at the end).");

  py::class_<Lease>(m, "Lease", py::is_final(), R"doc(
A concurrency lease, held until released or until its ttl passes (the
Redis server's clock) without a renew. Made by Limiter.acquire (the
result's `lease`) or Limiter.lease; never constructed directly.

  key            the key, as given (str or bytes)
  max_in_flight  as asked
  in_flight      leases of the key held just after this one was acquired
                 (this one included; 0 for a fail-open lease, the
                 count in this process for a local one)
  ttl, ttl_ms    the ttl of the last acquire or renew (seconds, ms)
  source         "store", or "fail_open" / "local" when the store was
                 unavailable (a fail-open lease is not stored)
  released       True once release() returned

renew(ttl=None) extends it; release() ends it (True if it was still held).
The C handle is freed when the object dies, before or after its limiter;
that does not release it: a lease dropped unreleased ends after its ttl.
)doc")
      .def_property_readonly(
          "key", [](const Lease &l) { return l.key; },
          "The key, as given (str or bytes).")
      .def_property_readonly(
          "max_in_flight", [](const Lease &l) { return l.max_in_flight; },
          "The most leases of the key held at once, as asked.")
      .def_property_readonly(
          "in_flight", [](const Lease &l) { return l.in_flight; },
          "Leases of the key held just after this one was acquired (this "
          "one included; 0 for a fail-open lease, the count in this process "
          "for a local one).")
      .def_property_readonly(
          "ttl", [](const Lease &l) { return ms_to_seconds(l.ttl_ms); },
          "Seconds the lease lasts from its acquire or last renew.")
      .def_property_readonly(
          "ttl_ms", [](const Lease &l) { return l.ttl_ms; },
          "ttl in milliseconds (int).")
      .def_property_readonly(
          "source",
          [](const Lease &l) {
            return py::reinterpret_borrow<py::object>(
                py::handle(source_str(l.source)));
          },
          "Which path granted it: \"store\", or \"fail_open\" / \"local\" "
          "when the store was unavailable.")
      .def_property_readonly(
          "released", [](const Lease &l) { return l.released; },
          "True once release() returned.")
      .def_property_readonly("_memory", [](const Lease &l) { return l.memory; })
      .def(
          "renew",
          [](Lease &l, py::handle ttl) { lease_renew(*l.core, l, ttl); },
          py::arg("ttl") = py::none(),
          "renew(ttl=None) -> None\n\n"
          "Extend the lease: it now ends `ttl` from now (a period as for "
          "acquire; None: its current ttl). Raises tollgate.LeaseLost "
          "(RL_E_NOT_FOUND) if it is no longer held (it expired or was "
          "released). Releases the GIL.")
      .def(
          "release", [](Lease &l) { return lease_release(*l.core, l); },
          "release() -> bool\n\n"
          "End the lease. True if it was held until now; False if it had "
          "expired or was released already (harmless). Releases the GIL.")
      .def("__repr__", &lease_repr);

  py::class_<Limiter>(m, "Limiter", py::is_final(), R"doc(
Limiter(url=None, **options)

A rate limiter over one store. No URL (or "memory://") keeps the counters in
this process; "redis://", "rediss://" (TLS) and "unix://" URLs share them
through Redis (docs/redis.md describes the URL and its query options).
Creating a limiter does no I/O: ping() probes the store.

Options (keyword only; None means the default), as in the C struct
rl_options:
  memory store   max_keys, max_key_len, shards
  Redis          connect_timeout_ms, timeout_ms, key_prefix,
                 failure_mode ("open", "closed", "local", "error"),
                 local_divisor, deny_cache (bool), deny_cache_size,
                 connections, reconnect_max_ms, username, password,
                 tls_ca_file, tls_ca_dir, tls_cert_file, tls_key_file,
                 tls_server_name, tls_verify (bool)
  max_async      back-pressure: at most this many check_async and
                 check_keys_async calls wait for the store at once; beyond
                 it a call raises BusyError (RL_E_BUSY) at once. None: the
                 default, 65536; 0: no bound
  clock          a callable returning integer microseconds since the Unix
                 epoch, used by the memory store instead of the system clock
                 (simulations, tests); called on the checking thread
  shadow         True: shadow mode for the whole limiter. Every check is
                 evaluated and charged as if enforced, and every denial (a
                 policy's, a block's, the deny cache's, fail closed's) is
                 answered allowed with decision.shadow True
  allow, deny    the allow and deny lists (docs/exemptions.md): iterables
                 of exact keys, IP addresses and CIDR ranges (str, or
                 ipaddress objects), decided in this process before any
                 store call (decision.source "allow_list" / "deny_list");
                 set_allow_list() / set_deny_list() replace them
  metrics        True (the default) or False: whether decisions are counted
                 per policy name, decision and source for metrics()
                 (tollgate_checks_total, tollgate_shadow_denials_total; one
                 lock-free increment per check). False leaves the other
                 series (errors, store, nodes)
  logger         a logging.Logger or LoggerAdapter: where a Redis limiter
                 logs each episode of its store (unreachable, reconnected,
                 the failure mode entered and left; docs/metrics.md,
                 "Logs"); None (the default): logging.getLogger("tollgate")

An unknown option raises TypeError. One limiter serves any number of
threads; every call that may block releases the GIL. Use it as a context
manager, or call close().
)doc")
      .def(py::init([](py::object url, py::kwargs options) {
             if (!url.is_none() && !PyUnicode_Check(url.ptr()))
               // Never echo the value: a URL may hold a password.
               raise_type_error("url must be a str or None, not " +
                                type_name(url));
             py::dict opts = py::module_::import("tollgate._options")
                                 .attr("normalize")(options);
             // The lists are set once the limiter exists; a bad entry
             // destroys it (the unique_ptr) and raises.
             py::object allow = opts.attr("pop")("allow", py::none());
             py::object deny = opts.attr("pop")("deny", py::none());
             auto lim = std::make_unique<Limiter>(url, opts);
             if (!allow.is_none()) lim->set_list(RL_LIST_ALLOW, allow, "allow");
             if (!deny.is_none()) lim->set_list(RL_LIST_DENY, deny, "deny");
             return lim;
           }),
           py::arg("url") = py::none())
      .def("_set_list", &Limiter::set_list, py::arg("list"), py::arg("entries"),
           py::arg("what") = std::string())
      .def("_async_fd", &Limiter::async_fd)
      .def_property_readonly("_async_state", &Limiter::async_state)
      .def("_async_drain", &Limiter::async_drain)
      .def(
          "_loop_turn",
          [](py::object self) { self.cast<Limiter &>().loop_turn(self.ptr()); })
      .def("_loop_timer",
           [](py::object self) {
             self.cast<Limiter &>().loop_timer(self.ptr());
           })
      .def_property_readonly("driver", &Limiter::driver)
      .def("check_keys", &Limiter::check_keys, py::arg("pairs"), py::kw_only(),
           py::arg("cost") = 1,
           "check_keys(pairs, *, cost=1) -> Decision\n\n"
           "Several (key, policies) pairs in one decision, all or nothing: "
           "`cost` units are charged to every policy of every pair only if "
           "every one allows; if any denies, nothing is charged anywhere. "
           "`pairs` is a list of 1 to 8 (key, policies) pairs, a key (str or "
           "bytes) at most once, `policies` a tollgate.Policy or a list of "
           "them (at most 16 policies in all). The decision reports one "
           "policy as check() does; its policy_index counts the policies "
           "pair by pair (pair 1's first policy comes after all of pair "
           "0's). A negative cost refunds every pair with usage. A blocked "
           "key denies. Redis runs one script; on a Redis Cluster the keys "
           "must share a slot (start them with the same {tag}), else "
           "tollgate.UnsupportedError before anything is sent.")
      .def(
          "_async_start_keys",
          [](py::object self, py::handle pairs, py::handle cost) {
            return self.cast<Limiter &>().async_start_keys(self, pairs, cost);
          },
          py::arg("pairs"), py::kw_only(), py::arg("cost") = 1)
      .def("reset", &Limiter::reset, py::arg("key"),
           "Forget every policy's state for `key`, its block and its strike "
           "counts included.")
      .def("block", &Limiter::block, py::arg("key"), py::arg("duration"),
           "block(key, duration) -> None\n\n"
           "Block `key` for `duration` from now (seconds as int or float, a "
           "str such as \"15m\", or a datetime.timedelta; 1 ms to 2^40 ms, "
           "else tollgate.InvalidArgument, RL_E_INVALID_ARG): until then every "
           "check of it is denied, whatever its policies. Replaces any block "
           "the key has. A refund still runs while blocked.")
      .def("unblock", &Limiter::unblock, py::arg("key"),
           "unblock(key) -> None\n\n"
           "Lift `key`'s block (set by block() or by a policy's block) and "
           "forget its strike counts. Unblocking a key that is not blocked "
           "succeeds.")
      .def("acquire", &Limiter::acquire, py::arg("key"), py::kw_only(),
           py::arg("max_in_flight"), py::arg("ttl"),
           "acquire(key, *, max_in_flight, ttl) -> LeaseResult\n\n"
           "Acquire a concurrency lease on `key` if fewer than "
           "`max_in_flight` (1 to 1000000) are held; it lasts `ttl` (seconds "
           "as int or float, a str such as \"30s\", or a "
           "datetime.timedelta; 1 ms to 2^40 ms) unless renewed or "
           "released. Returns a tollgate.LeaseResult: truthy with its "
           "`lease` when acquired; falsy, `lease` None and `retry_after` "
           "(until the earliest held lease ends) when denied. Bad values "
           "raise tollgate.InvalidArgument. Releases the GIL.")
      .def(
          "renew",
          [](Limiter &self, py::handle lease, py::handle ttl) {
            lease_renew(*self.core(), lease_of(lease), ttl);
          },
          py::arg("lease"), py::arg("ttl") = py::none(),
          "renew(lease, ttl=None) -> None: lease.renew(ttl) through this "
          "limiter (tollgate.InvalidArgument for another limiter's lease).")
      .def(
          "release",
          [](Limiter &self, py::handle lease) {
            return lease_release(*self.core(), lease_of(lease));
          },
          py::arg("lease"),
          "release(lease) -> bool: lease.release() through this limiter "
          "(tollgate.InvalidArgument for another limiter's lease).")
      .def("acquire_wait", &Limiter::acquire_wait, py::arg("key"),
           py::kw_only(), py::arg("max_in_flight"), py::arg("ttl"),
           py::arg("max_wait"),
           "acquire_wait(key, *, max_in_flight, ttl, max_wait) -> "
           "LeaseResult\n\n"
           "acquire() that waits up to `max_wait` (seconds as int or float, "
           "a str such as \"10s\", or a datetime.timedelta; 0 to 2^40 ms, 0 "
           "is one try) for a lease (docs/waiting.md): it tries again after "
           "10 ms, 20, 40, ... (never beyond the denial's retry_after nor the "
           "wait left), and at once when a lease of this limiter is "
           "released in this process. Returns the acquired LeaseResult, or "
           "the last denial when the wait is over. Waiters are not queued. "
           "Blocks the calling thread, with the GIL released; close() waits "
           "for it.")
      .def_property_readonly(
          "_core_id", [](const Limiter &self) { return core_id(*self.core()); })
      .def("ping", &Limiter::ping,
           "One round trip to the store; returns the round-trip time in "
           "seconds (0.0 for the memory store). Raises the precise error "
           "(TollgateConnectionError, AuthError, TLSError, ...).")
      .def("health", &Limiter::health,
           "A snapshot of the limiter's state and counters (a dict).")
      .def("metrics", &Limiter::metrics,
           "metrics() -> list[MetricSample]\n\n"
           "The limiter's metrics now, as Prometheus names them: one "
           "tollgate.MetricSample per series (type, name, help, labels, "
           "value; histograms: buckets, count, sum), read at once "
           "(rl_metrics_read; no I/O). Decisions per policy name, decision "
           "and source (tollgate_checks_total, absent with metrics=False), "
           "shadow mode's would-be denials, errors, the memory store's keys "
           "and evictions, and per Redis node its state, commands in "
           "flight, connection failures, reconnects and round-trip "
           "histogram, with the cluster's and sentinel's series. "
           "tollgate.prometheus and tollgate.opentelemetry export it.")
      .def("close", &Limiter::close,
           "Wait for calls in progress, then release the limiter. "
           "Idempotent; later calls raise TollgateConnectionError "
           "(RL_E_CLOSED). Nothing is logged once it has begun.")
      .def(
          "keys",
          [](Limiter &self, py::handle policies, bool raw) {
            return std::make_unique<KeysIterator>(self, policies, raw);
          },
          py::arg("policies") = py::none(), py::pos_only(), py::kw_only(),
          py::arg("raw") = false, py::keep_alive<0, 1>(),
          "keys(policies, /, *, raw=False) -> Iterator[KeyState]\n\n"
          "The stored (key, policy) states under the key prefix that belong "
          "to `policies` (a Policy or a list of them: the list the "
          "application checks with). A state is kept under its policy's "
          "identity (the name, or the position of an unnamed policy), and "
          "is listed with that policy of `policies` and its index; states "
          "of other identities are skipped. Redis: a SCAN walk, never KEYS. "
          "Keys are str when valid UTF-8, else bytes; raw=True gives bytes "
          "always. The memory store raises UnsupportedError.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](Limiter &self, py::args) {
             self.close();
             return false;
           })
      .def("__repr__",
           [](const Limiter &self) {
             // The URL is not shown: it may hold a password.
             return std::string("<tollgate.Limiter ") + self.store() +
                    (self.closed() ? " closed>" : ">");
           })
      .def_property_readonly("closed", &Limiter::closed,
                             "True once close() was called.")
      .def_property_readonly("store", &Limiter::store,
                             "\"memory\" or \"redis\".")
      .def_property_readonly(
          "shadow", &Limiter::shadow,
          "True if the limiter is in shadow mode (Limiter(shadow=True)).");

  {
    PyTypeObject *type =
        reinterpret_cast<PyTypeObject *>(m.attr("Limiter").ptr());
    py::object check = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(type, &g_check_def));
    if (!check) throw py::error_already_set();
    m.attr("Limiter").attr("check") = check;
    py::object start = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(type, &g_async_start_def));
    if (!start) throw py::error_already_set();
    m.attr("Limiter").attr("_async_start") = start;
    py::object check_wait = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(type, &g_check_wait_def));
    if (!check_wait) throw py::error_already_set();
    m.attr("Limiter").attr("check_wait") = check_wait;
  }
}
