-- The batch script on a Redis Cluster node (called with no declared keys:
-- Redis refuses declared keys of several slots in one call, even from a
-- script flagged allow-cross-slot-keys). ARGV ends with the K keys, then
-- K. Each check runs guarded: Redis fails the first access to a key the
-- node does not serve, and only that check is given back.
local function batch_keys()
  local K = tonumber(ARGV[#ARGV])
  if not K or K < 1 or K > #ARGV - 1 then return nil, 0, true end
  local keys = {}
  local first = #ARGV - K
  for i = 1, K do keys[i] = ARGV[first + i - 1] end
  return keys, first - 1, true
end
