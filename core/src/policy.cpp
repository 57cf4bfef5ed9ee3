#include "tollgate/policy.hpp"

#include <cstring>
#include <string>
#include <string_view>

#include "tollgate/hash.hpp"

namespace tollgate {

const char *algorithm_name(Algorithm a) noexcept {
  switch (a) {
    case Algorithm::gcra:
      return "gcra";
    case Algorithm::token_bucket:
      return "token_bucket";
    case Algorithm::fixed_window:
      return "fixed_window";
    case Algorithm::sliding_window:
      return "sliding_window";
  }
  return "unknown";
}

namespace {
// The id of a policy without a name: its parameters (a block's only when
// it has one).
uint64_t parameter_hash(const Policy &p) {
  uint64_t h = hash_mix(static_cast<uint64_t>(p.algorithm) + 0x51);
  h = hash_mix(h ^ static_cast<uint64_t>(p.limit));
  h = hash_mix(h ^ static_cast<uint64_t>(p.period_ms));
  h = hash_mix(h ^ static_cast<uint64_t>(p.capacity));
  if (p.block_us != 0) {
    h = hash_mix(h ^ static_cast<uint64_t>(p.block_us));
    h = hash_mix(h ^ static_cast<uint64_t>(p.strikes));
    h = hash_mix(h ^ static_cast<uint64_t>(p.strike_period_us));
  }
  // Not the state's identity (that is the name or the position): turning
  // shadow mode off keeps usage. Part of the id, which tells policies apart.
  if (p.shadow) h = hash_mix(h ^ 0x736861646f77ULL);
  return h;
}

// The id: the parameters, and the name if there is one.
uint64_t policy_id(const Policy &p) {
  return p.name_id == 0 ? parameter_hash(p)
                        : hash_mix(parameter_hash(p) ^ p.name_id);
}
}  // namespace

Errc make_policy(int32_t algorithm, int64_t limit, int64_t period_ms,
                 int64_t burst, uint32_t flags, Policy &out) {
  if (algorithm < 0 || algorithm > 3)
    return fail(Errc::policy,
                "policy: unknown algorithm " + std::to_string(algorithm) +
                    " (expected RL_ALG_GCRA, RL_ALG_TOKEN_BUCKET, "
                    "RL_ALG_FIXED_WINDOW or RL_ALG_SLIDING_WINDOW)");
  const auto alg = static_cast<Algorithm>(algorithm);
  if ((flags & ~kPolicyShadow) != 0)
    return fail(Errc::policy, "policy: unknown flags " + std::to_string(flags) +
                                  " (expected 0 or RL_POLICY_SHADOW)");
  if (limit <= 0)
    return fail(Errc::policy, "policy: limit must be >= 1 (got " +
                                  std::to_string(limit) + ")");
  if (period_ms <= 0)
    return fail(Errc::policy, "policy: period_ms must be >= 1 (got " +
                                  std::to_string(period_ms) + ")");
  if (burst < 0)
    return fail(Errc::policy, "policy: burst must be >= 0 (got " +
                                  std::to_string(burst) + ")");
  const bool windowed =
      alg == Algorithm::fixed_window || alg == Algorithm::sliding_window;
  if (windowed && burst != 0)
    return fail(Errc::policy, std::string("policy: burst applies to gcra and "
                                          "token_bucket only; it must be 0 "
                                          "for ") +
                                  algorithm_name(alg));
  if (limit > kMaxLimit)
    return fail(Errc::overflow, "policy: limit " + std::to_string(limit) +
                                    " exceeds the maximum 2^40");
  if (period_ms > kMaxPeriodMs)
    return fail(Errc::overflow, "policy: period_ms " +
                                    std::to_string(period_ms) +
                                    " exceeds the maximum 2^40");
  if (burst > kMaxLimit)
    return fail(Errc::overflow, "policy: burst " + std::to_string(burst) +
                                    " exceeds the maximum 2^40");

  Policy p{};
  p.algorithm = alg;
  p.limit = limit;
  p.period_ms = period_ms;
  p.burst = burst;
  p.period_us = period_ms * 1000;  // <= 2^40 * 1000 < 2^50
  p.capacity = windowed || burst == 0 ? limit : burst;
  if (!windowed) {
    p.interval_us = (p.period_us + limit - 1) / limit;
    // capacity * T <= 2^50, checked without overflowing (both <= 2^50).
    if (p.capacity > kMaxSpanUs / p.interval_us)
      return fail(Errc::overflow,
                  "policy: capacity x emission interval exceeds 2^50 us "
                  "(burst too large for this limit and period)");
  } else if (alg == Algorithm::sliding_window &&
             limit > kMaxWindowProduct / period_ms) {
    return fail(Errc::overflow,
                "policy: limit x period_ms exceeds 2^51 for sliding_window");
  }
  // The id keys this policy's state under a user key: the same parameters
  // give the same id in every process.
  p.name_id = 0;
  p.name_len = 0;
  p.block_us = 0;
  p.strikes = 0;
  p.strike_period_us = 0;
  p.shadow = (flags & kPolicyShadow) != 0;
  p.label = 0;
  p.id = parameter_hash(p);
  out = p;
  return Errc::ok;
}

namespace {
bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}
}  // namespace

