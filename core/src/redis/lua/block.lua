-- Blocks (docs/algorithms.md, "Blocks"). A key's block is the string
-- "<prefix>v2:{<key>}:!" next to its states: the time (us) the key is
-- blocked until, expiring then. Its strike counts are the hash
-- "<prefix>v2:{<key>}:!s": field "s<id>", the count "<window> <count>" of
-- the policy whose state key ends in "}<id>"; field e, the time the hash
-- stops mattering (its TTL follows it). ("until" is a Lua keyword: the
-- times are called `till`.)
--
-- Neither is a declared key: a check declares only its states, so on a
-- cluster a slot that is migrating routes (and ASKs) by them alone, as
-- before blocks existed, and a check of new keys is not held up by
-- TRYAGAIN for a block that does not exist. They are named after the
-- states (same slot) and reached with pcall: a node that cannot serve them
-- (the slot is moving) reads no block and counts no strike, and the check
-- goes on.

-- The block key of the check whose first state key is `skey`: the state
-- keys are "<prefix>v2:{<key>}" then an identity that holds no '}' (a key
-- named otherwise, by another client, gets its own name with ':!').
local function block_key(skey)
  -- The unnamed policy at position 0 (the usual first key) ends in '}'.
  if byte(skey, -1) == 125 then return skey .. ':!' end
  return (match(skey, '^(.*})[^}]*$') or skey) .. ':!'
end

-- redis.pcall: nil when this cluster node cannot serve the keys (their slot
-- moved on, or is moving, or the cluster is down); any other error (a
-- refused command, a key of the wrong type) is raised, as redis.call would.
local function bcall(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    if match(r.err, 'non local key') or match(r.err, 'cluster is down') then
      return nil
    end
    error(r)
  end
  return r
end

-- Reads a check's first state (keys[k + 1]) and its block in one MGET of
-- exactly two keys, keeping the state for load_state (the others are read
-- with GET: a longer MGET would leave long arguments where a later write's
-- value goes, see store). Returns the time the key is blocked until, if
-- after now; else 0. Where the node cannot serve the block (a migrating
-- slot), the state is read with GET later, and there is no block.
local function prefetch(keys, k, bkey, now)
  pre_key = nil
  local values = bcall('MGET', keys[k + 1], bkey)
  if not values then return 0 end
  pre_key, pre_value = keys[k + 1], values[1]
  local u = tonumber(values[2])
  if u and u > now then return u end
  return 0
end

-- A TTL in ms that ends at `at` (us), at least TTL_FLOOR_MS.
local function ttl_until(at, now)
  local ttl = -idiv(now - at, 1000)
  if ttl < TTL_FLOOR_MS then ttl = TTL_FLOOR_MS end
  return fmt('%d', ttl)
end

-- Keeps the strike hash at least until `at` (us).
local function keep_until(skeys, at, now)
  local e = tonumber(bcall('HGET', skeys, 'e'))
  if e and e >= at then return end
  bcall('HSET', skeys, 'e', fmt('%d', at))
  bcall('PEXPIRE', skeys, ttl_until(at, now))
end

-- One denial under policy p (p[6] block_us, p[7] strikes, p[8] the strike
-- window in us) whose state key is `skey`: the time the key is now blocked
-- until by it, or 0 if the strikes are not all in yet.
local function strike(bkey, skey, p, now)
  if p[7] <= 1 then return now + p[6] end
  local T = p[8]
  local w = idiv(now, T)
  local skeys = bkey .. 's'
  local field = 's' .. match(skey, '}([^}]*)$')
  local count = 0
  local sw, sc = match(bcall('HGET', skeys, field) or '', '^(%d+) (%d+)$')
  if sw and tonumber(sw) == w then count = tonumber(sc) end
  count = count + 1
  local till = 0
  if count >= p[7] then count, till = 0, now + p[6] end
  if not bcall('HSET', skeys, field, fmt('%d %d', w, count)) then return 0 end
  keep_until(skeys, (w + 1) * T, now)
  return till
end

-- Blocks the key until `till`, or longer if a longer block is in place;
-- returns the block's end (0 if the block cannot be written here).
local function set_block(bkey, till, now)
  local u = tonumber(bcall('GET', bkey))
  if u and u > till then till = u end
  if not bcall('SET', bkey, fmt('%d', till), 'PX', ttl_until(till, now)) then
    return 0
  end
  return till
end
