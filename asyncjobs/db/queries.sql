-- Every statement asyncjobs runs at run time, by name. `{schema}` is the quoted schema
-- name and `{channel_prefix}` its bare form (both validated); values are always parameters.
-- The Python that runs a statement carries its name.

-- name: enqueue
-- Parameters: $1 options_rows, $2 args, $3 kwargs, $4 tasks, $5 queues, $6 priorities,
-- $7 max_attempts, $8 timeouts, $9 run_ats, $10 delays, $11 backoffs, $12 trace_context.
--
-- Inserts jobs and their queue rows in one statement. The calls' arguments: $2 positional,
-- $3 keyword (NULL: no call has any), JSON values separated by RS (E'\x1e'), in call order.
-- Their options, one row per distinct (task, options) of the batch: $4-$11 (backoff as
-- JSON); $1 the row of each call (NULL: the first for all). Why this shape: see
-- enqueue_parameters in client/enqueue.py. Arguments come as text so that this runs on
-- any caller's connection (enqueue_tx), whatever codecs it has. $12: the trace context of
-- the enqueue (JSON text, one for the whole batch: one send span covers it), or NULL.
-- A job is due at run_at, else delay seconds from now, else now. Ids follow call order:
-- the rows are sorted by it, and ids are drawn after the sort.
-- The jobs are inserted straight from the input, without a CTE in between: a materialized
-- CTE writes and reads every row once more.
-- Wakes workers of each queue (notify_enqueue, in the schema).
WITH inserted AS (
    INSERT INTO {schema}.jobs
           (task, queue, priority, args, kwargs, max_attempts, timeout, run_at, state, queue_entry,
            backoff, trace_context)
    SELECT o.task, o.queue, o.priority, c.args::jsonb, coalesce(c.kwargs::jsonb, '{}'),
           o.max_attempts, o.timeout, o.due,
           CASE WHEN o.due > now() THEN 'scheduled' ELSE 'queued' END,
           nextval('{schema}.queue_id_seq'), o.backoff::jsonb, $12::text::jsonb
      FROM ROWS FROM (unnest($1::int[]), string_to_table($2, E'\x1e'),
                      string_to_table($3, E'\x1e')) WITH ORDINALITY AS c(options, args, kwargs, n)
      JOIN (SELECT o.*, coalesce(o.run_at_in, now() + make_interval(secs => coalesce(o.delay, 0)))
                       AS due
              FROM unnest($4::text[], $5::text[], $6::int[], $7::int[], $8::float8[],
                          $9::timestamptz[], $10::float8[], $11::text[]) WITH ORDINALITY
                   AS o(task, queue, priority, max_attempts, timeout, run_at_in, delay, backoff,
                        n)) AS o
        ON o.n = coalesce(c.options, 1)
     ORDER BY c.n
    RETURNING id, queue, priority, run_at, queue_entry
), entries AS (
    INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
    SELECT queue_entry, id, queue, priority, run_at FROM inserted
)
SELECT array_agg(id ORDER BY id) AS ids,
       (SELECT count(*) FROM (
            SELECT {schema}.notify_enqueue(queue, min(run_at)) FROM inserted GROUP BY queue
       ) AS n) AS notified
  FROM inserted;