Errc check_policy_name(std::string_view name) {
  if (name.empty())
    return fail(Errc::policy, "policy: a name must not be empty");
  if (name.size() > kMaxNameLen)
    return fail(Errc::policy, "policy: name is " + std::to_string(name.size()) +
                                  " bytes; at most " +
                                  std::to_string(kMaxNameLen));
  const char first = name[0];
  if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z')))
    return fail(Errc::policy,
                "policy: a name starts with a letter (A-Z or a-z)");
  for (size_t i = 0; i < name.size(); ++i)
    if (!is_name_char(name[i]))
      return fail(Errc::policy,
                  "policy: a name is letters, digits, '_', '.' and '-' (byte " +
                      std::to_string(i) + " is not)");
  return Errc::ok;
}

Errc set_policy_name(Policy &p, std::string_view name) {
  if (name.empty()) {
    p.name_id = 0;
    p.name_len = 0;
    p.id = policy_id(p);
    return Errc::ok;
  }
  const Errc rc = check_policy_name(name);
  if (rc != Errc::ok) return rc;
  std::memcpy(p.name, name.data(), name.size());
  p.name_len = static_cast<uint8_t>(name.size());
  // The top bit keeps a name's identity apart from the positions 1..16.
  p.name_id = hash_bytes(name, 0x6e616d65) | (uint64_t{1} << 63);
  p.id = policy_id(p);
  return Errc::ok;
}

void set_policy_shadow(Policy &p, bool shadow) noexcept {
  p.shadow = shadow;
  p.id = policy_id(p);
}

Errc set_policy_block(Policy &p, int64_t block_ms, int64_t strikes,
                      int64_t strikes_period_ms) {
  if (block_ms < 0)
    return fail(Errc::policy, "policy: block must be >= 0 ms (got " +
                                  std::to_string(block_ms) + ")");
  if (block_ms > kMaxPeriodMs)
    return fail(Errc::overflow, "policy: block " + std::to_string(block_ms) +
                                    " ms exceeds the maximum 2^40 ms");
  if (strikes < 0 || strikes_period_ms < 0)
    return fail(Errc::policy, "policy: strikes and their period must be >= 0");
  if (strikes > kMaxLimit || strikes_period_ms > kMaxPeriodMs)
    return fail(Errc::overflow,
                "policy: strikes and their period must be at most 2^40");
  if (strikes != 0 && block_ms == 0)
    return fail(Errc::policy,
                "policy: strikes need a block duration (block=...): they "
                "say after how many denials the block starts");
  if ((strikes == 0) != (strikes_period_ms == 0))
    return fail(Errc::policy,
                "policy: strikes need their period and a period its strikes "
                "(as in strikes=5/h)");
  p.block_us = block_ms * 1000;
  p.strikes = strikes;
  p.strike_period_us = strikes_period_ms * 1000;
  p.id = policy_id(p);
  return Errc::ok;
}

// ---- Text syntax ------------------------------------------------------------
//
//   policy = ws limit ws ("/" | "per") ws period { sep option } ws
//   period = [number ws] unit      ("100/h" is 100 per 1 h)
//   number = digits ["." digits] | "." digits
//   unit   = ms | millisecond[s] | s | sec | second[s] | m | min | minute[s]
//          | h | hour[s] | d | day[s]
//   option = "burst" ws "=" ws digits | "name" ws "=" ws name
//          | "block" ws "=" ws period | "strikes" ws "=" ws digits "/" period
//          | ["algorithm" ws "=" ws] algorithm | "shadow"
//   name   = letter { letter | digit | "_" | "." | "-" }  (at most 32)
//   sep    = ws | ws "," ws
// The period alone (rl_period_parse) needs its number: "ws number ws unit
// ws". Decimals are exact: a fraction must come to whole milliseconds.

