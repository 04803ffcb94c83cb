-- asyncjobs schema, version 2: claims that use the queue index, in the worker's queue order.
-- `{schema}` is the quoted schema name.

-- claim_jobs(queues, wanted): inside the caller's held transaction, deletes and returns up
-- to `wanted` due queue rows: from the first queue listed, then the next, and within a queue
-- by priority, run_at, id. Each queue is a scalar filter, so each uses queue_fetch_idx
-- (`queue = ANY(...)` made PostgreSQL scan and sort the whole backlog), and only the rows
-- returned are locked. `= ANY (ARRAY(...))`, not `IN (...)`: the ids are computed once and
-- the rows fetched by primary key, whatever plan PL/pgSQL caches (a generic plan for IN,
-- not knowing the limit, hash-joins a sequential scan of the whole queue).
-- statement_timestamp(), not now(): a worker begins its next claim transaction ahead of
-- time, so now() would be older than the claim.
CREATE FUNCTION {schema}.claim_jobs(queues text[], wanted integer)
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
         WHERE q.id = ANY (ARRAY(
                   SELECT c.id FROM {schema}.queue AS c
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
CREATE FUNCTION {schema}.watch_held(queues text[], mine bigint[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    queue_name text;
    candidate bigint;
BEGIN
    FOREACH queue_name IN ARRAY queues LOOP
        SELECT c.id INTO candidate FROM {schema}.queue AS c
         WHERE c.queue = queue_name AND c.run_at <= statement_timestamp()
           AND c.id <> ALL (mine)
         ORDER BY c.priority DESC, c.run_at, c.id
         LIMIT 1;
        IF FOUND THEN
            PERFORM 1 FROM {schema}.queue AS c WHERE c.id = candidate FOR UPDATE;
            RETURN CASE WHEN FOUND THEN 'free' ELSE 'gone' END;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
