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
    -- 0003: the per-call backoff (NULL: the task's), and what the running job reports.
    backoff          jsonb,
    progress         double precision,
    progress_message text,
    log              jsonb   NOT NULL DEFAULT '[]',
    -- At most one active job of a task per unique_key; active_key is the key while the
    -- job is scheduled, queued, awaiting or processing, NULL after (see the index below).
    -- Each statement that changes a job's state sets it, and jobs_active_key_valid checks
    -- that it did. (A generated column until 0006: computing one copies every column of
    -- the row, on every insert and update, which slowed bulk enqueues.)
    unique_key   text,
    active_key   text,
    -- Continuations: the jobs this one runs after, what it does when one of them does
    -- not succeed ('cancel' or 'run'), how many have not finished yet, and whether any
    -- job waits on this one.
    parents           bigint[],
    on_parent_failure text,
    pending_parents   integer NOT NULL DEFAULT 0,
    has_children      boolean NOT NULL DEFAULT false,
    -- 0007: the key of the worker that owns a handed-off attempt (NULL while a claim
    -- owns it; see rescue_worker).
    lease             integer,
    -- 0007: the worker that may still be running an older attempt (its claim was lost,
    -- or the job was requeued while it ran): the current attempt's code runs only once
    -- that worker has stopped it (see worker/takeover.py).
    stopping_on       uuid,
    -- 0008: the job's checkpoint (current_job().checkpoint) and when it was saved.
    checkpoint        jsonb,
    checkpoint_at     timestamptz,
    -- 0011: the trace context of the enqueue that made the job (W3C traceparent and
    -- tracestate as a JSON object), NULL when the enqueue was not traced.
    trace_context     jsonb,
    CONSTRAINT jobs_state_valid CHECK (
        state IN ('scheduled', 'queued', 'awaiting', 'processing', 'succeeded', 'failed',
                  'cancelled')),
    CONSTRAINT jobs_max_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT jobs_timeout_positive CHECK (timeout IS NULL OR timeout > 0),
    CONSTRAINT jobs_active_key_valid CHECK (
        active_key IS NOT DISTINCT FROM
        CASE WHEN state IN ('scheduled', 'queued', 'awaiting', 'processing') THEN unique_key END)
) WITH (fillfactor = 70);

CREATE INDEX jobs_lease_idx ON {schema}.jobs (lease) WHERE lease IS NOT NULL;

-- "This job may run from run_at". `id` is the claim token: a claimed row is valid only
-- while it is its job's jobs.queue_entry. No foreign key: nothing may ever wait on a
-- queue row that a worker holds. No primary key either (0006): ids come from a sequence,
-- and a row is found through queue_fetch_idx by its job's (queue, priority, run_at, id),
-- which are the job's own while the job's queue_entry is this row; a claim deletes by
-- ctid. That index insert slowed every bulk enqueue (see benchmarks/README.md).
CREATE TABLE {schema}.queue (
    id       bigint      NOT NULL DEFAULT nextval('{schema}.queue_id_seq'),
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
    stop_grace        double precision,
    -- See rescue_worker below.
    lease_key         integer
);
-- Keys of workers: every session a worker holds work on holds its key's advisory lock
-- (hashtext('<schema>.workers'), key) in shared mode, so the exclusive lock is granted only
-- once the worker is gone (see rescue_worker and worker/watcher.py).
CREATE SEQUENCE {schema}.worker_key_seq AS integer CYCLE;

