-- Clock (production): the Redis server's own TIME, never the caller's, so
-- clock skew between application servers cannot over-admit. TIME inside a
-- script needs effects replication: the default since Redis 5; Redis 3.2-4
-- must ask for it before the first write.
if redis.replicate_commands then redis.replicate_commands() end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Smallest TTL written, in ms.
local TTL_FLOOR_MS = 1
