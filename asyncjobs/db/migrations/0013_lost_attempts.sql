-- Lost attempts reported: a worker that rescues a dead worker's handed-off jobs learns
-- which attempts were lost (rescue_worker_jobs returns them), so that its hooks report
-- them with the outcome 'lost'. rescue_worker stays, counting them (prune_workers).
-- rescue_worker_jobs(key): the worker that held `key` is gone (its key came free). Its row
-- is removed; the attempts it owned through the key run again (or fail, when that was their
-- last attempt, as for a claimed job); every worker of its queues is woken, since its
-- claims' rows are back too. Safe to run more than once, and by several workers at once.
-- Returns the attempts it found lost, as a JSON array (job id, task, queue, attempt,
-- max_attempts, trace_context, lost_worker, lost_after: seconds since the attempt started,
-- gave_up: the job failed), for the rescuer to report (hooks: outcome 'lost').
CREATE FUNCTION {schema}.rescue_worker_jobs(dead integer) RETURNS jsonb
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM {schema}.workers WHERE lease_key = dead RETURNING queues
    ), lost AS (
        UPDATE {schema}.jobs AS j
           SET state = CASE WHEN j.attempt < j.max_attempts THEN 'queued' ELSE 'failed' END,
               active_key = CASE WHEN j.attempt < j.max_attempts THEN j.active_key END,
               queue_entry = CASE WHEN j.attempt < j.max_attempts
                                  THEN nextval('{schema}.queue_id_seq') END,
               lease = NULL,
               worker_id = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE j.worker_id END,
               finished_at = CASE WHEN j.attempt < j.max_attempts THEN NULL ELSE now() END,
               error = {schema}.worker_lost_error(j.attempt, CASE
                   WHEN j.attempt < j.max_attempts
                   THEN format('the worker running attempt %s was lost', j.attempt)
                   ELSE format('worker lost during attempt %s of %s; giving up', j.attempt,
                               j.max_attempts) END),
               errors = j.errors || {schema}.worker_lost_error(j.attempt, CASE
                   WHEN j.attempt < j.max_attempts
                   THEN format('the worker running attempt %s was lost', j.attempt)
                   ELSE format('worker lost during attempt %s of %s; giving up', j.attempt,
                               j.max_attempts) END)
          -- The row as it was: the attempt's worker and start (the update clears them).
          FROM (SELECT o.id, o.worker_id, o.started_at FROM {schema}.jobs AS o
                 WHERE o.lease = dead AND o.state = 'processing') AS o
         WHERE j.id = o.id AND j.lease = dead AND j.state = 'processing'
        RETURNING j.id, j.state, j.queue, j.priority, j.run_at, j.queue_entry, j.task,
                  j.attempt, j.max_attempts, j.trace_context, o.worker_id AS lost_worker,
                  extract(epoch FROM now() - o.started_at)::float8 AS lost_after
    ), requeued AS (
        INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
        SELECT queue_entry, id, queue, priority, run_at FROM lost WHERE state = 'queued'
    ), woken AS (
        SELECT pg_notify('{channel_prefix}.enqueue', q)
          FROM (SELECT queue FROM lost WHERE state = 'queued'
                UNION SELECT unnest(queues) FROM gone) AS w(q)
    ), finished AS (
        SELECT pg_notify('{channel_prefix}.done', string_agg(id::text, ','))
          FROM lost WHERE state = 'failed' HAVING count(*) > 0
    ), ring AS (
        SELECT pg_notify('{channel_prefix}.control', 'workers') FROM gone
    )
    -- The condition first: the notifications are sent whatever was lost.
    SELECT CASE WHEN (SELECT count(*) FROM woken) + (SELECT count(*) FROM finished)
                     + (SELECT count(*) FROM ring) >= 0
           THEN (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'id', l.id, 'task', l.task, 'queue', l.queue, 'attempt', l.attempt,
                        'max_attempts', l.max_attempts, 'trace_context', l.trace_context,
                        'lost_worker', l.lost_worker, 'lost_after', l.lost_after,
                        'gave_up', l.state = 'failed')), '[]')
                   FROM lost AS l) END;
$$;

-- rescue_worker(key): rescue_worker_jobs, counted (for prune_workers).
CREATE OR REPLACE FUNCTION {schema}.rescue_worker(dead integer) RETURNS integer
LANGUAGE sql AS $$
    SELECT jsonb_array_length({schema}.rescue_worker_jobs(dead));
$$;
