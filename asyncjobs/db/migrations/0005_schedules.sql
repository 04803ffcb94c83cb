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