-- name: enqueue_unique_or_after
-- Parameters: $1 options_rows, $2 args, $3 kwargs, $4 tasks, $5 queues, $6 priorities,
-- $7 max_attempts, $8 timeouts, $9 run_ats, $10 delays, $11 backoffs, $12 trace_context,
-- $13 unique_keys, $14 refuse_duplicates, $15 parents, $16 on_parent_failures.
--
-- `enqueue` for batches where some job has a unique key or parents (the plain statement
-- above stays the fast path: this one does about twice the work per row).
-- $1-$12 as for `enqueue`; each row of options also has a unique key ($13), whether a
-- duplicate is refused ($14), parents ($15) and what to do when one fails ($16).
-- Unique keys: a job whose task already has an active job with its key is not
-- inserted and gets that job's id. ON CONFLICT DO UPDATE (a no-op assignment) is what
-- returns that row even when a concurrent transaction committed it after this statement's
-- snapshot was taken; DO NOTHING and a SELECT would not see it. Calls of one batch with
-- the same task and key become one job. $14: refuse (abort the statement) instead.
-- Continuations ($15: parents as an array literal; $16: 'cancel' or 'run' when one fails):
-- the parents' rows are locked in id order before their state is read, and a parent that
-- ends holds the same row lock when its trigger looks for children, so a child enqueued
-- while its parent ends is never missed by both. A job with unfinished parents is
-- 'awaiting' (no queue row); one whose parent already failed is cancelled at once.
-- Rows are matched up by window functions over (task, unique_key), never by joining two
-- large CTEs: a cached generic plan does not know the batch size and nests its loops, and a
-- jsonb map of a whole batch is detoasted at every lookup (figures: benchmarks/README.md).
-- The map of parents' states (parents) is small unless one batch has thousands of
-- distinct parents.
WITH input AS (
    SELECT c.n, o.task, o.queue, o.priority, c.args, c.kwargs, o.max_attempts, o.timeout,
           o.run_at_in, o.delay, o.backoff, o.unique_key, o.refuse_duplicate, o.parents,
           o.on_parent_failure,
           CASE WHEN o.unique_key IS NULL THEN c.n
                ELSE min(c.n) OVER (PARTITION BY o.task, o.unique_key) END AS leader
      FROM ROWS FROM (unnest($1::int[]), string_to_table($2, E'\x1e'),
                      string_to_table($3, E'\x1e')) WITH ORDINALITY AS c(options, args, kwargs, n)
      JOIN unnest($4::text[], $5::text[], $6::int[], $7::int[], $8::float8[],
                  $9::timestamptz[], $10::float8[], $11::text[], $13::text[], $14::bool[],
                  $15::text[], $16::text[]) WITH ORDINALITY
           AS o(task, queue, priority, max_attempts, timeout, run_at_in, delay, backoff,
                unique_key, refuse_duplicate, parents, on_parent_failure, n)
        ON o.n = coalesce(c.options, 1)
), parent AS (
    SELECT j.id, j.state, j.has_children
      FROM {schema}.jobs AS j
     WHERE j.id = ANY ((SELECT array_agg(p) FROM input, unnest(input.parents::bigint[]) AS p)
                       ::bigint[])
     ORDER BY j.id
       FOR NO KEY UPDATE
), flagged AS (
    UPDATE {schema}.jobs AS j SET has_children = true
     WHERE j.id = ANY ((SELECT array_agg(id) FROM parent WHERE NOT has_children)::bigint[])
), parents AS MATERIALIZED (
    SELECT coalesce(jsonb_object_agg(id::text, state), '{}') AS state_of FROM parent
), new AS (
    SELECT i.n, i.task, i.queue, i.priority, i.args::jsonb AS args,
           coalesce(i.kwargs::jsonb, '{}') AS kwargs,
           i.max_attempts, i.timeout, i.backoff::jsonb AS backoff, i.unique_key,
           i.refuse_duplicate,
           i.parents::bigint[] AS parents, i.on_parent_failure,
           CASE WHEN i.parents IS NOT NULL THEN (
               SELECT count(*) FROM unnest(i.parents::bigint[]) AS p
                WHERE ps.state_of ->> p::text NOT IN ('succeeded', 'failed', 'cancelled'))
           END AS pending,
           CASE WHEN i.on_parent_failure = 'cancel' THEN (
               SELECT min(p) FROM unnest(i.parents::bigint[]) AS p
                WHERE ps.state_of ->> p::text IN ('failed', 'cancelled'))
           END AS blocker,
           coalesce(i.run_at_in, now() + make_interval(secs => coalesce(i.delay, 0))) AS due,
           nextval('{schema}.jobs_id_seq') AS id
      FROM input AS i CROSS JOIN parents AS ps
     WHERE i.n = i.leader
), job AS (
    SELECT new.*,
           CASE WHEN blocker IS NOT NULL THEN 'cancelled'
                WHEN pending > 0 THEN 'awaiting'
                WHEN due > now() THEN 'scheduled'
                ELSE 'queued' END AS state
      FROM new
), inserted AS (
    INSERT INTO {schema}.jobs AS j
           (id, task, queue, priority, args, kwargs, max_attempts, timeout, run_at, state,
            queue_entry, unique_key, active_key, parents, on_parent_failure, pending_parents,
            finished_at, error, backoff, trace_context)
    OVERRIDING SYSTEM VALUE
    SELECT job.id, task, queue, priority, args, kwargs, max_attempts, timeout, due, state,
           CASE WHEN state IN ('queued', 'scheduled')
                THEN nextval('{schema}.queue_id_seq') END,
           unique_key, CASE WHEN state <> 'cancelled' THEN unique_key END, parents,
           on_parent_failure, coalesce(pending, 0),
           CASE WHEN state = 'cancelled' THEN now() END,
           CASE WHEN state = 'cancelled'
                THEN {schema}.parent_error(blocker, ps.state_of ->> blocker::text) END,
           backoff, $12::text::jsonb
      FROM job CROSS JOIN parents AS ps
        ON CONFLICT (task, active_key) WHERE active_key IS NOT NULL
        DO UPDATE SET unique_key = EXCLUDED.unique_key
    RETURNING j.id, j.task, j.unique_key, j.state, j.queue, j.priority, j.run_at,
              j.queue_entry, j.parents
), returned AS (
    SELECT id, task, unique_key, state, queue, priority, run_at, queue_entry, parents,
           NULL::bigint AS ours
      FROM inserted
     UNION ALL
    SELECT NULL, task, unique_key, NULL, NULL, NULL, NULL, NULL, NULL, id
      FROM new WHERE unique_key IS NOT NULL
), placed AS (
    -- A keyed row is the active job that was there already when its id is not the one
    -- this statement gave its key.
    SELECT r.*, r.unique_key IS NULL OR r.id = r.our_id AS created
      FROM (SELECT returned.*, max(ours) OVER (PARTITION BY task, unique_key) AS our_id
              FROM returned) AS r
     WHERE r.id IS NOT NULL
), linked AS (
    INSERT INTO {schema}.job_parents (parent_id, job_id)
    SELECT p, r.id
      FROM placed AS r CROSS JOIN parents AS ps CROSS JOIN LATERAL unnest(r.parents) AS p
     WHERE r.created AND r.state = 'awaiting'
       AND ps.state_of ->> p::text NOT IN ('succeeded', 'failed', 'cancelled')
), entries AS (
    INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
    SELECT queue_entry, id, queue, priority, run_at
      FROM placed WHERE created AND queue_entry IS NOT NULL
), result AS (
    SELECT n, id, state, task, unique_key, refuse_duplicate, false AS duplicate
      FROM job WHERE unique_key IS NULL
     UNION ALL
    SELECT n, found_id, found_state, task, unique_key, refuse_duplicate,
           n <> leader OR NOT found_created
      FROM (SELECT u.*, max(u.rid) OVER w AS found_id, max(u.rstate) OVER w AS found_state,
                   bool_or(u.rcreated) OVER w AS found_created
              FROM (SELECT n, leader, task, unique_key, refuse_duplicate, NULL::bigint AS rid,
                           NULL::text AS rstate, NULL::boolean AS rcreated
                      FROM input WHERE unique_key IS NOT NULL
                     UNION ALL
                    SELECT NULL, NULL, task, unique_key, NULL, id, state, created
                      FROM placed WHERE unique_key IS NOT NULL) AS u
            WINDOW w AS (PARTITION BY task, unique_key)) AS k
     WHERE n IS NOT NULL
)
SELECT array_agg(id ORDER BY n) AS ids,
       (SELECT count(*) FROM (
            SELECT {schema}.notify_enqueue(queue, min(run_at))
              FROM placed WHERE created AND queue_entry IS NOT NULL GROUP BY queue) AS n)
           AS notified,
       {schema}.refuse_enqueue(
           (SELECT array_agg(DISTINCT p ORDER BY p)
              FROM input CROSS JOIN parents AS ps
             CROSS JOIN LATERAL unnest(input.parents::bigint[]) AS p
             WHERE NOT ps.state_of ? p::text),
           (SELECT jsonb_build_object('task', task, 'unique_key', unique_key, 'job', id,
                                      'state', state)
              FROM result WHERE refuse_duplicate AND duplicate ORDER BY n LIMIT 1)) AS refused
  FROM result;

