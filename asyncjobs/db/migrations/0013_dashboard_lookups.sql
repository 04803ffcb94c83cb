-- The dashboard's lookups by unique key and by arguments (issue 13): without them each
-- reads the whole table. Only columns set at enqueue and never updated, so a job's start
-- and finish stay HOT updates and these cost the enqueue alone (measured in
-- benchmarks/README.md). No index on state: its updates would stop being HOT.
-- jsonb_path_ops: smaller than the default operator class and enough for @>.
CREATE INDEX jobs_unique_key_idx ON {schema}.jobs (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX jobs_args_idx ON {schema}.jobs USING gin (args jsonb_path_ops);
CREATE INDEX jobs_kwargs_idx ON {schema}.jobs USING gin (kwargs jsonb_path_ops);
