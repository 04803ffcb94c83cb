-- The dashboard's own reads, by name (the same format as asyncjobs/db/queries.sql).
-- Its actions are the client's statements.

-- name: state_counts
-- Jobs by queue and state.
SELECT queue, state, count(*) AS n
  FROM {schema}.jobs
 GROUP BY queue, state
 ORDER BY queue, state;

-- name: window_stats
-- Per window ('hour', 'day', 'week'): jobs finished, failed, and wait and run time
-- percentiles (seconds) of those that ran. Wait: from due (or created) to started.
SELECT w.name,
       count(j.id) FILTER (WHERE j.state = 'succeeded') AS succeeded,
       count(j.id) FILTER (WHERE j.state = 'failed') AS failed,
       count(j.id) FILTER (WHERE j.state = 'cancelled') AS cancelled,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM j.started_at - greatest(j.run_at, j.created_at)))
           FILTER (WHERE j.started_at IS NOT NULL) AS wait,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM j.finished_at - j.started_at))
           FILTER (WHERE j.started_at IS NOT NULL) AS run
  FROM (VALUES (1, 'hour', interval '1 hour'), (2, 'day', interval '1 day'),
               (3, 'week', interval '7 days')) AS w(n, name, span)
  LEFT JOIN {schema}.jobs AS j
         ON j.finished_at >= now() - w.span
        AND j.state IN ('succeeded', 'failed', 'cancelled')
 GROUP BY w.n, w.name
 ORDER BY w.n;

-- name: throughput
-- Jobs finished per 5-minute bucket over the last hour: (bucket 0-11, succeeded, failed).
SELECT b AS bucket,
       count(j.id) FILTER (WHERE j.state = 'succeeded') AS succeeded,
       count(j.id) FILTER (WHERE j.state = 'failed') AS failed
  FROM generate_series(0, 11) AS b
  LEFT JOIN {schema}.jobs AS j
         ON j.finished_at >= now() - interval '1 hour'
        AND j.state IN ('succeeded', 'failed')
        AND floor(extract(epoch FROM j.finished_at - (now() - interval '1 hour')) / 300) = b
 GROUP BY b
 ORDER BY b;

-- name: list_jobs
-- Parameters: $1 state, $2 task, $3 queue, $4 id, $5 unique_key, $6 args (JSON contained
-- in the positional arguments, or for an object in the keyword ones), $7 before (keyset:
-- ids below it), $8 limit. NULL: no filter. Newest first.
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
 ORDER BY id DESC
 LIMIT $8;

-- name: count_jobs
-- The jobs list_jobs' filters ($1-$6) match, for a bulk action's confirmation.
SELECT count(*)
  FROM {schema}.jobs
 WHERE ($1::text IS NULL OR state = $1)
   AND ($2::text IS NULL OR task = $2)
   AND ($3::text IS NULL OR queue = $3)
   AND ($4::bigint IS NULL OR id = $4)
   AND ($5::text IS NULL OR unique_key = $5)
   AND ($6::text IS NULL OR args @> $6::text::jsonb OR kwargs @> $6::text::jsonb);

-- name: matching_ids
-- The ids list_jobs' filters ($1-$6) match, at most $7, for a bulk action on a filter.
SELECT id
  FROM {schema}.jobs
 WHERE ($1::text IS NULL OR state = $1)
   AND ($2::text IS NULL OR task = $2)
   AND ($3::text IS NULL OR queue = $3)
   AND ($4::bigint IS NULL OR id = $4)
   AND ($5::text IS NULL OR unique_key = $5)
   AND ($6::text IS NULL OR args @> $6::text::jsonb OR kwargs @> $6::text::jsonb)
 ORDER BY id
 LIMIT $7;

-- name: children
-- The jobs that run after job $1.
SELECT id, task, state FROM {schema}.jobs WHERE parents @> ARRAY[$1::bigint] ORDER BY id;

-- name: relatives
-- Tasks and states of the jobs $1 (a job's parents).
SELECT id, task, state FROM {schema}.jobs WHERE id = ANY($1::bigint[]) ORDER BY id;

-- name: job_live
-- What changes while job $1 runs: for its page's live updates.
SELECT state, progress, progress_message, jsonb_array_length(log) AS lines
  FROM {schema}.jobs WHERE id = $1;
