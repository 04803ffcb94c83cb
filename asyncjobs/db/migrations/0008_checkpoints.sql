-- Checkpoints: where a long job is, saved by the job (current_job().checkpoint(value)) and
-- read by its next attempt, after a deploy, a crash or a retry. Written like progress, by
-- the worker's progress writer, guarded by the attempt that saved it. Kept when the job
-- ends (for inspection); a requeue clears it unless asked to keep it.
ALTER TABLE {schema}.jobs ADD COLUMN checkpoint jsonb, ADD COLUMN checkpoint_at timestamptz;

-- requeue_job(id, keep_checkpoint): as before, and the job's checkpoint is cleared unless
-- keep_checkpoint. Replaces requeue_job(bigint): requeue_job(42) still works.
DROP FUNCTION {schema}.requeue_job(bigint);
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
