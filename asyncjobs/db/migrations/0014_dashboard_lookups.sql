-- The dashboard's lookup by unique key (issue 13): without it, it reads the whole table.
-- unique_key is set at enqueue and never changed, so a job's start and finish stay HOT
-- updates, and only jobs that have a key pay for an entry (measured in
-- benchmarks/README.md). No index on state (its updates would stop being HOT), none on
-- the arguments: GIN indexes on args and kwargs cost a batch enqueue 10-40% (measured),
-- so the dashboard searches arguments in a bounded stretch of the newest jobs instead.
CREATE INDEX jobs_unique_key_idx ON {schema}.jobs (unique_key) WHERE unique_key IS NOT NULL;