-- The error recorded for an attempt whose worker died (or lost its claim) mid-run.
CREATE FUNCTION {schema}.worker_lost_error(attempt integer, message text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('type', 'WorkerLost', 'message', message, 'traceback', NULL,
                              'attempt', attempt, 'at', now());
$$;

-- notify_enqueue(queue, due): wakes the workers of `queue` for a row due at `due`, in the
-- words every statement that queues rows uses: the queue's name, and for a row due later
-- its epoch too ('emails@1764000000.5'), so that an idle worker can sleep exactly until then.
CREATE FUNCTION {schema}.notify_enqueue(queue_name text, due timestamptz) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('{channel_prefix}.enqueue',
                     CASE WHEN due > now() THEN queue_name || '@' || extract(epoch FROM due)
                          ELSE queue_name END);
$$;

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
CREATE FUNCTION {schema}.cancel_job(job bigint) RETURNS text
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

-- requeue_job(id, keep_checkpoint): run the job again from its first attempt, now; a
-- running attempt is interrupted at once. Its checkpoint is cleared unless keep_checkpoint.
-- Returns the state the job had, or NULL when there is no such job.
CREATE FUNCTION {schema}.requeue_job(job bigint, keep_checkpoint boolean DEFAULT false)
RETURNS text
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
           started_at = NULL, finished_at = NULL, result = NULL, error = NULL,
           checkpoint = CASE WHEN keep_checkpoint THEN checkpoint END,
           checkpoint_at = CASE WHEN keep_checkpoint THEN checkpoint_at END
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
CREATE FUNCTION {schema}.delete_job(job bigint) RETURNS text
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

-- Paused queues: no worker claims from a queue named here. Stored (not only pushed) so that
-- a worker started later, or one whose listener reconnects, honours it; claim_jobs reads it.
CREATE TABLE {schema}.paused_queues (
    queue     text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);

-- claim_jobs(queues, wanted): inside the caller's held transaction, deletes and returns up
-- to `wanted` due queue rows: from the first queue listed, then the next, and within a queue
-- by priority, run_at, id. Each queue is a scalar filter, so each uses queue_fetch_idx
-- (`queue = ANY(...)` made PostgreSQL scan and sort the whole backlog), and only the rows
-- returned are locked. `= ANY (ARRAY(...))`, not `IN (...)`: the rows are found once and
-- then fetched by ctid, whatever plan PL/pgSQL caches (a generic plan for IN, not knowing
-- the limit, hash-joins a sequential scan of the whole queue).
-- statement_timestamp(), not now(): a worker begins its next claim transaction ahead of
-- time, so now() would be older than the claim.
-- A paused queue (paused_queues, below) is skipped. "Paused from the moment pause_queue
-- returns": a claim already running when the pause commits must not claim from the queue
-- after that. So a claim holds a shared advisory lock (taken and released inside this call,
-- never held with the claim transaction) while it reads paused_queues and deletes, and
-- pause_queue takes it exclusively before it commits: a claim that began before the pause
-- finishes first; one that comes later waits for the pause's commit, and reads
-- paused_queues in a snapshot taken after it (each statement of a PL/pgSQL function takes
-- its own). If this call fails half-way, the session keeps the shared lock: the worker then
-- gives the claim up, which ends the session and with it the lock.
CREATE FUNCTION {schema}.claim_jobs(queues text[], wanted integer)
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

-- check_queue_name(name): raise, in the client's words, unless `name` is a queue name the
-- client would take (migration 16: enqueue, pause_queue and resume_queue share it).
CREATE FUNCTION {schema}.check_queue_name(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF queue_name IS NULL OR queue_name !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid queue name %: use 1-64 letters, digits, ''_'', ''.'', '':'' or ''-''',
                        quote_nullable(left(queue_name, 80))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
    -- (Migration 16: '' was paused, NULL a raw error.)
    PERFORM {schema}.check_queue_name(queue_name);
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
    PERFORM {schema}.check_queue_name(queue_name);
    DELETE FROM {schema}.paused_queues WHERE queue = queue_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('{channel_prefix}.control', 'resumed ' || queue_name);
    PERFORM pg_notify('{channel_prefix}.enqueue', queue_name);
    RETURN true;
END $$;

-- Unique jobs and continuations (migration 4).
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

-- Recurring jobs: one row per schedule. A worker enqueues a due schedule's job and moves
-- next_run_at on in one transaction, guarded by the next_run_at it read, so however many
-- workers run, each tick makes exactly one job.
CREATE TABLE {schema}.schedules (
    name         text        PRIMARY KEY,
    task         text        NOT NULL,
    cron         text        NOT NULL,
    timezone     text        NOT NULL DEFAULT 'UTC',
    args         jsonb       NOT NULL DEFAULT '[]',
    kwargs       jsonb       NOT NULL DEFAULT '{}',
    queue        text        NOT NULL,
    priority     integer     NOT NULL DEFAULT 0,
    max_attempts integer     NOT NULL,
    timeout      double precision,
    missed       text        NOT NULL DEFAULT 'once',
    declared     boolean     NOT NULL DEFAULT false,
    paused       boolean     NOT NULL DEFAULT false,
    next_run_at  timestamptz NOT NULL,
    last_run_at  timestamptz,
    last_job_id  bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_missed_valid CHECK (missed IN ('once', 'skip')),
    CONSTRAINT schedules_max_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT schedules_timeout_positive CHECK (timeout IS NULL OR timeout > 0)
);
CREATE INDEX schedules_due_idx ON {schema}.schedules (next_run_at) WHERE NOT paused;

-- Wakes every worker's scheduler when a schedule may be due sooner than it thought: a new
-- one, an earlier next_run_at, a resume. Also for changes made with plain SQL.
CREATE FUNCTION {schema}.schedules_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel_prefix}.schedules', '');
    RETURN NULL;
END $$;
CREATE TRIGGER schedules_added AFTER INSERT ON {schema}.schedules
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.schedules_changed();
CREATE TRIGGER schedules_sooner AFTER UPDATE ON {schema}.schedules
    FOR EACH ROW WHEN (NEW.next_run_at < OLD.next_run_at OR (OLD.paused AND NOT NEW.paused))
    EXECUTE FUNCTION {schema}.schedules_changed();

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
CREATE FUNCTION {schema}.rescue_worker(dead integer) RETURNS integer
LANGUAGE sql AS $$
    SELECT jsonb_array_length({schema}.rescue_worker_jobs(dead));
$$;

-- attempt_is_current(job, entry, attempt): a job's own fence. True only while the job is
-- 'processing' in that attempt (its queue_entry and attempt number, as the running job
-- knows them: current_job().fence). It locks the job's row FOR SHARE until the caller's
-- transaction ends, so no cancel, requeue, delete, rescue or next attempt can commit in
-- between: a write in that transaction guarded by it, e.g.
--   INSERT INTO payments ... SELECT ... WHERE asyncjobs.attempt_is_current($1, $2, $3)
-- is made by the current attempt or not at all. (The attempt number matters: a claimed row
-- taken over after its claim was lost keeps its queue_entry and starts the next attempt.)
-- Keep such transactions short: while one is open, every write about the job waits.
CREATE FUNCTION {schema}.attempt_is_current(job bigint, entry bigint, attempt integer)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM {schema}.jobs AS j
      WHERE j.id = job AND j.queue_entry = entry AND j.attempt = attempt_is_current.attempt
        AND j.state = 'processing'
        FOR SHARE;
    RETURN FOUND;
END $$;

-- Task names and enqueue() (migration 12).

-- Every task name a worker on this schema has had, with that task's default options as the
-- last worker to start had them. Workers add and refresh their app's tasks as they start;
-- nothing removes a name, so a task whose workers are all gone (between deploys, say) stays
-- known. An enqueue by name checks it (client, CLI, and enqueue() below).
CREATE TABLE {schema}.task_names (
    name          text             PRIMARY KEY,
    queue         text             NOT NULL,
    priority      integer          NOT NULL,
    max_attempts  integer          NOT NULL,
    timeout       double precision,
    first_seen_at timestamptz      NOT NULL DEFAULT now(),
    last_seen_at  timestamptz      NOT NULL DEFAULT now()
);

-- enqueue(task, args => '[...]', kwargs => '{...}', ...): enqueue a job from any language,
-- tool or trigger; returns its id. It is part of the caller's transaction, and so is the
-- NOTIFY that wakes workers: they hear of the job when that commits. An option left NULL is
-- the task's (as its workers last recorded it), else asyncjobs' default. The checks are the
-- client's, with the same words: a task no worker has had (allow_unknown_task => true to
-- enqueue it anyway), a bad queue name, max_attempts < 1, a timeout or delay that is not a
-- finite number of seconds, delay and run_at together, a run_at before 1900 or from 9000,
-- args not a JSON array, kwargs not an object, a number in them beyond a float's range (a
-- worker could not read it), a unique key that is empty or too long, `after` empty or not
-- job ids, an on_parent_failure other than 'cancel' or 'run', a parent that does not exist.
-- With unique_key, a task's active job with that key is returned instead (on_duplicate =>
-- 'raise': refused as the client refuses it). With after => ARRAY[ids], a continuation,
-- stored as statement enqueue_unique_or_after (queries.sql) stores the client's. Replaced by
-- migrations 16 (the run_at range, the numbers) and 17 (after, on_parent_failure).
CREATE FUNCTION {schema}.enqueue(
    task text,
    args jsonb DEFAULT '[]',
    kwargs jsonb DEFAULT '{}',
    queue text DEFAULT NULL,
    priority integer DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    timeout double precision DEFAULT NULL,
    delay double precision DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    unique_key text DEFAULT NULL,
    on_duplicate text DEFAULT 'existing',
    allow_unknown_task boolean DEFAULT false,
    after bigint[] DEFAULT NULL,
    on_parent_failure text DEFAULT 'cancel'
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    known record;
    job_queue text;
    job_max_attempts integer;
    job_timeout double precision;
    due timestamptz;
    new_id bigint := nextval('{schema}.jobs_id_seq');
    entry bigint;
    stored record;
    close text;
    parent_ids bigint[];
    parent_states jsonb := '{}';
    missing bigint[];
    unfinished integer;
    blocker bigint;
    job_state text;
    bad_id bigint;
BEGIN
    IF enqueue.task IS NULL OR btrim(enqueue.task) = '' THEN
        RAISE EXCEPTION 'invalid task name %: it is empty', quote_nullable(enqueue.task)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(enqueue.task) > 1000 THEN
        RAISE EXCEPTION 'invalid task name: it is % characters long (at most 1000)',
                        length(enqueue.task)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.queue, t.priority, t.max_attempts, t.timeout INTO known
      FROM {schema}.task_names AS t WHERE t.name = enqueue.task;
    IF NOT FOUND AND NOT coalesce(enqueue.allow_unknown_task, false) THEN
        -- Close matches (roughly: the client's are difflib's): the same name but for case,
        -- the same function name in another module, or one whose function name starts the
        -- same way.
        SELECT string_agg(quote_literal(c.name), ' or ') INTO close
          FROM (SELECT t.name FROM {schema}.task_names AS t
                 WHERE lower(t.name) = lower(enqueue.task)
                    OR split_part(t.name, '.', -1) = split_part(enqueue.task, '.', -1)
                    OR left(split_part(t.name, '.', -1), 3)
                       = left(split_part(enqueue.task, '.', -1), 3)
                 ORDER BY t.name LIMIT 3) AS c;
        RAISE EXCEPTION '%', format('no worker has ever had a task named %s%s',
                                    quote_literal(enqueue.task),
                                    coalesce('; did you mean ' || close || '?', ''))
            USING ERRCODE = 'undefined_object',
                  HINT = 'Task names are module.function unless the task was given name=. '
                         'To enqueue it anyway (its workers are not deployed yet), pass '
                         'allow_unknown_task => true.';
    END IF;
    job_queue := coalesce(enqueue.queue, known.queue, 'default');
    PERFORM {schema}.check_queue_name(job_queue);
    job_max_attempts := coalesce(enqueue.max_attempts, known.max_attempts, 3);
    IF job_max_attempts < 1 THEN
        RAISE EXCEPTION 'max_attempts must be an integer >= 1, got %', job_max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    job_timeout := coalesce(enqueue.timeout, known.timeout);
    IF job_timeout IS NOT NULL
       AND NOT (job_timeout > 0 AND job_timeout <= 1e12 AND job_timeout <> 'NaN') THEN
        RAISE EXCEPTION 'timeout must be seconds > 0 (a finite number, at most 1e12), got %',
                        job_timeout
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.delay IS NOT NULL
       AND NOT (enqueue.delay >= 0 AND enqueue.delay <= 100 * 365.25 * 86400
                AND enqueue.delay <> 'NaN') THEN
        RAISE EXCEPTION 'delay must be seconds >= 0 (a finite number, at most 100 years), got %',
                        enqueue.delay
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.run_at IS NOT NULL THEN
        IF enqueue.delay IS NOT NULL THEN
            RAISE EXCEPTION 'pass delay or run_at, not both'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- As the client's: -infinity (or year 1) is a mistake, not "now", and PostgreSQL
        -- can't subtract -infinity from now().
        IF enqueue.run_at < '1900-01-01 00:00:00+00' THEN
            RAISE EXCEPTION 'run_at % is too far in the past: use a time after 1900 (a time '
                            'in the past runs the job now)', enqueue.run_at
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT isfinite(enqueue.run_at) OR enqueue.run_at >= '9000-01-01 00:00:00+00' THEN
            RAISE EXCEPTION 'run_at % is too far in the future: use a time before 9000',
                            enqueue.run_at
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF jsonb_typeof(coalesce(enqueue.args, '[]')) <> 'array' THEN
        RAISE EXCEPTION 'args must be a JSON array (the positional arguments), got %',
                        enqueue.args
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(coalesce(enqueue.kwargs, '{}')) <> 'object' THEN
        RAISE EXCEPTION 'kwargs must be a JSON object (the keyword arguments), got %',
                        enqueue.kwargs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- jsonb holds any number; a worker reads JSON into floats, whose range ends near
    -- 1.8e308, and a job it can't read fails unrun. (Integers past 64 bits arrive as floats:
    -- jsonb can't tell 1e19 written as an integer from one written as a float.)
    IF jsonb_path_exists(jsonb_build_array(enqueue.args, enqueue.kwargs),
                         'lax $.** ? (@.type() == "number" && '
                         '(@ > 1.7976931348623157e308 || @ < -1.7976931348623157e308))') THEN
        RAISE EXCEPTION 'args and kwargs must hold numbers within a float''s range (about '
                        '1.8e308), got %', left(jsonb_build_array(enqueue.args,
                                                                  enqueue.kwargs)::text, 200)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.unique_key IS NOT NULL
       AND (btrim(enqueue.unique_key) = '' OR length(enqueue.unique_key) > 512) THEN
        RAISE EXCEPTION 'invalid unique_key %: it must be 1-512 characters, not only spaces',
                        quote_literal(left(enqueue.unique_key, 80))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.on_duplicate IS NULL OR enqueue.on_duplicate NOT IN ('existing', 'raise') THEN
        RAISE EXCEPTION 'on_duplicate must be ''existing'' (return the active job''s id) or '
                        '''raise'', got %', quote_nullable(enqueue.on_duplicate)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.after IS NOT NULL THEN
        IF cardinality(enqueue.after) = 0 THEN
            RAISE EXCEPTION 'after needs at least one job id (or leave it out)'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- ARRAY[[1, 2]] is a bigint[] too; the client takes a flat list of ids only.
        IF array_ndims(enqueue.after) > 1
           OR EXISTS (SELECT FROM unnest(enqueue.after) AS p WHERE p IS NULL) THEN
            RAISE EXCEPTION 'after must be job ids (integers), got %', enqueue.after
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT min(p) INTO bad_id FROM unnest(enqueue.after) AS p WHERE p < 1;
        IF bad_id IS NOT NULL THEN
            RAISE EXCEPTION 'a job id is an integer >= 1 (as enqueue returned it), got %', bad_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- As the client has them: in id order, each once.
        parent_ids := ARRAY(SELECT DISTINCT p FROM unnest(enqueue.after) AS p ORDER BY p);
    END IF;
    IF enqueue.on_parent_failure IS NULL OR enqueue.on_parent_failure NOT IN ('cancel', 'run') THEN
        RAISE EXCEPTION 'on_parent_failure must be ''cancel'' (the default) or ''run'' (run '
                        'anyway), got %', quote_nullable(enqueue.on_parent_failure)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF parent_ids IS NOT NULL THEN
        -- As statement enqueue_unique_or_after (queries.sql) does: the parents' rows are
        -- locked in id order before their state is read, and a parent that ends holds the
        -- same lock when its trigger looks for children, so a job enqueued here while its
        -- parent ends is never missed by both.
        SELECT coalesce(jsonb_object_agg(p.id::text, p.state), '{}') INTO parent_states
          FROM (SELECT j.id, j.state FROM {schema}.jobs AS j
                 WHERE j.id = ANY (parent_ids) ORDER BY j.id FOR NO KEY UPDATE) AS p;
        SELECT array_agg(p ORDER BY p) INTO missing
          FROM unnest(parent_ids) AS p WHERE NOT parent_states ? p::text;
        IF missing IS NOT NULL THEN
            -- The client's words; the SQLSTATE, constraint and DETAIL of the statement's
            -- refusal (refuse_enqueue), so a caller tells it apart the same way.
            RAISE EXCEPTION 'cannot enqueue after job %: no such job (it never existed or was '
                            'deleted); nothing was enqueued', array_to_string(missing, ', ')
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'asyncjobs_unknown_parent',
                      DETAIL = array_to_string(missing, ',');
        END IF;
        UPDATE {schema}.jobs AS j SET has_children = true
         WHERE j.id = ANY (parent_ids) AND NOT j.has_children;
        SELECT count(*) INTO unfinished
          FROM unnest(parent_ids) AS p
         WHERE parent_states ->> p::text NOT IN ('succeeded', 'failed', 'cancelled');
        IF enqueue.on_parent_failure = 'cancel' THEN
            SELECT min(p) INTO blocker
              FROM unnest(parent_ids) AS p
             WHERE parent_states ->> p::text IN ('failed', 'cancelled');
        END IF;
    END IF;

    due := coalesce(enqueue.run_at, now() + make_interval(secs => coalesce(enqueue.delay, 0)));
    -- A parent that already failed cancels the job at once (unless on_parent_failure =>
    -- 'run'); one with unfinished parents waits for them in 'awaiting', without a queue row.
    job_state := CASE WHEN blocker IS NOT NULL THEN 'cancelled'
                      WHEN unfinished > 0 THEN 'awaiting'
                      WHEN due > now() THEN 'scheduled'
                      ELSE 'queued' END;
    IF job_state IN ('queued', 'scheduled') THEN
        entry := nextval('{schema}.queue_id_seq');
    END IF;
    -- A unique key taken by an active job returns that row: ON CONFLICT DO UPDATE (a no-op
    -- assignment) sees it even when it was committed after this statement began. A job
    -- cancelled at once is not active, so it takes no key (and is stored, as the client's).
    INSERT INTO {schema}.jobs AS j
           (id, task, queue, priority, args, kwargs, max_attempts, timeout, run_at, state,
            queue_entry, unique_key, active_key, parents, on_parent_failure, pending_parents,
            finished_at, error)
    OVERRIDING SYSTEM VALUE
    VALUES (new_id, enqueue.task, job_queue, coalesce(enqueue.priority, known.priority, 0),
            coalesce(enqueue.args, '[]'), coalesce(enqueue.kwargs, '{}'), job_max_attempts,
            job_timeout, due, job_state, entry, enqueue.unique_key,
            CASE WHEN job_state <> 'cancelled' THEN enqueue.unique_key END, parent_ids,
            CASE WHEN parent_ids IS NOT NULL THEN enqueue.on_parent_failure END,
            coalesce(unfinished, 0), CASE WHEN job_state = 'cancelled' THEN now() END,
            CASE WHEN job_state = 'cancelled'
                 THEN {schema}.parent_error(blocker, parent_states ->> blocker::text) END)
        ON CONFLICT (task, active_key) WHERE active_key IS NOT NULL
        DO UPDATE SET unique_key = EXCLUDED.unique_key
    RETURNING j.id, j.state, j.priority INTO stored;
    IF stored.id <> new_id THEN
        IF enqueue.on_duplicate = 'raise' THEN
            PERFORM {schema}.refuse_enqueue(NULL, jsonb_build_object(
                'task', enqueue.task, 'unique_key', enqueue.unique_key, 'job', stored.id,
                'state', stored.state));
        END IF;
        RETURN stored.id;
    END IF;
    IF job_state = 'awaiting' THEN
        -- One row per unfinished parent: settle_children finds the job through it.
        INSERT INTO {schema}.job_parents (parent_id, job_id)
        SELECT p, new_id FROM unnest(parent_ids) AS p
         WHERE parent_states ->> p::text NOT IN ('succeeded', 'failed', 'cancelled');
    ELSIF entry IS NOT NULL THEN
        INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
        VALUES (entry, new_id, job_queue, stored.priority, due);
        PERFORM {schema}.notify_enqueue(job_queue, due);
    END IF;
    RETURN new_id;
END $$;

-- The dashboard's lookup by unique key (migrations 14 and 15). unique_key is set at enqueue
-- and never changed, so a job's start and finish stay HOT updates, and only jobs with a key
-- have an entry. A hash index: its entry is the key's hash, not the key, which a keyed
-- enqueue pays for within noise (a btree cost 6-17%). No index on state (its updates would
-- stop being HOT), none on the arguments (GIN indexes cost a batch enqueue 10-40%).
CREATE INDEX jobs_unique_key_idx ON {schema}.jobs USING hash (unique_key)
    WHERE unique_key IS NOT NULL;

-- unfinished_jobs: every job not yet finished (queued, scheduled, processing, awaiting),
-- found without a scan of `jobs` (no index on state: one would slow every start and
-- finish, and finished jobs may be millions): from the queue rows (queued, scheduled, and
-- processing under a claim; a row whose job has moved on is stale and left out), the
-- handed-off jobs' partial index, and job_parents for those awaiting their parents, each
-- joined to its job by primary key. Read by list_queues and queue_stats.
CREATE VIEW {schema}.unfinished_jobs AS
    SELECT j.id, j.queue, j.run_at, j.state
      FROM {schema}.queue AS q
      JOIN {schema}.jobs AS j ON j.id = q.job_id AND j.queue_entry = q.id
     WHERE j.state IN ('queued', 'scheduled', 'processing')
     UNION
    SELECT j.id, j.queue, j.run_at, j.state
      FROM {schema}.jobs AS j
     WHERE j.lease IS NOT NULL AND j.state = 'processing'
     UNION
    SELECT j.id, j.queue, j.run_at, j.state
      FROM {schema}.jobs AS j
     WHERE j.id IN (SELECT job_id FROM {schema}.job_parents) AND j.state = 'awaiting';

-- This file is migrations 1-17.
INSERT INTO {schema}.migrations (version, name)
VALUES (1, 'initial'), (2, 'queue_order'), (3, 'lifecycle'), (4, 'unique_and_continuations'),
       (5, 'schedules'), (6, 'lean_enqueue'), (7, 'liveness'), (8, 'checkpoints'),
       (9, 'notify_enqueue'), (10, 'queue_pause'), (11, 'trace_context'), (12, 'sql_enqueue'),
       (13, 'lost_attempts'), (14, 'dashboard_lookups'), (15, 'unique_key_hash'),
       (16, 'sql_function_checks'), (17, 'sql_enqueue_after');