-- name: claim
-- Runs inside the worker's claim transaction, which stays open while the jobs run: up to $2
-- due rows, from the queues $1 in their order (see claim_jobs in the schema).
SELECT id, job_id FROM {schema}.claim_jobs($1::text[], $2::int);

-- name: start_and_finish
-- Parameters: $1 job_ids, $2 entries, $3 attempts, $4 outcomes, $5 results, $6 errors,
-- $7 delays, $8 start_job_ids, $9 start_entries, $10 worker_id.
--
-- Everything a worker has to record, in one statement and one commit: the outcomes of
-- finished attempts ($1-$7) and the start of claimed jobs ($8-$9, by worker $10). They
-- never concern the same job: a job starts only from a queue row its claim holds, and an
-- outcome that queues its job again inserts a new row, which nobody has claimed yet.
--
-- Outcomes: each guarded by the claim it ran under: an outcome whose job has another
-- queue_entry or attempt by now was decided by someone else, and is dropped. 'retry' and
-- 'release' (shutdown: attempt not counted) get a new queue row; 'cancelled' is the job
-- raising asyncjobs.Cancel.
--
-- Starts: committed here, on the recorder's connection, not in the held claim, so the
-- start is visible at once and the attempt is counted even if the worker dies. Progress
-- starts over with each attempt; the log keeps every attempt's lines (each names it).
-- 'processing' is allowed: holding the claimed row proves its last holder is gone, unless
-- the attempt was handed off to a lease (jobs.lease) whose worker still holds its key: its
-- claim was lost after the hand-off, and the row is stale. A claimed row that matches
-- nothing here is stale (or its job is out of attempts).
-- taken_from (kept as stopping_on): the worker of an older attempt that may still run it
-- (its claim was lost and it may not know yet, or the job was requeued while running) and
-- is still there (its key is held): the new attempt's code runs once that worker has
-- stopped it (see worker/takeover.py). A worker that is gone (its key free) runs nothing.
--
-- Each started job comes with its checkpoint (what its last attempt saved), so resuming
-- costs no extra round trip, and with its enqueue's trace context and how long it waited
-- since it was due (`waited`, seconds on the server's clock), for hooks and metrics.
-- `lost`: the job's last attempt was still 'processing' and its worker is gone (died, its
-- key free): nobody else will report that attempt's end, so this worker does (the hooks'
-- outcome 'lost'), with that worker's id (`lost_worker`) and the seconds since the attempt
-- started (`lost_after`), both given whenever that attempt was still 'processing'. A
-- worker still alive reports its own (its claim was lost). One whose key is still held
-- may be dying instead (its sessions end one by one, the claim's first): it is then
-- `taken_from` too, and the handshake's answer says who reports (see worker/takeover.py).
--
-- Returns the started jobs, or one row of NULLs when none started.
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
           active_key = CASE WHEN o.outcome IN ('retry', 'release') THEN j.active_key END,
           attempt = CASE WHEN o.outcome = 'release' THEN j.attempt - 1 ELSE j.attempt END,
           run_at = CASE WHEN o.outcome = 'retry' THEN now() + make_interval(secs => o.delay)
                         ELSE j.run_at END,
           queue_entry = CASE WHEN o.outcome IN ('retry', 'release')
                              THEN nextval('{schema}.queue_id_seq') END,
           worker_id = CASE WHEN o.outcome IN ('retry', 'release') THEN NULL
                            ELSE j.worker_id END,
           lease = NULL,
           started_at = CASE WHEN o.outcome = 'release' THEN NULL ELSE j.started_at END,
           finished_at = CASE WHEN o.outcome IN ('succeeded', 'failed', 'cancelled') THEN now() END,
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
), started AS (
    UPDATE {schema}.jobs AS j
       SET state = 'processing',
           attempt = j.attempt + 1,
           worker_id = $10,
           lease = NULL,
           stopping_on = c.taken_from,
           started_at = now(),
           progress = NULL,
           progress_message = NULL,
           error = CASE WHEN j.state = 'processing' THEN {schema}.worker_lost_error(j.attempt,
                       format('the worker running attempt %s was lost', j.attempt))
                        ELSE j.error END,
           errors = CASE WHEN j.state = 'processing' THEN j.errors || {schema}.worker_lost_error(
                        j.attempt, format('the worker running attempt %s was lost', j.attempt))
                         ELSE j.errors END
      FROM (SELECT c.job_id, c.entry, w.id AS taken_from,
                   (o.state = 'processing' AND NOT EXISTS (
                        SELECT FROM {schema}.workers AS lw
                         WHERE lw.id = o.worker_id
                           AND (lw.lease_key IS NULL OR NOT pg_try_advisory_xact_lock(
                                    hashtext('{schema}.workers'), lw.lease_key)))) AS lost,
                   CASE WHEN o.state = 'processing' THEN o.worker_id END AS was_worker,
                   CASE WHEN o.state = 'processing' THEN o.started_at END AS was_started
              FROM unnest($8::bigint[], $9::bigint[]) AS c(job_id, entry)
              JOIN {schema}.jobs AS o ON o.id = c.job_id
              LEFT JOIN {schema}.workers AS w
                ON w.id = coalesce(o.stopping_on,
                                   CASE WHEN o.state = 'processing' THEN o.worker_id END)
               AND (w.lease_key IS NULL OR NOT pg_try_advisory_xact_lock(
                        hashtext('{schema}.workers'), w.lease_key))) AS c
     WHERE j.id = c.job_id AND j.queue_entry = c.entry
       AND (j.state IN ('queued', 'scheduled')
            OR (j.state = 'processing' AND j.attempt < j.max_attempts
                AND (j.lease IS NULL
                     OR pg_try_advisory_xact_lock(hashtext('{schema}.workers'), j.lease))))
    RETURNING j.id, j.queue_entry, j.task, j.args, j.kwargs, j.attempt, j.max_attempts,
              j.timeout, j.queue, j.backoff, j.checkpoint, c.taken_from, j.trace_context,
              -- (-infinity, written by plain SQL, would make the subtraction fail, and
              -- with it every start of the batch.)
              CASE WHEN isfinite(j.run_at) THEN extract(epoch FROM now() - j.run_at)::float8
                   ELSE 0 END AS waited, c.lost,
              c.was_worker AS lost_worker,
              extract(epoch FROM now() - c.was_started)::float8 AS lost_after
), notified AS (
    SELECT (SELECT count(*) FROM (
                SELECT pg_notify('{channel_prefix}.done', string_agg(id::text, ','))
                  FROM finished WHERE state IN ('succeeded', 'failed', 'cancelled')
                HAVING count(*) > 0) AS n)
           + (SELECT count(*) FROM (
                SELECT {schema}.notify_enqueue(queue, min(run_at))
                  FROM finished WHERE queue_entry IS NOT NULL GROUP BY queue) AS n) AS count
)
SELECT s.* FROM notified LEFT JOIN started AS s ON true;

