-- TIME inside a script needs effects replication: the default since Redis
-- 5; Redis 3.2-4 must ask for it before the first write. (Functions, Redis
-- 7, always replicate effects: the library has no such line.)
if redis.replicate_commands then redis.replicate_commands() end

