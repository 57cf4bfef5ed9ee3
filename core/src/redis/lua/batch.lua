-- Checks joined into one call by the transport (docs/redis.md, "Joined
-- checks"). ARGV[1] = P, the number of distinct policies; then the pinned
-- time; ARGV[3 .. 2 + 9P] = the policies, POLICY_ARGS values each as in
-- multi; then per check: n, cost and the numbers (1..P) of its n policies.
-- The keys, every check's n in order, come from batch_keys (KEYS, or on a
-- cluster node the end of ARGV). The checks run one after another, each
-- exactly as the multi script runs it. Reply: flat, per check all_allowed
-- then per policy allowed, remaining, reset_after_us, retry_after_us
-- (1 + 4n integers). On a cluster node a check whose keys the node does not
-- serve (a slot that moved, or is moving) is not run: all_allowed -1 and
-- 4n zeros, and the caller sends it again alone.
local keys, last, guarded = batch_keys()
local P = tonumber(ARGV[1])
local bad = 'ERR tollgate: malformed batch'
if not keys or not P or P < 1 or last < 2 + POLICY_ARGS * P then
  return redis.error_reply(bad)
end
local pols = {}
for i = 1, P do
  pols[i] = read_policy(3 + (i - 1) * POLICY_ARGS)
  if not pols[i] then return redis.error_reply(bad) end
end
-- Every check is well formed before the first one runs.
local j, k = 3 + POLICY_ARGS * P, 0
while j <= last do
  local n, cost = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  if not n or not cost or n < 1 or j + 1 + n > last then
    return redis.error_reply(bad)
  end
  for i = 1, n do
    if not pols[tonumber(ARGV[j + 1 + i])] then return redis.error_reply(bad) end
  end
  j, k = j + 2 + n, k + n
end
if k ~= #keys then return redis.error_reply(bad) end
local now = now_us()
local reply = {}
local r = 0
j, k = 3 + POLICY_ARGS * P, 0
while j <= last do
  local n, cost = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  if guarded then
    -- A key this node does not serve fails its first GET, before the
    -- check writes anything (a check's keys share one slot).
    local ok, after = pcall(run_check, keys, k, n, cost, pols, j + 1, now,
      reply, r)
    if ok then
      r = after
    else
      reply[r + 1] = -1
      for i = r + 2, r + 1 + 4 * n do reply[i] = 0 end
      r = r + 1 + 4 * n
    end
  else
    r = run_check(keys, k, n, cost, pols, j + 1, now, reply, r)
  end
  j, k = j + 2 + n, k + n
end
return reply
