-- The asyncjobs schema as a fresh install has it: what `asyncjobs migrate` (or an App with
-- migrate=True) creates, in one file, for review or for your own migration tool.
--
-- `{schema}` is the quoted schema name (e.g. "asyncjobs") and `{channel_prefix}` its bare
-- form (asyncjobs); `asyncjobs.sql.render(text, schema)` fills both. tests/test_migrations.py
-- checks that this file and the numbered migrations build the same catalog: when a migration
-- is added, change this file to match and record its version at the end.

CREATE SCHEMA IF NOT EXISTS {schema};

-- Which numbered migrations (asyncjobs/migrations/NNNN_name.sql) have been applied.
CREATE TABLE {schema}.migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE {schema}.queue_id_seq;

-- One row per job. Control-plane writes (cancel, requeue, delete) touch only this table,
-- so they never wait for a running job: workers hold their locks on `queue` rows.
-- fillfactor leaves room on each page so the two updates of a job's run stay HOT.
CREATE TABLE {schema}.jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task         text        NOT NULL,
    queue        text        NOT NULL,
    priority     integer     NOT NULL DEFAULT 0,
    args         jsonb       NOT NULL DEFAULT '[]',
    kwargs       jsonb       NOT NULL DEFAULT '{}',
    state        text        NOT NULL,
    attempt      integer     NOT NULL DEFAULT 0,
    max_attempts integer     NOT NULL,
    timeout      double precision,
    run_at       timestamptz NOT NULL DEFAULT now(),
    queue_entry  bigint,
    worker_id    uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    result       jsonb,
    error        jsonb,
    errors       jsonb       NOT NULL DEFAULT '[]',
    CONSTRAINT jobs_state_valid CHECK (
        state IN ('scheduled', 'queued', 'processing', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT jobs_max_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT jobs_timeout_positive CHECK (timeout IS NULL OR timeout > 0)
) WITH (fillfactor = 70);

-- "This job may run from run_at". `id` is the claim token: a claimed row is valid only
-- while it is its job's jobs.queue_entry. No foreign key: nothing may ever wait on a
-- queue row that a worker holds.
CREATE TABLE {schema}.queue (
    id       bigint      PRIMARY KEY DEFAULT nextval('{schema}.queue_id_seq'),
    job_id   bigint      NOT NULL,
    queue    text        NOT NULL,
    priority integer     NOT NULL,
    run_at   timestamptz NOT NULL
);
ALTER SEQUENCE {schema}.queue_id_seq OWNED BY {schema}.queue.id;
CREATE INDEX queue_fetch_idx ON {schema}.queue (queue, priority DESC, run_at, id);

CREATE TABLE {schema}.workers (
    id                uuid        PRIMARY KEY,
    host              text        NOT NULL,
    pid               integer     NOT NULL,
    queues            text[]      NOT NULL,
    concurrency       integer     NOT NULL,
    running           integer     NOT NULL DEFAULT 0,
    started_at        timestamptz NOT NULL DEFAULT now(),
    heartbeat_at      timestamptz NOT NULL DEFAULT now(),
    stop_requested_at timestamptz,
    stop_grace        double precision
);

-- The error recorded for an attempt whose worker died (or lost its claim) mid-run.
CREATE FUNCTION {schema}.worker_lost_error(attempt integer, message text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('type', 'WorkerLost', 'message', message, 'traceback', NULL,
                              'attempt', attempt, 'at', now());
$$;

-- Removes a job's queue row unless a worker holds it; a held row goes away when that
-- worker commits, and is dropped as stale if it ever comes back.
CREATE FUNCTION {schema}.drop_queue_entry(entry bigint) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM {schema}.queue
     WHERE id = (SELECT id FROM {schema}.queue WHERE id = entry FOR UPDATE SKIP LOCKED);
$$;

-- cancel_job(id): the job will not run (again); a running attempt is interrupted at once.
-- Returns the state the job had, or NULL when there is no such job.
CREATE FUNCTION {schema}.cancel_job(job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    old_state text;
    old_entry bigint;
BEGIN
    SELECT state, queue_entry INTO old_state, old_entry
      FROM {schema}.jobs WHERE id = job FOR UPDATE;
    IF NOT FOUND OR old_state IN ('succeeded', 'failed', 'cancelled') THEN
        RETURN old_state;
    END IF;
    UPDATE {schema}.jobs
       SET state = 'cancelled', queue_entry = NULL, finished_at = now()
     WHERE id = job;
    PERFORM {schema}.drop_queue_entry(old_entry);
    IF old_state = 'processing' THEN
        PERFORM pg_notify('{channel_prefix}.control', format('cancelled %s %s', job, old_entry));
    END IF;
    PERFORM pg_notify('{channel_prefix}.done', job::text);
    RETURN old_state;
END $$;

-- requeue_job(id): run the job again from its first attempt, now; a running attempt is
-- interrupted at once. Returns the state the job had, or NULL when there is no such job.
CREATE FUNCTION {schema}.requeue_job(job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    old_state text;
    old_entry bigint;
    new_entry bigint := nextval('{schema}.queue_id_seq');
    job_queue text;
BEGIN
    SELECT state, queue_entry, queue INTO old_state, old_entry, job_queue
      FROM {schema}.jobs WHERE id = job FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE {schema}.jobs
       SET state = 'queued', attempt = 0, run_at = now(), queue_entry = new_entry,
           worker_id = NULL, started_at = NULL, finished_at = NULL, result = NULL, error = NULL
     WHERE id = job;
    INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
    SELECT new_entry, id, queue, priority, run_at FROM {schema}.jobs WHERE id = job;
    PERFORM {schema}.drop_queue_entry(old_entry);
    IF old_state = 'processing' THEN
        PERFORM pg_notify('{channel_prefix}.control', format('requeued %s %s', job, old_entry));
    END IF;
    PERFORM pg_notify('{channel_prefix}.enqueue', job_queue);
    RETURN old_state;
END $$;

-- delete_job(id): the job and its record are gone; a running attempt is interrupted at once.
-- Returns the state the job had, or NULL when there is no such job.
CREATE FUNCTION {schema}.delete_job(job bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    old_state text;
    old_entry bigint;
BEGIN
    DELETE FROM {schema}.jobs WHERE id = job RETURNING state, queue_entry INTO old_state, old_entry;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM {schema}.drop_queue_entry(old_entry);
    IF old_state = 'processing' THEN
        PERFORM pg_notify('{channel_prefix}.control', format('deleted %s %s', job, old_entry));
    END IF;
    PERFORM pg_notify('{channel_prefix}.done', job::text);
    RETURN old_state;
END $$;

-- stop_workers(grace): every running worker, on every machine, stops: it takes no new
-- jobs, lets running ones finish for `grace` seconds, then requeues the rest.
-- The flag in `workers` is the fallback for a worker whose listener missed the NOTIFY.
CREATE FUNCTION {schema}.stop_workers(grace double precision DEFAULT 0) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    stopped integer;
BEGIN
    UPDATE {schema}.workers SET stop_requested_at = now(), stop_grace = grace
     WHERE stop_requested_at IS NULL;
    GET DIAGNOSTICS stopped = ROW_COUNT;
    PERFORM pg_notify('{channel_prefix}.control', format('stop %s *', coalesce(grace, 0)));
    RETURN stopped;
END $$;

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

-- This file is migrations 1-2.
INSERT INTO {schema}.migrations (version, name) VALUES (1, 'initial'), (2, 'queue_order');
