-- The public SQL functions refuse what the client refuses, in its words (see schema.sql):
-- enqueue() a run_at before 1900 (-infinity was stored, and every start of its claim, listing
-- and queue count then failed on it) and a number in args or kwargs beyond a float's range
-- (a worker could not read the job, which then failed unrun); pause_queue() and
-- resume_queue() a bad queue name ('' was paused; NULL and long names gave raw errors),
-- through check_queue_name, which enqueue() uses too.
CREATE FUNCTION {schema}.check_queue_name(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF queue_name IS NULL OR queue_name !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid queue name %: use 1-64 letters, digits, ''_'', ''.'', '':'' or ''-''',
                        quote_nullable(left(queue_name, 80))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION {schema}.enqueue(
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
    allow_unknown_task boolean DEFAULT false
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
    entry bigint := nextval('{schema}.queue_id_seq');
    stored record;
    close text;
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

    due := coalesce(enqueue.run_at, now() + make_interval(secs => coalesce(enqueue.delay, 0)));
    -- A unique key taken by an active job returns that row: ON CONFLICT DO UPDATE (a no-op
    -- assignment) sees it even when it was committed after this statement began.
    INSERT INTO {schema}.jobs AS j
           (id, task, queue, priority, args, kwargs, max_attempts, timeout, run_at, state,
            queue_entry, unique_key, active_key)
    OVERRIDING SYSTEM VALUE
    VALUES (new_id, enqueue.task, job_queue, coalesce(enqueue.priority, known.priority, 0),
            coalesce(enqueue.args, '[]'), coalesce(enqueue.kwargs, '{}'), job_max_attempts,
            job_timeout, due, CASE WHEN due > now() THEN 'scheduled' ELSE 'queued' END, entry,
            enqueue.unique_key, enqueue.unique_key)
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
    INSERT INTO {schema}.queue (id, job_id, queue, priority, run_at)
    VALUES (entry, new_id, job_queue, stored.priority, due);
    PERFORM {schema}.notify_enqueue(job_queue, due);
    RETURN new_id;
END $$;

CREATE OR REPLACE FUNCTION {schema}.pause_queue(queue_name text) RETURNS boolean
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

CREATE OR REPLACE FUNCTION {schema}.resume_queue(queue_name text) RETURNS boolean
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
