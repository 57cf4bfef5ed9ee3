-- Concurrency leases (docs/leases.md). KEYS[1] = the key's leases, a sorted
-- set "<prefix>v2:{<key>}:!l": member the lease id, score the time (us,
-- the server's clock) it ends. ARGV = op ("a" acquire, "r" renew, "x"
-- release), the pinned time, the lease id, max_in_flight, ttl (us). Every
-- op first drops the leases that have ended. The set expires when its last
-- lease ends. Replies:
--   a: {1, held} acquired; {0, held, until_earliest_ends_us} denied
--   r: 1 renewed, 0 not held (ended or released)
--   x: 1 was held, 0 was not
local op, id = ARGV[1], ARGV[3]
local max, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if #KEYS ~= 1 or #ARGV ~= 5 or not id or not max or not ttl or
    (op ~= 'a' and op ~= 'r' and op ~= 'x') then
  return redis.error_reply('ERR tollgate: expected 1 key and 5 arguments')
end
local key = KEYS[1]
local now = now_us()
call('ZREMRANGEBYSCORE', key, '-inf', fmt('%d', now))

-- Keeps the set until its last lease ends.
local function keep()
  local last = call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then call('PEXPIRE', key, ttl_until(tonumber(last[2]), now)) end
end

if op == 'x' then return call('ZREM', key, id) end
if op == 'r' then
  if not call('ZSCORE', key, id) then return 0 end
  call('ZADD', key, fmt('%d', now + ttl), id)
  keep()
  return 1
end
local held = call('ZCARD', key)
if held >= max then
  local first = call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, held, tonumber(first[2]) - now}
end
call('ZADD', key, fmt('%d', now + ttl), id)
keep()
return {1, held + 1}
