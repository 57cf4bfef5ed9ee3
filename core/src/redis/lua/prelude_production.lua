-- Clock (production): the Redis server's own TIME, never the caller's, so
-- clock skew between application servers cannot over-admit.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Smallest TTL written, in ms.
local TTL_FLOOR_MS = 1
