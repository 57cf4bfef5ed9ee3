-- Token bucket (docs/algorithms.md): state "<full_at>", the time the
-- bucket is full again. Whole tokens refill every T and the time towards
-- the next one is kept; counted that way the bucket makes GCRA's decisions
-- with tat = full_at, so it is GCRA's function.
local token_bucket = gcra
