-- Clock (PINNED, test builds only): the time in us comes from ARGV[2] so
-- the shared vectors can be replayed. Never shipped in a production build.
local function now_us()
  return tonumber(ARGV[2])
end

-- Smallest TTL written, in ms. Redis expires keys on its real clock while a
-- pinned test's clock stands still or jumps, so a short TTL could vanish
-- between two steps that the test sees as the same instant. State kept past
-- its expiry decides exactly like a missing key (docs/algorithms.md), so a
-- longer TTL changes no decision.
local TTL_FLOOR_MS = 60000
