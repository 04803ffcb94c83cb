-- Job lifecycle: a per-call retry backoff, progress and log lines reported by a running
-- job, and an index for pruning finished jobs.

-- The backoff given to `.options(retry=Backoff(...))` ({"base", "cap", "jitter"}); NULL
-- means the task's own.
ALTER TABLE {schema}.jobs ADD COLUMN backoff jsonb;
-- Reported by the running job (asyncjobs.current_job().progress / .log), written in batches.
ALTER TABLE {schema}.jobs ADD COLUMN progress double precision;
ALTER TABLE {schema}.jobs ADD COLUMN progress_message text;
ALTER TABLE {schema}.jobs ADD COLUMN log jsonb NOT NULL DEFAULT '[]';

-- Retention deletes finished jobs by age. Only finished_at is indexed (not state), so the
-- start of a job, which changes its state, stays a HOT update.
CREATE INDEX jobs_finished_idx ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;
