-- Liveness: a worker's death is noticed by PostgreSQL releasing its locks, not by a
-- timeout. Each worker draws a key (workers.lease_key), and every session it holds work on
-- (its lease session and its claim sessions) holds the advisory lock
-- (hashtext('<schema>.workers'), key) in shared mode. The exclusive lock on that key is
-- granted only once all of those sessions have ended, and so all of its claims have rolled
-- back: a peer waiting for it learns of the death at once (see worker/watcher.py).
CREATE SEQUENCE {schema}.worker_key_seq AS integer CYCLE;
ALTER TABLE {schema}.workers ADD COLUMN lease_key integer;
-- The key of the worker that owns a handed-off attempt (NULL while a claim owns it).
ALTER TABLE {schema}.jobs ADD COLUMN lease integer;
CREATE INDEX jobs_lease_idx ON {schema}.jobs (lease) WHERE lease IS NOT NULL;
-- The worker that may still be running an older attempt (its claim was lost, or the job
-- was requeued while it ran): the current attempt's code runs only once that worker has
-- stopped it (see worker/takeover.py).
ALTER TABLE {schema}.jobs ADD COLUMN stopping_on uuid;

-- Replaced by the watch on workers' keys: a wait on one held queue row woke nobody when
-- any other worker died.
DROP FUNCTION {schema}.watch_held(text[], bigint[]);

-- rescue_worker(key): the worker that held `key` is gone (its key came free). Its row is
-- removed; the attempts it owned through the key run again (or fail, when that was their
-- last attempt, as for a claimed job); every worker of its queues is woken, since its
-- claims' rows are back too. Safe to run more than once, and by several workers at once.
CREATE FUNCTION {schema}.rescue_worker(dead integer) RETURNS integer
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
         WHERE j.lease = dead AND j.state = 'processing'
        RETURNING j.id, j.state, j.queue, j.priority, j.run_at, j.queue_entry
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
    SELECT (SELECT count(*) FROM lost)::integer
           + 0 * ((SELECT count(*) FROM woken) + (SELECT count(*) FROM finished)
                  + (SELECT count(*) FROM ring))::integer;
$$;


-- requeue_job(id): run the job again from its first attempt, now; a running attempt is
-- interrupted at once. Returns the state the job had, or NULL when there is no such job.
CREATE OR REPLACE FUNCTION {schema}.requeue_job(job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    was record;
    new_entry bigint := nextval('{schema}.queue_id_seq');
BEGIN
    SELECT state, queue_entry, queue, priority, run_at INTO was
      FROM {schema}.jobs WHERE id = job FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE {schema}.jobs
       SET state = 'queued', active_key = unique_key, attempt = 0, run_at = now(),
           queue_entry = new_entry,
           -- A running attempt's worker may still run it: the next attempt's code runs
           -- once that worker has stopped it (see worker/takeover.py).
           stopping_on = CASE WHEN was.state = 'processing'
                              THEN coalesce(stopping_on, worker_id) END,
           worker_id = NULL,
           started_at = NULL, finished_at = NULL, result = NULL, error = NULL
     WHERE id = job;
    INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
    SELECT new_entry, id, queue, priority, run_at FROM {schema}.jobs WHERE id = job;
    PERFORM {schema}.drop_queue_entry(was.queue_entry, was.queue, was.priority, was.run_at);
    IF was.state = 'processing' THEN
        PERFORM pg_notify('{channel_prefix}.control',
                          format('requeued %s %s', job, was.queue_entry));
    END IF;
    PERFORM pg_notify('{channel_prefix}.enqueue', was.queue);
    RETURN was.state;
END $$;
