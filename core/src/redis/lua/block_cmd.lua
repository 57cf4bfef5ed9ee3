-- rl_block: KEYS[1] = the key's block; ARGV = the duration in us, then the
-- pinned time. The block replaces any in place (it may shorten one);
-- strike counts stay. Reply: the block's end (us).
local d = tonumber(ARGV[1])
if #KEYS ~= 1 or #ARGV ~= 2 or not d or d < 1 then
  return redis.error_reply('ERR tollgate: expected 1 key and 2 arguments')
end
local now = now_us()
local till = now + d
call('SET', KEYS[1], fmt('%d', till), 'PX', ttl_until(till, now))
return till
