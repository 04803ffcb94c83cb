-- The dashboard's own reads, by name (the same format as asyncjobs/db/queries.sql).
-- Its actions are the client's statements.

-- name: table_size
-- The planner's estimate of the number of jobs (no scan): whether to read all or a sample.
SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = '{schema}.jobs'::regclass;

-- name: state_counts
-- Jobs by queue and state, from a sample of $1 percent of the table's pages (100: exact),
-- scaled up: with a million jobs an exact count reads them all.
SELECT queue, state, round(count(*) * 100.0 / $1::float8)::bigint AS n
  FROM {schema}.jobs TABLESAMPLE SYSTEM ($1::float8) REPEATABLE (0)
 GROUP BY queue, state
 ORDER BY queue, state;

-- name: window_stats
-- Per window ('hour', 'day', 'week'): jobs finished, failed, cancelled, and wait and run
-- time percentiles (seconds) of those that ran, from a sample of $1 percent of the pages
-- (counts scaled up). Wait: from due (or created) to started. Each window aggregates the
-- sample on its own (LATERAL): joining the windows to the sample and grouping sorted every
-- row once more.
WITH sample AS MATERIALIZED (
    SELECT state, finished_at,
           extract(epoch FROM started_at - greatest(run_at, created_at)) AS wait,
           extract(epoch FROM finished_at - started_at) AS run
      FROM {schema}.jobs TABLESAMPLE SYSTEM ($1::float8) REPEATABLE (0)
     WHERE finished_at >= now() - interval '7 days'
       AND state IN ('succeeded', 'failed', 'cancelled')
)
SELECT w.name, a.succeeded, a.failed, a.cancelled, a.wait, a.run
  FROM (VALUES (1, 'hour', interval '1 hour'), (2, 'day', interval '1 day'),
               (3, 'week', interval '7 days')) AS w(n, name, span),
       LATERAL (
           SELECT round(count(*) FILTER (WHERE j.state = 'succeeded') * 100.0
                        / $1::float8)::bigint AS succeeded,
                  round(count(*) FILTER (WHERE j.state = 'failed') * 100.0
                        / $1::float8)::bigint AS failed,
                  round(count(*) FILTER (WHERE j.state = 'cancelled') * 100.0
                        / $1::float8)::bigint AS cancelled,
                  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY j.wait)
                      FILTER (WHERE j.wait IS NOT NULL) AS wait,
                  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY j.run)
                      FILTER (WHERE j.run IS NOT NULL) AS run
             FROM sample AS j
            WHERE j.finished_at >= now() - w.span) AS a
 ORDER BY w.n;

-- name: throughput
-- Jobs finished per 5-minute bucket over the last hour: (bucket 0-11, succeeded, failed),
-- from a sample of $1 percent of the pages, scaled up.
WITH sample AS MATERIALIZED (
    SELECT state, finished_at
      FROM {schema}.jobs TABLESAMPLE SYSTEM ($1::float8) REPEATABLE (0)
     WHERE finished_at >= now() - interval '1 hour' AND state IN ('succeeded', 'failed')
)
SELECT b AS bucket,
       round(count(j.state) FILTER (WHERE j.state = 'succeeded') * 100.0 / $1::float8)::bigint
           AS succeeded,
       round(count(j.state) FILTER (WHERE j.state = 'failed') * 100.0 / $1::float8)::bigint
           AS failed
  FROM generate_series(0, 11) AS b
  LEFT JOIN sample AS j
         ON floor(extract(epoch FROM j.finished_at - (now() - interval '1 hour')) / 300) = b
 GROUP BY b
 ORDER BY b;

-- name: custom_plans
-- For the transaction of a jobs page: its statements take each filter as "NULL or equal",
-- and only a plan made for the values given drops the filters not used and reaches the
-- index of the one used (the unique key's). A prepared statement may switch to a generic
-- plan after five runs, which reads the table.
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: newest_job_id
-- The highest job id (0: none), where the scan of a filter without an index starts.
SELECT coalesce(max(id), 0) FROM {schema}.jobs;

-- name: list_jobs
-- Parameters: $1 state, $2 task, $3 queue, $4 id, $5 unique_key, $6 args (JSON contained
-- in the positional arguments, or for an object in the keyword ones), $7 before (keyset:
-- ids below it), $8 after (ids above it: the end of a bounded scan), $9 limit. NULL: no
-- filter. Newest first.
SELECT id, task, queue, state, attempt, max_attempts, created_at, started_at, finished_at,
       run_at, progress, worker_id
  FROM {schema}.jobs
 WHERE ($1::text IS NULL OR state = $1)
   AND ($2::text IS NULL OR task = $2)
   AND ($3::text IS NULL OR queue = $3)
   AND ($4::bigint IS NULL OR id = $4)
   AND ($5::text IS NULL OR unique_key = $5)
   AND ($6::text IS NULL OR args @> $6::text::jsonb OR kwargs @> $6::text::jsonb)
   AND ($7::bigint IS NULL OR id < $7)
   AND ($8::bigint IS NULL OR id > $8)
 ORDER BY id DESC
 LIMIT $9;

-- name: count_jobs
-- How many jobs list_jobs' filters ($1-$6) match between ids $7 and $8 (as there; NULL: no
-- bound), counted up to $9 (more: "$9 or more"), for the page and a bulk action's
-- confirmation: an exact count of a million reads them all.
SELECT count(*)
  FROM (SELECT 1
          FROM {schema}.jobs
         WHERE ($1::text IS NULL OR state = $1)
           AND ($2::text IS NULL OR task = $2)
           AND ($3::text IS NULL OR queue = $3)
           AND ($4::bigint IS NULL OR id = $4)
           AND ($5::text IS NULL OR unique_key = $5)
           AND ($6::text IS NULL OR args @> $6::text::jsonb OR kwargs @> $6::text::jsonb)
           AND ($7::bigint IS NULL OR id < $7)
           AND ($8::bigint IS NULL OR id > $8)
         LIMIT $9) AS matching;

-- name: matching_ids
-- The ids list_jobs' filters ($1-$6) match between ids $7 and $8 (as there), at most $9,
-- for a bulk action on a filter.
SELECT id
  FROM {schema}.jobs
 WHERE ($1::text IS NULL OR state = $1)
   AND ($2::text IS NULL OR task = $2)
   AND ($3::text IS NULL OR queue = $3)
   AND ($4::bigint IS NULL OR id = $4)
   AND ($5::text IS NULL OR unique_key = $5)
   AND ($6::text IS NULL OR args @> $6::text::jsonb OR kwargs @> $6::text::jsonb)
   AND ($7::bigint IS NULL OR id < $7)
   AND ($8::bigint IS NULL OR id > $8)
 ORDER BY id
 LIMIT $9;

-- name: children
-- The jobs that run after job $1: only looked for when it has any (has_children), and
-- among the jobs made after it (a child is enqueued after its parents).
SELECT id, task, state
  FROM {schema}.jobs
 WHERE id > $1 AND parents @> ARRAY[$1::bigint]
   AND (SELECT has_children FROM {schema}.jobs WHERE id = $1)
 ORDER BY id;

-- name: relatives
-- Tasks and states of the jobs $1 (a job's parents).
SELECT id, task, state FROM {schema}.jobs WHERE id = ANY($1::bigint[]) ORDER BY id;
