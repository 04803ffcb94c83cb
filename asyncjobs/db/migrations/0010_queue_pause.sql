-- Paused queues: no worker claims from a queue named here. Stored (not only pushed) so that
-- a worker started later, or one whose listener reconnects, honours it; claim_jobs reads it.
CREATE TABLE {schema}.paused_queues (
    queue     text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);

-- claim_jobs(queues, wanted): as before (migration 6), but a paused queue is skipped.
-- "Paused from the moment pause_queue returns": a claim already running when the pause
-- commits must not claim from the queue after that. So a claim holds a shared advisory lock
-- (taken and released inside this call, never held with the claim transaction) while it
-- reads paused_queues and deletes, and pause_queue takes it exclusively before it commits:
-- a claim that began before the pause finishes first; one that comes later waits for the
-- pause's commit, and reads paused_queues in a snapshot taken after it (each statement of a
-- PL/pgSQL function takes its own).
-- If this call fails half-way, the session keeps the shared lock: the worker then gives the
-- claim up, which ends the session and with it the lock.
CREATE OR REPLACE FUNCTION {schema}.claim_jobs(queues text[], wanted integer)
RETURNS TABLE (id bigint, job_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    queue_name text;
    paused text[];
    got integer := 0;
    n integer;
BEGIN
    PERFORM pg_advisory_lock_shared(hashtext('{schema}.paused_queues'), 0);
    SELECT array_agg(p.queue) INTO paused FROM {schema}.paused_queues AS p;
    FOREACH queue_name IN ARRAY queues LOOP
        CONTINUE WHEN queue_name = ANY (paused);
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
    PERFORM pg_advisory_unlock_shared(hashtext('{schema}.paused_queues'), 0);
END $$;

-- pause_queue(queue): no worker claims from `queue` once this commits (see claim_jobs);
-- running jobs go on. Returns whether it was running (not paused) before. Every claim, of
-- every queue, waits from the lock until the commit: call it in a short transaction of
-- its own (the client does), never inside a long one.
CREATE FUNCTION {schema}.pause_queue(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    added boolean;
BEGIN
    INSERT INTO {schema}.paused_queues (queue) VALUES (queue_name)
        ON CONFLICT (queue) DO NOTHING;
    added := FOUND;
    -- Waits for claims already running; later ones wait for this commit.
    PERFORM pg_advisory_xact_lock(hashtext('{schema}.paused_queues'), 0);
    PERFORM pg_notify('{channel_prefix}.control', 'paused ' || queue_name);
    RETURN added;
END $$;

-- resume_queue(queue): workers claim from `queue` again, woken at once. Returns whether it
-- was paused.
CREATE FUNCTION {schema}.resume_queue(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {schema}.paused_queues WHERE queue = queue_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('{channel_prefix}.control', 'resumed ' || queue_name);
    PERFORM pg_notify('{channel_prefix}.enqueue', queue_name);
    RETURN true;
END $$;
