-- enqueue() takes continuations: after => ARRAY[ids] and on_parent_failure => 'cancel' or
-- 'run', stored as statement enqueue_unique_or_after stores the client's (see schema.sql).
-- CREATE OR REPLACE can't add parameters, and a second enqueue() beside the old one would
-- make every call that leaves them out ambiguous, so the old one goes. The new parameters
-- come last: a call that passes the old ones by position means what it meant.
--
-- A DROP would lose what was granted or revoked on the old function (EXECUTE for an app's
-- role only, say), and the new one would be anyone's to call again: the old one is renamed,
-- the new one takes its privileges, then the old one is dropped.
ALTER FUNCTION {schema}.enqueue(
    text, jsonb, jsonb, text, integer, integer, double precision, double precision,
    timestamp with time zone, text, text, boolean
) RENAME TO enqueue_before_17;

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

-- Each name is unique now, so a bare name finds its function.
DO $$
DECLARE
    new_function regprocedure := '{schema}.enqueue'::regproc::oid::regprocedure;
    old_acl aclitem[];
    holder record;
BEGIN
    SELECT p.proacl INTO old_acl FROM pg_proc AS p
     WHERE p.oid = '{schema}.enqueue_before_17'::regproc;
    -- NULL: the defaults (EXECUTE for PUBLIC), which the new function has too.
    IF old_acl IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', new_function);
        FOR holder IN SELECT a.grantee, a.is_grantable FROM aclexplode(old_acl) AS a
                       WHERE a.privilege_type = 'EXECUTE' LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', new_function,
                           CASE WHEN holder.grantee = 0 THEN 'PUBLIC'
                                ELSE holder.grantee::regrole::text END,
                           CASE WHEN holder.is_grantable THEN ' WITH GRANT OPTION' END);
        END LOOP;
    END IF;
END $$;

DROP FUNCTION {schema}.enqueue_before_17(
    text, jsonb, jsonb, text, integer, integer, double precision, double precision,
    timestamp with time zone, text, text, boolean
);
