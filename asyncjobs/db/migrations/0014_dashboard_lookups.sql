-- The dashboard's lookup by unique key (issue 13): without it, it reads the whole table.
-- unique_key is set at enqueue and never changed, so a job's start and finish stay HOT
-- updates, and only jobs that have a key pay for an entry (measured in
-- benchmarks/README.md). No index on state (its updates would stop being HOT), none on
-- the arguments: GIN indexes on args and kwargs cost a batch enqueue 10-40% (measured),
-- so the dashboard searches arguments in a bounded stretch of the newest jobs instead.
CREATE INDEX jobs_unique_key_idx ON {schema}.jobs (unique_key) WHERE unique_key IS NOT NULL;

-- unfinished_jobs: every job not yet finished (queued, scheduled, processing, awaiting),
-- found without a scan of `jobs` (no index on state: one would slow every start and
-- finish, and finished jobs may be millions): from the queue rows (queued, scheduled, and
-- processing under a claim; a row whose job has moved on is stale and left out), the
-- handed-off jobs' partial index, and job_parents for those awaiting their parents, each
-- joined to its job by primary key. Read by list_queues and queue_stats.
CREATE VIEW {schema}.unfinished_jobs AS
    SELECT j.id, j.queue, j.run_at, j.state
      FROM {schema}.queue AS q
      JOIN {schema}.jobs AS j ON j.id = q.job_id AND j.queue_entry = q.id
     WHERE j.state IN ('queued', 'scheduled', 'processing')
     UNION
    SELECT j.id, j.queue, j.run_at, j.state
      FROM {schema}.jobs AS j
     WHERE j.lease IS NOT NULL AND j.state = 'processing'
     UNION
    SELECT j.id, j.queue, j.run_at, j.state
      FROM {schema}.jobs AS j
     WHERE j.id IN (SELECT job_id FROM {schema}.job_parents) AND j.state = 'awaiting';
