-- Job lifecycle: a per-call retry backoff, progress and log lines reported by a running
-- job, and an index for pruning finished jobs.

-- The backoff given to `.options(retry=Backoff(...))` ({"base", "cap", "jitter"}); NULL
-- means the task's own.
ALTER TABLE {schema}.jobs ADD COLUMN backoff jsonb;
-- Reported by the running job (asyncjobs.current_job().progress / .log), written in batches.
ALTER TABLE {schema}.jobs ADD COLUMN progress double precision;
ALTER TABLE {schema}.jobs ADD COLUMN progress_message text;
ALTER TABLE {schema}.jobs ADD COLUMN log jsonb NOT NULL DEFAULT '[]';

-- Retention looks for finished jobs among those created long enough ago (a job finishes
-- after it is created). created_at, not finished_at: a column that never changes keeps the
-- updates that start and finish a job HOT (measured: an index on finished_at made 2 of 3
-- of those updates non-HOT).
CREATE INDEX jobs_created_idx ON {schema}.jobs (created_at);
