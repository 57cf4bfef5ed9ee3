-- Several keys in one decision (rl_check_keys; docs/redis.md, "Several
-- keys"): KEYS = the state keys of every pair, pair by pair (one cluster
-- slot); ARGV = cost, pinned time, m (the number of pairs), the policy
-- count of each of the m pairs, then POLICY_ARGS values per policy in the
-- order of KEYS. All or nothing over every pair: each pair is evaluated,
-- then every state is written only if every policy of every pair allows
-- (a refund: each pair gives back what it can). Reply: {all_allowed, then
-- per policy, over every pair: allowed, remaining, reset_after_us,
-- retry_after_us}, the multi script's layout.
local cost = tonumber(ARGV[1])
local m = tonumber(ARGV[3])
local bad = 'ERR tollgate: malformed call of several keys'
if not cost or not m or m < 1 or #ARGV < 3 + m then
  return redis.error_reply(bad)
end
local counts, total = {}, 0
for j = 1, m do
  counts[j] = tonumber(ARGV[3 + j])
  if not counts[j] or counts[j] < 1 then return redis.error_reply(bad) end
  total = total + counts[j]
end
if total ~= #KEYS or #ARGV ~= 3 + m + POLICY_ARGS * total then
  return redis.error_reply(bad)
end
local pols = {}
for i = 1, total do
  pols[i] = read_policy(4 + m + (i - 1) * POLICY_ARGS)
  if not pols[i] then return redis.error_reply(bad) end
end
local now = now_us()
local reply = {}
local evs, slices = {}, {}
local all = 1
local k = 0
for j = 1, m do
  local slice = {}
  for i = 1, counts[j] do slice[i] = pols[k + i] end
  slices[j] = slice
  evs[j] = evaluate_check(KEYS, k, counts[j], cost, slice, nil, now, reply,
    1 + 4 * k)
  if evs[j].all == 0 then all = 0 end
  k = k + counts[j]
end
local any = false
k = 0
for j = 1, m do
  if commit_check(KEYS, k, counts[j], cost, slices[j], nil, now, reply,
      1 + 4 * k, evs[j], all) then
    any = true
  end
  k = k + counts[j]
end
if cost < 0 then
  reply[1] = any and 1 or 0
else
  reply[1] = all
end
return reply
