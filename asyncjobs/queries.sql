-- Every statement asyncjobs runs at run time, by name. `{schema}` is the quoted schema
-- name and `{channel_prefix}` its bare form (both validated); values are always parameters.
-- The Python that runs a statement carries its name.

-- name: enqueue
-- Inserts jobs and their queue rows in one statement. A job is due at $8 (run_at), else
-- $9 (delay) seconds from now, else now. Arguments come as JSON text so that this runs on
-- any caller's connection (enqueue_tx), whatever codecs it has.
-- Wakes workers of each queue; a future job's payload carries its epoch so that an idle
-- worker can sleep exactly until it is due.
WITH new AS (
    SELECT t.task, t.queue, t.priority, t.args::jsonb AS args, t.kwargs::jsonb AS kwargs,
           t.max_attempts, t.timeout,
           coalesce(t.run_at_in, now() + make_interval(secs => coalesce(t.delay, 0))) AS due,
           nextval('{schema}.queue_id_seq') AS entry
      FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[],
                  $7::float8[], $8::timestamptz[], $9::float8[])
           AS t(task, queue, priority, args, kwargs, max_attempts, timeout, run_at_in, delay)
), inserted AS (
    INSERT INTO {schema}.jobs
           (task, queue, priority, args, kwargs, max_attempts, timeout, run_at, state, queue_entry)
    SELECT task, queue, priority, args, kwargs, max_attempts, timeout, due,
           CASE WHEN due > now() THEN 'scheduled' ELSE 'queued' END, entry
      FROM new
    RETURNING id, queue, priority, run_at, queue_entry
), entries AS (
    INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
    SELECT queue_entry, id, queue, priority, run_at FROM inserted
)
SELECT array_agg(id ORDER BY id) AS ids,
       (SELECT count(*) FROM (
            SELECT pg_notify('{channel_prefix}.enqueue',
                             CASE WHEN min(run_at) > now()
                                  THEN queue || '@' || extract(epoch FROM min(run_at))
                                  ELSE queue END)
              FROM inserted GROUP BY queue) AS n) AS notified
  FROM inserted;

-- name: claim
-- Runs inside the worker's claim transaction, which stays open while the jobs run: up to $2
-- due rows, from the queues $1 in their order (see claim_jobs in the schema).
SELECT id, job_id FROM {schema}.claim_jobs($1::text[], $2::int);

-- name: watch_held
-- An idle worker's lock wait (see Fetcher._watch): 'free' when the first due row held by
-- another worker is released by a rollback (that worker died), 'gone' when its holder
-- committed, NULL when no due row is held by another worker. $2: the rows this worker holds.
SELECT {schema}.watch_held($1::text[], $2::bigint[]);

-- name: start_jobs
-- Autocommit, so the start is visible at once and the attempt is counted even if the
-- worker dies. 'processing' is allowed: holding the claimed row proves its last holder is
-- gone. A claimed row that matches nothing here is stale (or its job is out of attempts).
UPDATE {schema}.jobs AS j
   SET state = 'processing',
       attempt = j.attempt + 1,
       worker_id = $3,
       started_at = now(),
       error = CASE WHEN j.state = 'processing' THEN {schema}.worker_lost_error(j.attempt,
                   format('the worker running attempt %s was lost', j.attempt))
                    ELSE j.error END,
       errors = CASE WHEN j.state = 'processing' THEN j.errors || {schema}.worker_lost_error(
                    j.attempt, format('the worker running attempt %s was lost', j.attempt))
                     ELSE j.errors END
  FROM unnest($1::bigint[], $2::bigint[]) AS c(job_id, entry)
 WHERE j.id = c.job_id AND j.queue_entry = c.entry
   AND (j.state IN ('queued', 'scheduled')
        OR (j.state = 'processing' AND j.attempt < j.max_attempts))
RETURNING j.id, j.queue_entry, j.task, j.args, j.kwargs, j.attempt, j.max_attempts,
          j.timeout, j.queue;

-- name: fail_lost_jobs
-- A claimed job whose worker died during its last allowed attempt: it crashed the worker
-- (or was caught in crashes) max_attempts times, so it fails instead of running again.
WITH failed AS (
    UPDATE {schema}.jobs AS j
       SET state = 'failed', queue_entry = NULL, finished_at = now(),
           error = {schema}.worker_lost_error(j.attempt, format(
               'worker lost during attempt %s of %s; giving up', j.attempt, j.max_attempts)),
           errors = j.errors || {schema}.worker_lost_error(j.attempt, format(
               'worker lost during attempt %s of %s; giving up', j.attempt, j.max_attempts))
      FROM unnest($1::bigint[], $2::bigint[]) AS c(job_id, entry)
     WHERE j.id = c.job_id AND j.queue_entry = c.entry
       AND j.state = 'processing' AND j.attempt >= j.max_attempts
    RETURNING j.id
)
SELECT array_agg(id) AS ids,
       (SELECT count(*) FROM (
            SELECT pg_notify('{channel_prefix}.done', string_agg(id::text, ','))
              FROM failed HAVING count(*) > 0) AS n) AS notified
  FROM failed;

