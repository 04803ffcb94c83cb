-- The dashboard's lookup by unique key (migration 14) as a hash index. A btree entry holds
-- the whole key, and keys are often random (a request id, a uuid), so each keyed enqueue
-- dirtied a random leaf of a wide index: a batch of keyed enqueues cost 6-17% more with
-- it. A hash index entry is the key's 4-byte hash, and the lookup is by equality only;
-- the cost fell within noise (benchmarks/README.md, enqueue_index_cost).
DROP INDEX {schema}.jobs_unique_key_idx;
CREATE INDEX jobs_unique_key_idx ON {schema}.jobs USING hash (unique_key)
    WHERE unique_key IS NOT NULL;
