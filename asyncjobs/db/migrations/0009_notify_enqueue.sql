-- notify_enqueue(queue, due): wakes the workers of `queue` for a row due at `due`, in the
-- words every statement that queues rows uses: the queue's name, and for a row due later
-- its epoch too ('emails@1764000000.5'), so that an idle worker can sleep exactly until then.
-- (Numbered 9: 8 is taken by a branch in progress.)
CREATE FUNCTION {schema}.notify_enqueue(queue_name text, due timestamptz) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('{channel_prefix}.enqueue',
                     CASE WHEN due > now() THEN queue_name || '@' || extract(epoch FROM due)
                          ELSE queue_name END);
$$;