-- name: finish_jobs
-- Writes a batch of outcomes, each guarded by the claim it ran under: an outcome whose
-- job has another queue_entry or attempt by now was decided by someone else, and is
-- dropped. 'retry' and 'release' (shutdown: attempt not counted) get a new queue row.
WITH outcome AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::jsonb[],
                         $6::jsonb[], $7::float8[])
        AS o(job_id, entry, attempt, outcome, result, error, delay)
), finished AS (
    UPDATE {schema}.jobs AS j
       SET state = CASE o.outcome
                       WHEN 'retry' THEN CASE WHEN o.delay > 0 THEN 'scheduled' ELSE 'queued' END
                       WHEN 'release' THEN 'queued'
                       ELSE o.outcome END,
           attempt = CASE WHEN o.outcome = 'release' THEN j.attempt - 1 ELSE j.attempt END,
           run_at = CASE WHEN o.outcome = 'retry' THEN now() + make_interval(secs => o.delay)
                         ELSE j.run_at END,
           queue_entry = CASE WHEN o.outcome IN ('retry', 'release')
                              THEN nextval('{schema}.queue_id_seq') END,
           worker_id = CASE WHEN o.outcome IN ('retry', 'release') THEN NULL
                            ELSE j.worker_id END,
           finished_at = CASE WHEN o.outcome IN ('succeeded', 'failed') THEN now() END,
           result = o.result,
           error = coalesce(o.error, j.error),
           errors = CASE WHEN o.error IS NULL THEN j.errors
                         ELSE j.errors || jsonb_build_array(o.error) END
      FROM outcome AS o
     WHERE j.id = o.job_id AND j.queue_entry = o.entry AND j.attempt = o.attempt
       AND j.state = 'processing'
    RETURNING j.id, j.state, j.queue, j.priority, j.run_at, j.queue_entry
), requeued AS (
    INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
    SELECT queue_entry, id, queue, priority, run_at FROM finished WHERE queue_entry IS NOT NULL
)
SELECT (SELECT count(*) FROM finished) AS written,
       (SELECT count(*) FROM (
            SELECT pg_notify('{channel_prefix}.done', string_agg(id::text, ','))
              FROM finished WHERE state IN ('succeeded', 'failed')
            HAVING count(*) > 0) AS n) AS done_notified,
       (SELECT count(*) FROM (
            SELECT pg_notify('{channel_prefix}.enqueue',
                             CASE WHEN min(run_at) > now()
                                  THEN queue || '@' || extract(epoch FROM min(run_at))
                                  ELSE queue END)
              FROM finished WHERE queue_entry IS NOT NULL GROUP BY queue) AS n) AS woken;

-- name: next_due
-- Seconds until the next queue row of these queues is due, for an idle fetcher's sleep.
-- One scalar filter per queue, so each uses the queue index.
SELECT extract(epoch FROM min(due.run_at) - now())
  FROM unnest($1::text[]) AS q(name),
       LATERAL (SELECT min(run_at) AS run_at FROM {schema}.queue
                 WHERE queue = q.name AND run_at > now()) AS due;

-- name: running_job_states
-- After a listener reconnect: what became of the jobs this worker runs.
SELECT id, state, queue_entry, attempt FROM {schema}.jobs WHERE id = ANY($1::bigint[]);

-- name: get_job
SELECT id, task, queue, priority, args, kwargs, state, attempt, max_attempts, timeout,
       run_at, worker_id, created_at, started_at, finished_at, result, error, errors
  FROM {schema}.jobs
 WHERE id = $1;

-- name: list_jobs
-- Newest first; $1 NULL means every state.
SELECT id, task, queue, priority, args, kwargs, state, attempt, max_attempts, timeout,
       run_at, worker_id, created_at, started_at, finished_at, result, error, errors
  FROM {schema}.jobs
 WHERE $1::text IS NULL OR state = $1
 ORDER BY id DESC
 LIMIT $2;

-- name: cancel_job
SELECT {schema}.cancel_job($1);

-- name: requeue_job
SELECT {schema}.requeue_job($1);

-- name: delete_job
SELECT {schema}.delete_job($1);

-- name: stop_workers
SELECT {schema}.stop_workers($1);

-- name: register_worker
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency)
VALUES ($1, $2, $3, $4, $5);

-- name: heartbeat
-- Also the fallback for a stop broadcast whose NOTIFY this worker's listener missed.
UPDATE {schema}.workers SET heartbeat_at = now(), running = $2
 WHERE id = $1
RETURNING stop_requested_at IS NOT NULL AS stop_requested, stop_grace;

-- name: prune_workers
-- Rows of workers that died without saying so; their jobs went back to the queue long ago.
DELETE FROM {schema}.workers WHERE heartbeat_at < now() - make_interval(secs => $1);

-- name: unregister_worker
DELETE FROM {schema}.workers WHERE id = $1;

-- name: list_workers
SELECT id, host, pid, queues, concurrency, running, started_at, heartbeat_at,
       stop_requested_at
  FROM {schema}.workers
 ORDER BY started_at;
