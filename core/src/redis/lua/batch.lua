-- Checks joined into one call by the transport (docs/redis.md, "Joined
-- checks"). ARGV[1] = P, the number of distinct policies; then the pinned
-- time; ARGV[3 .. 2 + 5P] = the policies, five values each as in multi;
-- then per check: n, cost and the numbers (1..P) of its n policies.
-- KEYS = every check's n keys, in order. The checks run one after another,
-- each exactly as the multi script runs it. Reply: flat, per check
-- all_allowed then per policy allowed, remaining, reset_after_us,
-- retry_after_us (1 + 4n integers).
local P = tonumber(ARGV[1])
local bad = 'ERR tollgate: malformed batch'
if not P or P < 1 or #ARGV < 2 + 5 * P then return redis.error_reply(bad) end
local pols = {}
for i = 1, P do
  pols[i] = read_policy(3 + (i - 1) * 5)
  if not pols[i] then return redis.error_reply(bad) end
end
-- Every check is well formed before the first one runs.
local j, k = 3 + 5 * P, 0
while j <= #ARGV do
  local n, cost = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  if not n or not cost or n < 1 or j + 1 + n > #ARGV then
    return redis.error_reply(bad)
  end
  for i = 1, n do
    if not pols[tonumber(ARGV[j + 1 + i])] then return redis.error_reply(bad) end
  end
  j, k = j + 2 + n, k + n
end
if k ~= #KEYS then return redis.error_reply(bad) end
local now = now_us()
local reply = {}
local r = 0
j, k = 3 + 5 * P, 0
while j <= #ARGV do
  local n = tonumber(ARGV[j])
  r = run_check(k, n, tonumber(ARGV[j + 1]), pols, j + 1, now, reply, r)
  j, k = j + 2 + n, k + n
end
return reply
