-- asyncjobs schema, version 1. `{schema}` is the quoted schema name.

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
