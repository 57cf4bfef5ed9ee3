-- rl_block: KEYS[1] = the key's block hash; ARGV = the duration in us,
-- then the pinned time. The block replaces any in place (it may
-- shorten one); strike counts stay. Reply: the block's end (us).
local d = tonumber(ARGV[1])
if #KEYS ~= 1 or #ARGV ~= 2 or not d or d < 1 then
  return redis.error_reply('ERR tollgate: expected 1 key and 2 arguments')
end
local now = now_us()
local till = now + d
call('HSET', KEYS[1], 'u', fmt('%d', till))
keep_until(KEYS[1], till, now)
return till