namespace {

struct Cursor {
  std::string_view text;
  size_t pos = 0;

  bool at_end() const { return pos >= text.size(); }
  char peek() const { return at_end() ? '\0' : text[pos]; }
  void skip_space() {
    while (!at_end() && (text[pos] == ' ' || text[pos] == '\t')) ++pos;
  }
  std::string_view take_while(bool (*pred)(char)) {
    const size_t start = pos;
    while (!at_end() && pred(text[pos])) ++pos;
    return text.substr(start, pos - start);
  }
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_number_char(char c) {
  return is_digit(c) || c == '.';
}
bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

Errc fail_at(size_t &error_offset, size_t where, Errc code,
             const std::string &message) {
  error_offset = where;
  return fail(code, message + " (at byte " + std::to_string(where) + ")");
}

int64_t unit_ms(std::string_view unit) {
  static const struct {
    const char *name;
    int64_t ms;
  } kUnits[] = {
      {"ms", 1},         {"millisecond", 1}, {"milliseconds", 1},
      {"s", 1000},       {"sec", 1000},      {"second", 1000},
      {"seconds", 1000}, {"m", 60000},       {"min", 60000},
      {"minute", 60000}, {"minutes", 60000}, {"h", 3600000},
      {"hour", 3600000}, {"hours", 3600000}, {"d", 86400000},
      {"day", 86400000}, {"days", 86400000},
  };
  for (const auto &u : kUnits)
    if (unit == u.name) return u.ms;
  return 0;
}

// Parses [number ws] unit at the cursor. `number_required`: the period
// alone needs its number; after "/" it may be left out ("100/h").
Errc parse_period_at(Cursor &c, bool number_required, int64_t &period_ms,
                     size_t &error_offset) {
  const size_t start = c.pos;
  const std::string_view number = c.take_while(is_number_char);
  const bool has_digit =
      number.find_first_of("0123456789") != std::string_view::npos;
  if (!number.empty() && (!has_digit || number.find('.') != number.rfind('.')))
    return fail_at(error_offset, start, Errc::policy,
                   "period: malformed number '" + std::string(number) + "'");
  if (number.empty() && number_required)
    return fail_at(error_offset, start, Errc::policy,
                   "period: expected a number and a unit, such as \"500ms\", "
                   "\"1s\", \"1.5s\", \"15m\", \"1h\" or \"1d\"");
  c.skip_space();
  const size_t unit_start = c.pos;
  const std::string_view unit = c.take_while(is_word_char);
  if (unit.empty())
    return fail_at(error_offset, unit_start, Errc::policy,
                   "period: expected a unit (ms, s, m, h or d)");
  const int64_t ums = unit_ms(unit);
  if (ums == 0)
    return fail_at(error_offset, unit_start, Errc::policy,
                   "period: unknown unit '" + std::string(unit) +
                       "' (expected ms, s, m, h or d, or millisecond(s), "
                       "second(s), minute(s), hour(s), day(s))");
  // Exact decimal arithmetic: whole part and fraction, no float rounding.
  const size_t dot = number.find('.');
  const std::string_view whole =
      number.empty() ? std::string_view("1") : number.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos
                              ? std::string_view()
                              : number.substr(dot + 1);
  while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
  // 10^k divides f * unit only for k <= 10 once f has no trailing zero
  // (unit <= 86400000 = 2^10 * 3^3 * 5^5), so a longer fraction is never
  // whole milliseconds, and a shorter one cannot overflow below.
  if (frac.size() > 10)
    return fail_at(error_offset, start, Errc::policy,
                   "period: '" +
                       std::string(c.text.substr(start, c.pos - start)) +
                       "' is not a whole number of milliseconds");
  int64_t ms = 0;
  for (char d : whole) {
    ms = ms * 10 + (d - '0');
    if (ms > kMaxPeriodMs)
      return fail_at(error_offset, start, Errc::overflow,
                     "period: exceeds the maximum 2^40 ms");
  }
  if (ms > kMaxPeriodMs / ums)
    return fail_at(error_offset, start, Errc::overflow,
                   "period: exceeds the maximum 2^40 ms");
  ms *= ums;
  int64_t scale = 1;
  int64_t frac_value = 0;
  for (char d : frac) {
    scale *= 10;
    frac_value = frac_value * 10 + (d - '0');
  }
  if (frac_value != 0) {
    // frac_value < 10^10 and ums < 2^27: no overflow.
    if ((frac_value * ums) % scale != 0)
      return fail_at(error_offset, start, Errc::policy,
                     "period: '" +
                         std::string(c.text.substr(start, c.pos - start)) +
                         "' is not a whole number of milliseconds");
    ms += frac_value * ums / scale;
  }
  if (ms > kMaxPeriodMs)
    return fail_at(error_offset, start, Errc::overflow,
                   "period: exceeds the maximum 2^40 ms");
  if (ms < 1)
    return fail_at(error_offset, start, Errc::policy,
                   "period: must be at least 1 ms");
  period_ms = ms;
  return Errc::ok;
}

// A decimal integer at the cursor, 1 .. kMaxLimit.
Errc parse_count(Cursor &c, const char *what, int64_t &out,
                 size_t &error_offset) {
  const size_t start = c.pos;
  const std::string_view digits = c.take_while(is_digit);
  if (digits.empty())
    return fail_at(error_offset, start, Errc::policy,
                   std::string(what) + ": expected a whole number");
  int64_t v = 0;
  for (char d : digits) {
    v = v * 10 + (d - '0');
    if (v > kMaxLimit)
      return fail_at(error_offset, start, Errc::overflow,
                     std::string(what) + ": exceeds the maximum 2^40");
  }
  if (v < 1)
    return fail_at(error_offset, start, Errc::policy,
                   std::string(what) + ": must be >= 1");
  out = v;
  return Errc::ok;
}

int32_t algorithm_code(std::string_view name) {
  for (int32_t i = 0; i <= 3; ++i)
    if (name == algorithm_name(static_cast<Algorithm>(i))) return i;
  return -1;
}

}  // namespace

Errc parse_period(std::string_view text, int64_t &period_ms,
                  size_t &error_offset) {
  Cursor c{text};
  c.skip_space();
  Errc rc = parse_period_at(c, true, period_ms, error_offset);
  if (rc != Errc::ok) return rc;
  c.skip_space();
  if (!c.at_end())
    return fail_at(error_offset, c.pos, Errc::policy,
                   "period: unexpected text after the unit");
  return Errc::ok;
}

Errc parse_policy(std::string_view text, Policy &out, PolicyFields &fields,
                  size_t &error_offset) {
  Cursor c{text};
  PolicyFields f;
  c.skip_space();
  Errc rc = parse_count(c, "limit", f.limit, error_offset);
  if (rc != Errc::ok) return rc;
  c.skip_space();
  const size_t sep = c.pos;
  if (c.peek() == '/') {
    ++c.pos;
  } else if (c.text.substr(c.pos, 3) == "per" &&
             !is_word_char(c.pos + 3 < c.text.size() ? c.text[c.pos + 3]
                                                     : '\0')) {
    c.pos += 3;
  } else {
    return fail_at(error_offset, sep, Errc::policy,
                   "policy: expected '/' or 'per' after the limit, as in "
                   "\"100/h\" or \"100 per 15m\"");
  }
  c.skip_space();
  rc = parse_period_at(c, false, f.period_ms, error_offset);
  if (rc != Errc::ok) return rc;
  bool seen_algorithm = false;
  bool seen_burst = false;
  size_t burst_at = 0;
  size_t label_at = 0;
  size_t block_at = 0;
  size_t strikes_at = 0;
  for (;;) {
    const size_t before = c.pos;
    c.skip_space();
    if (c.peek() == ',') {
      ++c.pos;
      c.skip_space();
      if (c.at_end())
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected an option after ','");
    } else if (c.at_end()) {
      break;
    } else if (c.pos == before) {
      return fail_at(error_offset, c.pos, Errc::policy,
                     "policy: expected a space or ',' before an option");
    }
    const size_t word_at = c.pos;
    const std::string_view word = c.take_while(is_word_char);
    if (word.empty())
      return fail_at(
          error_offset, word_at, Errc::policy,
          "policy: unexpected character '" + std::string(1, c.peek()) + "'");
    // "name = value" may have spaces around '='; a bare name may not eat
    // the space that separates it from the next option.
    const size_t after_word = c.pos;
    c.skip_space();
    const bool assigned = c.peek() == '=';
    if (assigned) {
      ++c.pos;
      c.skip_space();
    } else {
      c.pos = after_word;
    }
    if (word == "burst") {
      if (!assigned)
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected '=' after burst, as in burst=20");
      if (seen_burst)
        return fail_at(error_offset, word_at, Errc::policy,
                       "policy: burst given twice");
      seen_burst = true;
      burst_at = word_at;
      rc = parse_count(c, "burst", f.burst, error_offset);
      if (rc != Errc::ok) return rc;
      continue;
    }
    if (word == "name") {
      if (!assigned)
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected '=' after name, as in name=daily");
      if (!f.name.empty())
        return fail_at(error_offset, word_at, Errc::policy,
                       "policy: name given twice");
      label_at = c.pos;
      f.name = c.take_while(is_name_char);
      if (f.name.empty())
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected a name after 'name=', as in "
                       "name=daily");
      continue;
    }
    if (word == "block") {
      if (!assigned)
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected '=' after block, as in block=15m");
      if (f.block_ms != 0)
        return fail_at(error_offset, word_at, Errc::policy,
                       "policy: block given twice");
      block_at = word_at;
      rc = parse_period_at(c, true, f.block_ms, error_offset);
      if (rc != Errc::ok) return rc;
      continue;
    }
    if (word == "strikes") {
      if (!assigned)
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected '=' after strikes, as in "
                       "strikes=5/h");
      if (f.strikes != 0)
        return fail_at(error_offset, word_at, Errc::policy,
                       "policy: strikes given twice");
      strikes_at = word_at;
      rc = parse_count(c, "strikes", f.strikes, error_offset);
      if (rc != Errc::ok) return rc;
      if (c.peek() != '/')
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected '/' and a period after the strikes, "
                       "as in strikes=5/h");
      ++c.pos;
      rc = parse_period_at(c, false, f.strikes_period_ms, error_offset);
      if (rc != Errc::ok) return rc;
      continue;
    }
    if (word == "shadow" && !assigned) {
      if (f.shadow)
        return fail_at(error_offset, word_at, Errc::policy,
                       "policy: shadow given twice");
      f.shadow = true;
      continue;
    }
    size_t name_at = word_at;
    std::string_view name = word;
    if (word == "algorithm") {
      if (!assigned)
        return fail_at(error_offset, c.pos, Errc::policy,
                       "policy: expected '=' after algorithm");
      name_at = c.pos;
      name = c.take_while(is_word_char);
    } else if (assigned) {
      return fail_at(error_offset, word_at, Errc::policy,
                     "policy: unknown option '" + std::string(word) +
                         "' (expected burst, name, block, strikes, shadow "
                         "or algorithm)");
    }
    const int32_t alg = algorithm_code(name);
    if (alg < 0)
      return fail_at(error_offset, name_at, Errc::policy,
                     "policy: unknown algorithm '" + std::string(name) +
                         "' (expected gcra, token_bucket, fixed_window or "
                         "sliding_window)");
    if (seen_algorithm)
      return fail_at(error_offset, word_at, Errc::policy,
                     "policy: algorithm given twice");
    seen_algorithm = true;
    f.algorithm = alg;
  }
  rc = make_policy(f.algorithm, f.limit, f.period_ms, f.burst,
                   f.shadow ? kPolicyShadow : 0, out);
  if (rc != Errc::ok) {
    error_offset = seen_burst ? burst_at : 0;
    return fail(rc, std::string(last_error_message()) + " (at byte " +
                        std::to_string(error_offset) + ")");
  }
  rc = set_policy_name(out, f.name);
  if (rc != Errc::ok) {
    error_offset = label_at;
    return fail(rc, std::string(last_error_message()) + " (at byte " +
                        std::to_string(error_offset) + ")");
  }
  rc = set_policy_block(out, f.block_ms, f.strikes, f.strikes_period_ms);
  if (rc != Errc::ok) {
    error_offset = f.strikes != 0 ? strikes_at : block_at;
    return fail(rc, std::string(last_error_message()) + " (at byte " +
                        std::to_string(error_offset) + ")");
  }
  fields = f;
  return Errc::ok;
}

}  // namespace tollgate
