-- Blocks (docs/algorithms.md, "Blocks"). A key's block lives in the hash
-- "<prefix>v2:{<key>}:!", next to its states: field u, the time (us) the
-- key is blocked until; field e, the time the hash stops mattering (its
-- TTL follows it); field "s<id>", the strike count "<window> <count>" of
-- the policy whose state key ends in "}<id>". ("until" is a Lua keyword:
-- the times are called `till`.)
--
-- The hash is not a declared key: a check declares only its states, so on
-- a cluster a slot that is migrating routes (and ASKs) by them alone, as
-- before blocks existed, and a check of new keys is not held up by
-- TRYAGAIN for a block hash that does not exist. It is named after the
-- states (same slot) and reached with pcall: a node that cannot serve it
-- (the hash already moved with its slot) reads no block and counts no
-- strike, and the check goes on.

-- The block hash of the check whose first state key is `skey`: the state
-- keys are "<prefix>v2:{<key>}" then an identity that holds no '}' (a key
-- named otherwise, by another client, gets its own name with ':!').
local function block_key(skey)
  return (match(skey, '^(.*})[^}]*$') or skey) .. ':!'
end

-- redis.pcall: nil when this cluster node cannot serve the hash (its slot
-- moved on, or the cluster is down); any other error (a refused command, a
-- hash of the wrong type) is raised, as redis.call would.
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

-- The time the key is blocked until, if after now; else 0.
local function blocked_until(bkey, now)
  local u = tonumber(bcall('HGET', bkey, 'u'))
  if u and u > now then return u end
  return 0
end

-- Keeps the hash at least until `at` (us).
local function keep_until(bkey, at, now)
  local e = tonumber(bcall('HGET', bkey, 'e'))
  if e and e >= at then return end
  bcall('HSET', bkey, 'e', fmt('%d', at))
  local ttl = -idiv(now - at, 1000)
  if ttl < TTL_FLOOR_MS then ttl = TTL_FLOOR_MS end
  bcall('PEXPIRE', bkey, fmt('%d', ttl))
end

-- One denial under policy p (p[6] block_us, p[7] strikes, p[8] the strike
-- window in us) whose state key is `skey`: the time the key is now blocked
-- until by it, or 0 if the strikes are not all in yet.
local function strike(bkey, skey, p, now)
  if p[7] <= 1 then return now + p[6] end
  local T = p[8]
  local w = idiv(now, T)
  local field = 's' .. match(skey, '}([^}]*)$')
  local count = 0
  local sw, sc = match(bcall('HGET', bkey, field) or '', '^(%d+) (%d+)$')
  if sw and tonumber(sw) == w then count = tonumber(sc) end
  count = count + 1
  local till = 0
  if count >= p[7] then count, till = 0, now + p[6] end
  if not bcall('HSET', bkey, field, fmt('%d %d', w, count)) then return 0 end
  keep_until(bkey, (w + 1) * T, now)
  return till
end

-- Blocks the key until `till`, or longer if a longer block is in place;
-- returns the block's end (0 if the hash cannot be written here).
local function set_block(bkey, till, now)
  local u = tonumber(bcall('HGET', bkey, 'u'))
  if u and u > till then till = u end
  if not bcall('HSET', bkey, 'u', fmt('%d', till)) then return 0 end
  keep_until(bkey, till, now)
  return till
end