-- name: fail_lost_jobs
-- A claimed job whose worker died during its last allowed attempt: it crashed the worker
-- (or was caught in crashes) max_attempts times, so it fails instead of running again.
-- Returns the failed jobs (or one row of NULLs), each with its claimed row (`entry`) and
-- its lost attempt as the hooks report it (see start_and_finish: `lost` if its worker is
-- gone; one whose key is still held is asked, as a takeover asks, see worker/takeover.py).
WITH failed AS (
    UPDATE {schema}.jobs AS j
       SET state = 'failed', active_key = NULL, queue_entry = NULL, finished_at = now(),
           error = {schema}.worker_lost_error(j.attempt, format(
               'worker lost during attempt %s of %s; giving up', j.attempt, j.max_attempts)),
           errors = j.errors || {schema}.worker_lost_error(j.attempt, format(
               'worker lost during attempt %s of %s; giving up', j.attempt, j.max_attempts))
      FROM unnest($1::bigint[], $2::bigint[]) AS c(job_id, entry)
     WHERE j.id = c.job_id AND j.queue_entry = c.entry
       AND j.state = 'processing' AND j.attempt >= j.max_attempts
       AND (j.lease IS NULL
            OR pg_try_advisory_xact_lock(hashtext('{schema}.workers'), j.lease))
    RETURNING j.id, c.entry, j.task, j.queue, j.attempt, j.max_attempts, j.trace_context,
              NOT EXISTS (SELECT FROM {schema}.workers AS lw
                           WHERE lw.id = j.worker_id
                             AND (lw.lease_key IS NULL OR NOT pg_try_advisory_xact_lock(
                                      hashtext('{schema}.workers'), lw.lease_key))) AS lost,
              j.worker_id AS lost_worker,
              extract(epoch FROM now() - j.started_at)::float8 AS lost_after
), notified AS (
    SELECT count(*) AS count FROM (
        SELECT pg_notify('{channel_prefix}.done', string_agg(id::text, ','))
          FROM failed HAVING count(*) > 0) AS n
)
SELECT f.* FROM notified LEFT JOIN failed AS f ON true;

-- name: fail_unstartable_jobs
-- Claimed jobs ($1, under queue rows $2) whose start PostgreSQL refused even alone ($3: what
-- it said, per job): a trigger of yours, or a value written by plain SQL that the start
-- can't handle. Each fails without running, guarded by its claimed row as the start is,
-- rather than coming back to be claimed and refused forever, holding up the jobs claimed
-- with it. The attempt it could not start is not counted. Returns how many failed.
WITH failed AS (
    UPDATE {schema}.jobs AS j
       SET state = 'failed', active_key = NULL, queue_entry = NULL, lease = NULL,
           finished_at = now(),
           error = e.error, errors = j.errors || e.error
      FROM (SELECT c.job_id, c.entry,
                   jsonb_build_object('type', 'StartRefused', 'message', c.message,
                                      'traceback', NULL, 'attempt', o.attempt + 1,
                                      'at', now()) AS error
              FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS c(job_id, entry, message)
              JOIN {schema}.jobs AS o ON o.id = c.job_id) AS e
     WHERE j.id = e.job_id AND j.queue_entry = e.entry
       AND (j.state IN ('queued', 'scheduled')
            OR (j.state = 'processing'
                AND (j.lease IS NULL
                     OR pg_try_advisory_xact_lock(hashtext('{schema}.workers'), j.lease))))
    RETURNING j.id
)
SELECT count(*) FROM (
    SELECT pg_notify('{channel_prefix}.done', string_agg(id::text, ','))
      FROM failed HAVING count(*) > 0) AS n;

