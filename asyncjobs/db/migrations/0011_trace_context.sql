-- The trace context of the enqueue that made a job (W3C `traceparent`/`tracestate`, as a
-- JSON object of text), so that its attempts' spans can link to it; NULL when the enqueue
-- was not traced. (Numbered 11: 10 is taken by a branch in progress.)
ALTER TABLE {schema}.jobs ADD COLUMN trace_context jsonb;
