-- Numbers in Redis Lua 5.1 are doubles. Every value below stays under 2^53
-- (docs/algorithms.md, "Bounds"), so +, - and * are exact; only division
-- rounds, and the state is formatted with %d, never tostring or `..`
-- (which use %.14g and drop digits of a 16-digit microsecond time).
local floor = math.floor
local fmt = string.format
local match = string.match
local byte = string.byte
local call = redis.call

-- Exact floor division for b > 0: a / b is rounded to the nearest double,
-- which near 2^53 can land on the next integer; correct by one either way.
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- How many windows ahead a stored window may lie and still be read as the
-- clock having stepped back (kMaxClockStepUs in algorithms.hpp: 1 h).
local function max_ahead(P)
  local n = idiv(3600000000, P)
  if n < 1 then n = 1 end
  return n
end

-- The state a check read ahead (prefetch in block.lua, one MGET with its
-- block): its key and value (false for none); nil when there is none. Set
-- by every check; any other key is read with GET.
local pre_key, pre_value

-- The stored state: decimal integers separated by single spaces. A missing
-- or malformed value is read as no state.
local function load_state(key, pattern)
  local s
  if key == pre_key then s = pre_value else s = call('GET', key) end
  if not s then return nil end
  local a, b, c = match(s, pattern)
  if not a then return nil end
  return tonumber(a), b and tonumber(b), c and tonumber(c)
end

-- Redis 7 (the first with redis.REDIS_VERSION_NUM) has SET ... KEEPTTL.
local KEEPTTL = redis.REDIS_VERSION_NUM ~= nil

-- GCRA's state expires at tat rounded up to this (us): at most a second
-- late, and the same expiry for every write within that second.
local EXPIRY_GRAIN_US = 1000000

-- Writes a state with a TTL that ends when it stops mattering:
-- max(TTL_FLOOR_MS, ceil((expires_at - now) / 1000)) ms. A GCRA or token
-- bucket state (one integer, kept inside the key's object): SET ... PX, or,
-- when `same` (the key already holds state that expires at expires_at, a
-- tat within the same second), SET ... KEEPTTL, which spares Redis taking
-- the key out of its expiry table and putting it back, about a sixth of a
-- check's cost in Redis. A window's state (text) is written with PSETEX,
-- whose value is the fourth argument: Redis reuses the argument objects of
-- a script's earlier commands for the same positions, and the value of a
-- SET (third) would be stored in the larger buffer of the block key that
-- the check's MGET passed there, 16 bytes more per key (measured with
-- MEMORY USAGE on Redis 7.0).
local function store(key, state, expires_at, now, same)
  local text = match(state, ' ')
  if same and KEEPTTL and not text then
    call('SET', key, state, 'KEEPTTL')
    return
  end
  local ttl = -idiv(now - expires_at, 1000)
  if ttl < TTL_FLOOR_MS then ttl = TTL_FLOOR_MS end
  if text then
    call('PSETEX', key, fmt('%d', ttl), state)
  else
    call('SET', key, state, 'PX', fmt('%d', ttl))
  end
end

-- Each algorithm below is
--   f(key, now, cost, limit, period_ms, capacity, interval_us)
--     -> allowed (1/0), remaining, reset_after_us, retry_after_us,
--        new_state (string, only when allowed and cost >= 1), expires_at_us,
--        same_expiry (true: the stored state already expires then)
-- It reads the key's state and writes nothing; the caller stores new_state.