-- name: report_progress
-- Parameters: $1 job_ids, $2 entries, $3 attempts, $4 progress, $5 messages, $6 lines,
-- $7 log_lines, $8 checkpoints.
--
-- Progress, log lines and checkpoints of running jobs, many per round trip, each guarded
-- by the attempt that reported it: a job cancelled, requeued or finished meanwhile gets
-- nothing. A NULL progress leaves progress and its message as they were; the log keeps its
-- last $7 lines. A NULL checkpoint ($8) leaves it as it was; a JSON null clears it.
-- Returns the jobs written (the others' attempts are no longer current).
-- One NOTIFY on the progress channel per statement (so at most one per writer interval)
-- names the jobs written, for the dashboard's live job pages; with too many to name (the
-- payload is limited to 8,000 bytes) it names none, meaning "any".
WITH written AS (
UPDATE {schema}.jobs AS j
   SET progress = coalesce(p.progress, j.progress),
       progress_message = CASE WHEN p.progress IS NULL THEN j.progress_message
                               ELSE p.message END,
       log = CASE WHEN jsonb_array_length(p.lines) = 0 THEN j.log
                  ELSE (SELECT coalesce(jsonb_agg(l.line ORDER BY l.n), '[]')
                          FROM jsonb_array_elements(j.log || p.lines) WITH ORDINALITY
                               AS l(line, n)
                         WHERE l.n > jsonb_array_length(j.log) + jsonb_array_length(p.lines)
                                     - $7::int) END,
       checkpoint = CASE WHEN p.checkpoint IS NULL THEN j.checkpoint
                         WHEN jsonb_typeof(p.checkpoint) = 'null' THEN NULL
                         ELSE p.checkpoint END,
       checkpoint_at = CASE WHEN p.checkpoint IS NULL THEN j.checkpoint_at
                            WHEN jsonb_typeof(p.checkpoint) = 'null' THEN NULL
                            ELSE now() END
  FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::float8[], $5::text[], $6::jsonb[],
              $8::jsonb[])
       AS p(job_id, entry, attempt, progress, message, lines, checkpoint)
 WHERE j.id = p.job_id AND j.queue_entry = p.entry AND j.attempt = p.attempt
   AND j.state = 'processing'
RETURNING j.id, j.attempt, j.queue_entry
), told AS (
    SELECT pg_notify('{channel_prefix}.progress',
                     CASE WHEN count(*) <= 200 THEN string_agg(id::text, ',') ELSE '' END)
      FROM written
    HAVING count(*) > 0
)
SELECT w.id, w.attempt, w.queue_entry FROM written AS w LEFT JOIN told ON true;

