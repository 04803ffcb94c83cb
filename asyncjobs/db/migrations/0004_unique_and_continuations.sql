-- Unique jobs and continuations. `{schema}` is the quoted schema name.

-- unique_key: at most one job of a task with a given key is active (scheduled, queued,
-- awaiting or processing) at a time. active_key is the key while the job is active and
-- NULL after, so the unique index needs no predicate on `state` (a partial index on state
-- would make every state change a non-HOT update, for every job).
ALTER TABLE {schema}.jobs
    ADD COLUMN unique_key text,
    ADD COLUMN active_key text GENERATED ALWAYS AS (
        CASE WHEN state IN ('scheduled', 'queued', 'awaiting', 'processing')
             THEN unique_key END) STORED,
    -- Continuations: the jobs this one runs after, what it does when one of them does
    -- not succeed ('cancel' or 'run'), how many have not finished yet, and whether any
    -- job waits on this one (so that the trigger
    -- below costs nothing for jobs that have none).
    ADD COLUMN parents bigint[],
    ADD COLUMN on_parent_failure text,
    ADD COLUMN pending_parents integer NOT NULL DEFAULT 0,
    ADD COLUMN has_children boolean NOT NULL DEFAULT false;

ALTER TABLE {schema}.jobs DROP CONSTRAINT jobs_state_valid;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_state_valid CHECK (
    state IN ('scheduled', 'queued', 'awaiting', 'processing', 'succeeded', 'failed',
              'cancelled'));

CREATE UNIQUE INDEX jobs_active_key_idx ON {schema}.jobs (task, active_key)
    WHERE active_key IS NOT NULL;

-- One row per (unfinished parent, job awaiting it); removed when the parent finishes, so
-- the table holds only live waits. No foreign keys: a deleted job is handled by the
-- trigger below, and a deleted child simply is not found when its parent finishes.
CREATE TABLE {schema}.job_parents (
    parent_id bigint NOT NULL,
    job_id    bigint NOT NULL,
    PRIMARY KEY (parent_id, job_id)
);

-- The error recorded on a continuation cancelled because a parent did not succeed.
CREATE FUNCTION {schema}.parent_error(parent bigint, parent_state text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', 'ParentNotSucceeded',
        'message', format('parent job %s %s; this job was cancelled', parent,
                          CASE parent_state WHEN 'failed' THEN 'failed'
                                            ELSE 'was ' || parent_state END),
        'traceback', NULL, 'attempt', 0, 'at', now());
$$;

-- settle_children(parent, parent_state): the jobs awaiting `parent`, which just ended in
-- `parent_state` ('succeeded', 'failed', 'cancelled' or 'deleted'), count it as done.
-- One whose parents are all done is queued (NOTIFY: a worker starts it at once); one whose
-- parent did not succeed is cancelled unless it runs anyway, and its own children are
-- settled in turn by this loop, so a long chain needs no deep trigger recursion.
-- The decrement of pending_parents locks the child's row, so parents finishing in
-- concurrent transactions never both miss the last one.
CREATE FUNCTION {schema}.settle_children(parent bigint, parent_state text) RETURNS void
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
               SET state = 'cancelled', finished_at = now(), has_children = false,
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

-- Every path that ends a job (the worker's outcomes, a lost worker's last attempt,
-- cancel_job, delete_job, retention, plain SQL) settles its children here.
CREATE FUNCTION {schema}.job_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM {schema}.settle_children(OLD.id, 'deleted');
    ELSE
        PERFORM {schema}.settle_children(NEW.id, NEW.state);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_settle_children AFTER UPDATE ON {schema}.jobs
    FOR EACH ROW
    WHEN (NEW.has_children AND NEW.state IN ('succeeded', 'failed', 'cancelled')
          AND OLD.state NOT IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION {schema}.job_ended();

CREATE TRIGGER jobs_settle_children_on_delete AFTER DELETE ON {schema}.jobs
    FOR EACH ROW
    WHEN (OLD.has_children AND OLD.state NOT IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION {schema}.job_ended();

-- refuse_enqueue(missing_parents, duplicate): aborts the enqueue statement that calls it,
-- so nothing of that enqueue is stored. The constraint names let the client tell the two
-- apart; DETAIL carries what it needs for its message.
CREATE FUNCTION {schema}.refuse_enqueue(missing_parents bigint[], duplicate jsonb)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(missing_parents) > 0 THEN
        RAISE EXCEPTION 'no job % to continue after', array_to_string(missing_parents, ', ')
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'asyncjobs_unknown_parent',
                  DETAIL = array_to_string(missing_parents, ',');
    END IF;
    IF duplicate IS NOT NULL THEN
        RAISE EXCEPTION 'task % already has an active job with unique key %',
                        duplicate ->> 'task', duplicate ->> 'unique_key'
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'asyncjobs_unique_key',
                  DETAIL = duplicate::text;
    END IF;
    RETURN false;
END $$;
