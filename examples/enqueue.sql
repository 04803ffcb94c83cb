-- Enqueue from plain SQL: psql, another language's driver, a trigger. Each call is part of
-- the caller's transaction, and so is the NOTIFY that wakes workers.
--
--     asyncjobs worker examples.tasks:app     # once: workers record the task names
--     psql "$ASYNCJOBS_DSN" -f examples/enqueue.sql
--
-- Options left out are the task's (as its workers recorded them), else the defaults.

SELECT asyncjobs.enqueue('examples.tasks.add', args => '[1, 2]');

SELECT asyncjobs.enqueue('examples.tasks.send_welcome_email',
                         args => '["ada@example.com"]', kwargs => '{"name": "Ada"}',
                         delay => 60, unique_key => 'welcome:ada@example.com');

-- A job for every new signup, committed with the row (or not at all).
CREATE TEMP TABLE signups (id serial PRIMARY KEY, email text NOT NULL);
CREATE FUNCTION pg_temp.welcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM asyncjobs.enqueue('examples.tasks.send_welcome_email',
                              args => jsonb_build_array(NEW.email),
                              kwargs => jsonb_build_object('name', 'friend'));
    RETURN NEW;
END $$;
CREATE TRIGGER signups_welcome AFTER INSERT ON signups
    FOR EACH ROW EXECUTE FUNCTION pg_temp.welcome();
INSERT INTO signups (email) VALUES ('grace@example.com');