-- name: attempt_is_current
-- A running job's fence check, on the job's own connection inside its transaction: see
-- attempt_is_current in the schema (it locks the job's row until that transaction ends).
SELECT {schema}.attempt_is_current($1, $2, $3);

-- name: next_due
-- Seconds until the next queue row of these queues is due, for an idle fetcher's sleep.
-- One scalar filter per queue, so each uses the queue index. (A run_at of infinity, which
-- only plain SQL writes, can't be subtracted from: it counts as year 9999.)
SELECT extract(epoch FROM least(min(due.run_at), '9999-12-31 23:59:59+00') - now())
  FROM unnest($1::text[]) AS q(name),
       LATERAL (SELECT min(run_at) AS run_at FROM {schema}.queue
                 WHERE queue = q.name AND run_at > now()) AS due;

-- name: running_job_states
-- After a listener reconnect: what became of the jobs this worker runs.
SELECT id, state, queue_entry, attempt FROM {schema}.jobs WHERE id = ANY($1::bigint[]);

-- name: get_job
-- What the client shows of a job. No row may make this fail for its reader, whatever
-- plain SQL wrote into it: a time Python can't represent (infinity, past year 9999, or BC)
-- comes back as the last or first one it can (asyncpg would read infinity as a naive
-- datetime.max, and fail on the others); JSON comes as text, which
-- Job.from_row decodes and keeps as text when it can't (numbers beyond float or int64,
-- nesting deeper than 1024).
SELECT id, task, queue, priority, args::text, kwargs::text, state, attempt, max_attempts,
       timeout,
       CASE WHEN run_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN run_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE run_at END AS run_at,
       worker_id,
       CASE WHEN created_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN created_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE created_at END AS created_at,
       CASE WHEN started_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN started_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE started_at END AS started_at,
       CASE WHEN finished_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN finished_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE finished_at END AS finished_at,
       result::text, error::text, errors::text, progress, progress_message, log::text,
       unique_key, coalesce(parents, '{}') AS parents, checkpoint::text,
       CASE WHEN checkpoint_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN checkpoint_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE checkpoint_at END AS checkpoint_at
  FROM {schema}.jobs
 WHERE id = $1;

-- name: list_jobs
-- Newest first; $1 NULL means every state. Read as get_job reads a job.
SELECT id, task, queue, priority, args::text, kwargs::text, state, attempt, max_attempts,
       timeout,
       CASE WHEN run_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN run_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE run_at END AS run_at,
       worker_id,
       CASE WHEN created_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN created_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE created_at END AS created_at,
       CASE WHEN started_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN started_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE started_at END AS started_at,
       CASE WHEN finished_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN finished_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE finished_at END AS finished_at,
       result::text, error::text, errors::text, progress, progress_message, log::text,
       unique_key, coalesce(parents, '{}') AS parents, checkpoint::text,
       CASE WHEN checkpoint_at > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'
            WHEN checkpoint_at < '0001-01-01 00:00:00+00' THEN '0001-01-01 00:00:00+00'
            ELSE checkpoint_at END AS checkpoint_at
  FROM {schema}.jobs
 WHERE $1::text IS NULL OR state = $1
 ORDER BY id DESC
 LIMIT $2;

-- name: active_job_with_key
-- The active job holding the unique key of job $1 (another one), for requeue's error.
SELECT a.id, a.task, a.unique_key, a.state
  FROM {schema}.jobs AS j
  JOIN {schema}.jobs AS a ON a.task = j.task AND a.active_key = j.unique_key
 WHERE j.id = $1 AND a.id <> j.id;

-- name: cancel_job
SELECT {schema}.cancel_job($1);

-- name: requeue_job
-- $2: keep the job's checkpoint (its next attempt resumes from it).
SELECT {schema}.requeue_job($1, $2);

-- name: delete_job
SELECT {schema}.delete_job($1);

-- name: stop_workers
SELECT {schema}.stop_workers($1);

-- name: stop_worker
-- One worker stops, as with stop_workers but only worker $1 (grace $2): its flag (the
-- heartbeat's fallback) and the broadcast naming it. Returns 1, or 0 when there is no such
-- worker or it was asked already.
WITH asked AS (
    UPDATE {schema}.workers SET stop_requested_at = now(), stop_grace = $2::float8
     WHERE id = $1 AND stop_requested_at IS NULL
    RETURNING id
), told AS (
    SELECT pg_notify('{channel_prefix}.control', format('stop %s %s', $2::float8, id))
      FROM asked
)
SELECT (SELECT count(*) FROM asked)::integer + 0 * (SELECT count(*) FROM told)::integer;

-- name: pause_queue
-- See pause_queue in the schema: once this returns, no worker claims from queue $1.
SELECT {schema}.pause_queue($1);

-- name: resume_queue
SELECT {schema}.resume_queue($1);

-- name: list_queues
-- Every queue that has unfinished jobs, is paused, or is served by a worker: its unfinished
-- jobs by state, whether it is paused, how long its oldest due job has waited (seconds), and
-- how many workers serve it. The unfinished jobs come from the view unfinished_jobs (no scan
-- of `jobs`: see the schema). A scheduled job whose time has come counts as queued, as in
-- queue_stats: it keeps its state until a worker claims it, but it waits like a queued one.
WITH active AS (
    SELECT queue,
           count(*) FILTER (WHERE due) AS queued,
           count(*) FILTER (WHERE state = 'scheduled' AND NOT due) AS scheduled,
           count(*) FILTER (WHERE state = 'awaiting') AS awaiting,
           count(*) FILTER (WHERE state = 'processing') AS processing,
           min(run_at) FILTER (WHERE due) AS oldest_due
      FROM (SELECT queue, state, run_at,
                   state IN ('queued', 'scheduled') AND run_at <= now() AS due
              FROM {schema}.unfinished_jobs) AS unfinished
     GROUP BY queue
), served AS (
    SELECT q AS queue, count(*) AS workers
      FROM {schema}.workers, unnest(queues) AS q
     WHERE stop_requested_at IS NULL
     GROUP BY q
), names AS (
    SELECT queue FROM active
     UNION SELECT queue FROM {schema}.paused_queues
     UNION SELECT queue FROM served
)
SELECT n.queue AS name, coalesce(a.queued, 0) AS queued,
       coalesce(a.scheduled, 0) AS scheduled, coalesce(a.awaiting, 0) AS awaiting,
       coalesce(a.processing, 0) AS processing, p.queue IS NOT NULL AS paused,
       p.paused_at,
       -- (A run_at of -infinity, which only plain SQL writes, counts as year 1: now() can't
       -- be subtracted from it, and one such row must not break the listing.)
       CASE WHEN a.oldest_due IS NOT NULL
            THEN greatest(extract(epoch FROM now() - greatest(a.oldest_due,
                                                              '0001-01-01 00:00:00+00'))::float8,
                          0) END AS oldest_wait,
       coalesce(s.workers, 0) AS workers
  FROM names AS n
  LEFT JOIN active AS a ON a.queue = n.queue
  LEFT JOIN {schema}.paused_queues AS p ON p.queue = n.queue
  LEFT JOIN served AS s ON s.queue = n.queue
 ORDER BY n.queue;

-- name: vacuum_queue
-- See worker/queue_vacuum.py. Not in a transaction (the pool's connections autocommit); a
-- table another vacuum is at is skipped, not waited for. No truncation of empty pages at
-- the end: it takes an exclusive lock, which would hold up claims and enqueues.
VACUUM (SKIP_LOCKED, TRUNCATE false) {schema}.queue;

-- name: try_lock_pruning
-- One worker prunes at a time. A session lock: released when that worker's connection ends.
SELECT pg_try_advisory_lock(hashtext('{schema}.prune'));

-- name: unlock_pruning
SELECT pg_advisory_unlock(hashtext('{schema}.prune'));

-- name: prune_bound
-- Where a pruning round stops: the first job created since the shortest retention age ($1,
-- seconds), found through the primary key; no job before it is too young to look at. Ids
-- are drawn in creation order, but for transactions that overlap; a job such an overlap
-- puts after the bound waits for a later round. Once a round, not once a batch: it reads
-- every job older than the age. (An index on created_at did this too, and slowed every bulk
-- enqueue; one on finished_at made most of the updates that start and finish a job
-- non-HOT: see benchmarks/README.md.)
SELECT coalesce(
           (SELECT id FROM {schema}.jobs
             WHERE created_at >= now() - make_interval(secs => $1::float8)
             ORDER BY id LIMIT 1),
           9223372036854775807);

-- name: prune_jobs
-- One batch of finished jobs older than their state's retention, in seconds: $1 succeeded,
-- $2 failed, $3 cancelled (NULL keeps them), among those before $5 (prune_bound). Its own
-- short transaction; a row someone is changing (a requeue, say) is skipped, and re-checked
-- once it is free. `= ANY (ARRAY(...))` and ORDER BY id: whatever plan is cached, the batch
-- is found in the primary key and deleted by it, never by a scan of the whole table (a
-- generic plan hash-joined one for IN).
DELETE FROM {schema}.jobs
 WHERE id = ANY (ARRAY(
       SELECT id FROM {schema}.jobs
        WHERE id < $5
          AND ((state = 'succeeded' AND finished_at < now() - make_interval(secs => $1::float8))
               OR (state = 'failed' AND finished_at < now() - make_interval(secs => $2::float8))
               OR (state = 'cancelled'
                   AND finished_at < now() - make_interval(secs => $3::float8)))
        ORDER BY id
        LIMIT $4
          FOR UPDATE SKIP LOCKED))
RETURNING id;

-- name: job_id_issued
-- Whether a job id was ever handed out, to tell a job that is gone from one never made.
SELECT $1::bigint <= coalesce(pg_sequence_last_value('{schema}.jobs_id_seq'::regclass), 0);

-- name: take_worker_key
-- On the worker's lease session, before its row exists: the key ($1, or a new one) and
-- this session's shared lock on it. Every session the worker holds work on holds it too
-- (hold_worker_key), so the key comes free only when all of them have ended.
SELECT k.key, pg_advisory_lock_shared(hashtext('{schema}.workers'), k.key) IS NULL AS held
  FROM (SELECT coalesce($1::integer, nextval('{schema}.worker_key_seq')::integer) AS key) AS k;

-- name: hold_worker_key
-- A new claim session of the worker with key $1.
SELECT pg_advisory_lock_shared(hashtext('{schema}.workers'), $1::integer) IS NULL;

-- name: register_worker
-- Also after the lease session reconnects, and by the heartbeat when the row is gone
-- (a peer took the worker for dead while all its sessions were down): the row is upserted.
-- Each worker watches the next one's key: a new row changes who watches whom.
WITH registered AS (
    INSERT INTO {schema}.workers (id, host, pid, queues, concurrency, lease_key)
    VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (id) DO UPDATE SET lease_key = EXCLUDED.lease_key, heartbeat_at = now()
    RETURNING id
)
SELECT pg_notify('{channel_prefix}.control', 'workers') IS NULL FROM registered;

-- name: heartbeat
-- Also the fallback for a stop broadcast whose NOTIFY this worker's listener missed.
UPDATE {schema}.workers SET heartbeat_at = now(), running = $2
 WHERE id = $1
RETURNING stop_requested_at IS NOT NULL AS stop_requested, stop_grace;

-- name: prune_workers
-- Rows of workers silent for $1 seconds whose key is free (they are gone): rescued, in case
-- nobody watched them; returns the attempts found lost (see rescue_worker_jobs), as a JSON
-- array, for the hooks. Rows without a key (workers from before 0007) just go.
WITH unkeyed AS (
    DELETE FROM {schema}.workers
     WHERE heartbeat_at < now() - make_interval(secs => $1) AND lease_key IS NULL
    RETURNING id
), rescued AS (
    SELECT {schema}.rescue_worker_jobs(lease_key) AS lost FROM {schema}.workers
     WHERE heartbeat_at < now() - make_interval(secs => $1) AND lease_key IS NOT NULL
       AND pg_try_advisory_xact_lock(hashtext('{schema}.workers'), lease_key)
)
SELECT (SELECT count(*) FROM unkeyed) AS unkeyed,
       (SELECT coalesce(jsonb_agg(a), '[]')
          FROM rescued, jsonb_array_elements(rescued.lost) AS a) AS lost;

-- name: unregister_worker
WITH gone AS (DELETE FROM {schema}.workers WHERE id = $1 RETURNING id)
SELECT pg_notify('{channel_prefix}.control', 'workers') IS NULL FROM gone;

-- name: worker_keys
-- The keys of registered workers, in order: each worker watches the next one's (the
-- last watches the first's), so every worker is watched by exactly one peer.
SELECT array_agg(lease_key ORDER BY lease_key) FROM {schema}.workers
 WHERE lease_key IS NOT NULL;

-- name: watch_worker
-- Granted once every session of the worker with key $1 has ended: it is gone, and its
-- claims have rolled back. The watching session sets a short lock_timeout: a statement
-- waiting for a lock holds a snapshot, so the wait is re-armed every few seconds rather
-- than pinning the vacuum horizon for as long as the worker lives.
SELECT pg_advisory_lock(hashtext('{schema}.workers'), $1::integer) IS NULL;

-- name: rescue_worker
-- After watch_worker was granted: see rescue_worker_jobs in the schema (the attempts it
-- found lost, as a JSON array, for the hooks). Then the lock goes.
SELECT {schema}.rescue_worker_jobs($1::integer) AS lost,
       pg_advisory_unlock(hashtext('{schema}.workers'), $1::integer);

-- name: gone_workers
-- The keys, other than $1, of workers that are gone: registered ones whose key is free,
-- and those still named by a handed-off job (a row deleted by hand). For a watcher that
-- (re)starts: whoever died while nobody watched. The locks taken here end with the
-- statement.
SELECT array_agg(key) FROM (
    SELECT lease_key FROM {schema}.workers WHERE lease_key IS NOT NULL
    UNION
    SELECT lease FROM {schema}.jobs WHERE lease IS NOT NULL AND state = 'processing'
) AS k(key)
 WHERE key <> $1 AND pg_try_advisory_xact_lock(hashtext('{schema}.workers'), key);

-- name: hand_off
-- Parameters: $1 job_ids, $2 entries, $3 attempts, $4 key.
--
-- Long-running jobs leave their claims: from now on the worker's key ($4) owns their
-- attempts, and their claims can commit (a held claim pins the vacuum horizon of the whole
-- database). Guarded like an outcome: a job decided by someone else meanwhile stays as it
-- is (its worker is told by NOTIFY). Returns the jobs handed off.
UPDATE {schema}.jobs AS j SET lease = $4
  FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS h(job_id, entry, attempt)
 WHERE j.id = h.job_id AND j.queue_entry = h.entry AND j.attempt = h.attempt
   AND j.state = 'processing'
RETURNING j.id;

-- name: ask_release
-- A job taken over from worker $1, which may still run its last attempt (see
-- worker/takeover.py): whether that worker is still there (its key held, or a row without
-- a key), and if so the request $2 on the control channel for it to say when it stopped.
SELECT alive, CASE WHEN alive THEN pg_notify('{channel_prefix}.control', $2) END IS NULL
  FROM (SELECT EXISTS (
            SELECT FROM {schema}.workers AS w
             WHERE w.id = $1
               AND (w.lease_key IS NULL OR NOT pg_try_advisory_xact_lock(
                        hashtext('{schema}.workers'), w.lease_key))) AS alive) AS a;

-- name: let_go
-- The worker an attempt waited for has stopped the older one (or is gone): the attempt's
-- code may run, if the attempt is still current (else it is stopped: its job was
-- cancelled, requeued or deleted meanwhile).
UPDATE {schema}.jobs SET stopping_on = NULL
 WHERE id = $1 AND queue_entry = $2 AND attempt = $3 AND state = 'processing'
RETURNING id;

-- name: notify_control
-- A message of this worker's on the control channel (a takeover's `released`).
SELECT pg_notify('{channel_prefix}.control', $1);

-- name: wake_queues
-- A claim connection lost while its worker lives: its rows are back, and no rollback of a
-- dead worker announces them.
SELECT count(pg_notify('{channel_prefix}.enqueue', q)) FROM unnest($1::text[]) AS q;

-- name: list_workers
SELECT id, host, pid, queues, concurrency, running, started_at, heartbeat_at,
       stop_requested_at
  FROM {schema}.workers
 ORDER BY started_at;

-- name: due_schedules
-- In a worker's tick transaction: the schedules due now, locked. SKIP LOCKED so that two
-- workers never wait on each other; a row another worker just ticked is re-checked by
-- PostgreSQL against its new next_run_at and is not due any more.
SELECT name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
       missed, declared, paused, next_run_at, last_run_at, last_job_id, created_at,
       updated_at, now() AS now
  FROM {schema}.schedules
 WHERE NOT paused AND next_run_at <= now()
 ORDER BY next_run_at
 LIMIT $1
   FOR UPDATE SKIP LOCKED;

-- name: advance_schedule
-- Moves a ticked schedule on, guarded by the next_run_at that was read: a tick is taken
-- once. $4 is the job enqueued for it, NULL when the tick was skipped.
UPDATE {schema}.schedules
   SET next_run_at = $3,
       last_run_at = CASE WHEN $4::bigint IS NULL THEN last_run_at ELSE now() END,
       last_job_id = coalesce($4::bigint, last_job_id)
 WHERE name = $1 AND next_run_at = $2
RETURNING name;

-- name: next_schedule_due
-- Seconds until the earliest active schedule is due (negative when one is overdue).
SELECT extract(epoch FROM min(next_run_at) - now())::float8
  FROM {schema}.schedules
 WHERE NOT paused;

-- name: get_schedule
SELECT name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
       missed, declared, paused, next_run_at, last_run_at, last_job_id, created_at,
       updated_at
  FROM {schema}.schedules
 WHERE name = $1;

-- name: lock_schedule
-- The schedule, locked for a change made in the same transaction.
SELECT name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
       missed, declared, paused, next_run_at, last_run_at, last_job_id, created_at,
       updated_at
  FROM {schema}.schedules
 WHERE name = $1
   FOR UPDATE;

-- name: list_schedules
-- $1: only those declared in code (true), only those added at run time (false), or all.
SELECT name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
       missed, declared, paused, next_run_at, last_run_at, last_job_id, created_at,
       updated_at
  FROM {schema}.schedules
 WHERE $1::boolean IS NULL OR declared = $1
 ORDER BY name;

-- name: insert_schedule
-- Arguments come as JSON text, as in enqueue. Nothing is returned if the name is taken.
INSERT INTO {schema}.schedules
       (name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
        missed, declared, paused, next_run_at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (name) DO NOTHING
RETURNING name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
          missed, declared, paused, next_run_at, last_run_at, last_job_id, created_at,
          updated_at;

-- name: update_schedule
-- A new definition (and next_run_at) for an existing schedule; its paused state and its
-- history stay.
UPDATE {schema}.schedules
   SET task = $2, cron = $3, timezone = $4, args = $5::text::jsonb, kwargs = $6::text::jsonb,
       queue = $7, priority = $8, max_attempts = $9, timeout = $10, missed = $11,
       declared = $12, next_run_at = $13, updated_at = now()
 WHERE name = $1
RETURNING name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
          missed, declared, paused, next_run_at, last_run_at, last_job_id, created_at,
          updated_at;

-- name: pause_schedule
-- $2: pause (true) or resume (false); $3: the next run on resume (NULL keeps it).
UPDATE {schema}.schedules
   SET paused = $2, next_run_at = coalesce($3, next_run_at), updated_at = now()
 WHERE name = $1
RETURNING name, task, cron, timezone, args, kwargs, queue, priority, max_attempts, timeout,
          missed, declared, paused, next_run_at, last_run_at, last_job_id, created_at,
          updated_at;

-- name: delete_schedules
DELETE FROM {schema}.schedules WHERE name = ANY($1::text[]) RETURNING name;

-- name: lock_schedules_sync
-- Workers that start together keep the schedules declared in code in step with their app
-- one at a time: a transaction lock keyed by the table's own oid.
SELECT pg_advisory_xact_lock('{schema}.schedules'::regclass::oid::bigint);


-- name: record_task_names
-- Parameters: $1 names, $2 queues, $3 priorities, $4 max_attempts, $5 timeouts.
--
-- A worker starting: its app's tasks and their default options are known from now on, for
-- good (see task_names). The names come sorted, so that workers starting together lock the
-- rows in one order.
INSERT INTO {schema}.task_names AS t (name, queue, priority, max_attempts, timeout)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::float8[])
    ON CONFLICT (name) DO UPDATE
   SET queue = EXCLUDED.queue, priority = EXCLUDED.priority,
       max_attempts = EXCLUDED.max_attempts, timeout = EXCLUDED.timeout, last_seen_at = now();

-- name: known_task_names
-- Every task name a worker on this schema has had, with the default options it recorded:
-- for the client's check of an enqueue by name, and the options such a job gets (cached;
-- read again on a miss).
SELECT name, queue, priority, max_attempts, timeout FROM {schema}.task_names ORDER BY name;

-- name: queue_stats
-- For metrics, read at scrape time: per queue, the jobs due and waiting ('queued'), due
-- later ('scheduled'), running ('processing') and waiting for their parents ('awaiting'),
-- and how long the oldest due one has waited (seconds). From the view unfinished_jobs (no
-- scan of `jobs`: see the schema).
SELECT queue,
       CASE WHEN state IN ('processing', 'awaiting') THEN state
            WHEN run_at <= now() THEN 'queued'
            ELSE 'scheduled' END AS state,
       count(*) AS jobs,
       -- (Infinite times, which only plain SQL writes, can't be subtracted: clamped.)
       extract(epoch FROM now() - least(greatest(min(run_at), '0001-01-01 00:00:00+00'),
                                        '9999-12-31 23:59:59+00'))::float8 AS oldest
  FROM {schema}.unfinished_jobs
 GROUP BY 1, 2
 ORDER BY 1, 2;
