-- A leaner enqueue, each change measured on a batch of 1,000 jobs:
-- - The queue table loses its primary key (a tenth of the time): its ids come from a
--   sequence, a row is found through queue_fetch_idx by its job's (queue, priority,
--   run_at, id), and a claim deletes by ctid.
-- - jobs loses its index on created_at (a twelfth): retention walks the primary key
--   instead (see prune_bound in queries.sql).
-- - jobs.active_key is set by the statements that change a job's state, and checked by
--   a constraint, instead of being a generated column (6%: computing one copies every
--   column of the row, on every insert and update).
ALTER TABLE {schema}.queue DROP CONSTRAINT queue_pkey;
ALTER TABLE {schema}.queue ALTER COLUMN id SET NOT NULL;
DROP INDEX {schema}.jobs_created_idx;
ALTER TABLE {schema}.jobs ALTER COLUMN active_key DROP EXPRESSION;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_active_key_valid CHECK (
    active_key IS NOT DISTINCT FROM
    CASE WHEN state IN ('scheduled', 'queued', 'awaiting', 'processing') THEN unique_key END);

DROP FUNCTION {schema}.drop_queue_entry(bigint);

-- Removes a job's queue row unless a worker holds it; a held row goes away when that
-- worker commits, and is dropped as stale if it ever comes back. The job's queue,
-- priority and run_at find it in queue_fetch_idx (they are the row's; see `queue`).
CREATE FUNCTION {schema}.drop_queue_entry(entry bigint, entry_queue text,
                                          entry_priority integer, entry_run_at timestamptz)
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM {schema}.queue
     WHERE ctid = (SELECT ctid FROM {schema}.queue
                    WHERE queue = entry_queue AND priority = entry_priority
                      AND run_at = entry_run_at AND id = entry
                      FOR UPDATE SKIP LOCKED);
$$;

-- cancel_job(id): the job will not run (again); a running attempt is interrupted at once.
-- Returns the state the job had, or NULL when there is no such job.
CREATE OR REPLACE FUNCTION {schema}.cancel_job(job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    was record;
BEGIN
    SELECT state, queue_entry, queue, priority, run_at INTO was
      FROM {schema}.jobs WHERE id = job FOR UPDATE;
    IF NOT FOUND OR was.state IN ('succeeded', 'failed', 'cancelled') THEN
        RETURN was.state;
    END IF;
    UPDATE {schema}.jobs
       SET state = 'cancelled', active_key = NULL, queue_entry = NULL, finished_at = now()
     WHERE id = job;
    PERFORM {schema}.drop_queue_entry(was.queue_entry, was.queue, was.priority, was.run_at);
    IF was.state = 'processing' THEN
        PERFORM pg_notify('{channel_prefix}.control',
                          format('cancelled %s %s', job, was.queue_entry));
    END IF;
    PERFORM pg_notify('{channel_prefix}.done', job::text);
    RETURN was.state;
END $$;

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
           queue_entry = new_entry, worker_id = NULL, started_at = NULL, finished_at = NULL, result = NULL, error = NULL
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

-- delete_job(id): the job and its record are gone; a running attempt is interrupted at once.
-- Returns the state the job had, or NULL when there is no such job.
CREATE OR REPLACE FUNCTION {schema}.delete_job(job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    was record;
BEGIN
    DELETE FROM {schema}.jobs WHERE id = job
    RETURNING state, queue_entry, queue, priority, run_at INTO was;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM {schema}.drop_queue_entry(was.queue_entry, was.queue, was.priority, was.run_at);
    IF was.state = 'processing' THEN
        PERFORM pg_notify('{channel_prefix}.control',
                          format('deleted %s %s', job, was.queue_entry));
    END IF;
    PERFORM pg_notify('{channel_prefix}.done', job::text);
    RETURN was.state;
END $$;

-- claim_jobs(queues, wanted): inside the caller's held transaction, deletes and returns up
-- to `wanted` due queue rows: from the first queue listed, then the next, and within a queue
-- by priority, run_at, id. Each queue is a scalar filter, so each uses queue_fetch_idx
-- (`queue = ANY(...)` made PostgreSQL scan and sort the whole backlog), and only the rows
-- returned are locked. `= ANY (ARRAY(...))`, not `IN (...)`: the rows are found once and
-- then fetched by ctid, whatever plan PL/pgSQL caches (a generic plan for IN, not knowing
-- the limit, hash-joins a sequential scan of the whole queue).
-- statement_timestamp(), not now(): a worker begins its next claim transaction ahead of
-- time, so now() would be older than the claim.
CREATE OR REPLACE FUNCTION {schema}.claim_jobs(queues text[], wanted integer)
RETURNS TABLE (id bigint, job_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    queue_name text;
    got integer := 0;
    n integer;
BEGIN
    FOREACH queue_name IN ARRAY queues LOOP
        RETURN QUERY
        DELETE FROM {schema}.queue AS q
         WHERE q.ctid = ANY (ARRAY(
                   SELECT c.ctid FROM {schema}.queue AS c
                    WHERE c.queue = queue_name AND c.run_at <= statement_timestamp()
                    ORDER BY c.priority DESC, c.run_at, c.id
                    LIMIT wanted - got FOR UPDATE SKIP LOCKED))
        RETURNING q.id, q.job_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        got := got + n;
        -- Tested after the first queue, so that a call with wanted = 0 plans the statement
        -- (a new connection's warm-up) and claims nothing.
        EXIT WHEN got >= wanted;
    END LOOP;
END $$;

-- watch_held(queues, mine): an idle worker's lock wait. Finds the first due row, in the
-- same order as claim_jobs, that is not one of `mine` (the rows this worker holds), and
-- waits for its lock: 'free' when granted (its holder rolled back, i.e. died, or nobody
-- held it), 'gone' when its holder committed (deleted it), NULL when there is no such row.
-- The lock is released when the statement's transaction ends.
CREATE OR REPLACE FUNCTION {schema}.watch_held(queues text[], mine bigint[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    queue_name text;
    candidate tid;
BEGIN
    FOREACH queue_name IN ARRAY queues LOOP
        SELECT c.ctid INTO candidate FROM {schema}.queue AS c
         WHERE c.queue = queue_name AND c.run_at <= statement_timestamp()
           AND c.id <> ALL (mine)
         ORDER BY c.priority DESC, c.run_at, c.id
         LIMIT 1;
        IF FOUND THEN
            PERFORM 1 FROM {schema}.queue AS c WHERE c.ctid = candidate FOR UPDATE;
            RETURN CASE WHEN FOUND THEN 'free' ELSE 'gone' END;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- settle_children(parent, parent_state): the jobs awaiting `parent`, which just ended in
-- `parent_state` ('succeeded', 'failed', 'cancelled' or 'deleted'), count it as done.
-- One whose parents are all done is queued (NOTIFY: a worker starts it at once); one whose
-- parent did not succeed is cancelled unless it runs anyway, and its own children are
-- settled in turn by this loop, so a long chain needs no deep trigger recursion.
-- The decrement of pending_parents locks the child's row, so parents finishing in
-- concurrent transactions never both miss the last one.
CREATE OR REPLACE FUNCTION {schema}.settle_children(parent bigint, parent_state text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    done_ids bigint[] := ARRAY[parent];
    done_states text[] := ARRAY[parent_state];
    cancelled_ids bigint[];
    woken_queues bigint;
    i integer := 1;
BEGIN
    WHILE i <= cardinality(done_ids) LOOP
        WITH edges AS (
            DELETE FROM {schema}.job_parents WHERE parent_id = done_ids[i]
            RETURNING job_id
        ), released AS (
            UPDATE {schema}.jobs AS j
               SET pending_parents = j.pending_parents - 1,
                   state = CASE WHEN j.pending_parents > 1 THEN 'awaiting'
                                WHEN j.run_at > now() THEN 'scheduled'
                                ELSE 'queued' END,
                   queue_entry = CASE WHEN j.pending_parents <= 1
                                      THEN nextval('{schema}.queue_id_seq') END
              FROM edges AS e
             WHERE j.id = e.job_id AND j.state = 'awaiting'
               AND (done_states[i] = 'succeeded' OR j.on_parent_failure = 'run')
            RETURNING j.id, j.queue, j.priority, j.run_at, j.queue_entry
        ), entries AS (
            INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
            SELECT queue_entry, id, queue, priority, run_at
              FROM released WHERE queue_entry IS NOT NULL
            RETURNING queue, run_at
        ), cancelled AS (
            -- has_children is cleared so that this loop, not the trigger, goes on down.
            UPDATE {schema}.jobs AS j
               SET state = 'cancelled', active_key = NULL, finished_at = now(),
                   has_children = false,
                   error = {schema}.parent_error(done_ids[i], done_states[i])
              FROM edges AS e
             WHERE j.id = e.job_id AND j.state = 'awaiting'
               AND NOT (done_states[i] = 'succeeded' OR j.on_parent_failure = 'run')
            RETURNING j.id
        ), woken AS (
            SELECT pg_notify('{channel_prefix}.enqueue',
                             CASE WHEN min(run_at) > now()
                                  THEN queue || '@' || extract(epoch FROM min(run_at))
                                  ELSE queue END)
              FROM entries GROUP BY queue
        )
        SELECT coalesce(array_agg(id), '{}'), (SELECT count(*) FROM woken)
          INTO cancelled_ids, woken_queues
          FROM cancelled;
        IF cardinality(cancelled_ids) > 0 THEN
            -- In chunks: a NOTIFY payload must stay under 8000 bytes.
            PERFORM pg_notify('{channel_prefix}.done', string_agg(id::text, ','))
               FROM unnest(cancelled_ids) WITH ORDINALITY AS c(id, n)
              GROUP BY (n - 1) / 400;
            done_ids := done_ids || cancelled_ids;
            done_states := done_states
                || array_fill('cancelled'::text, ARRAY[cardinality(cancelled_ids)]);
        END IF;
        i := i + 1;
    END LOOP;
END $$;
