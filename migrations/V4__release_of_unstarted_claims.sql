-- A task the worker claimed but never started before its invocation's deadline is given back
-- in the statement that records the batch: `running -> pending` (claimed from pending) with its
-- attempt not counted. Expand only: the previous release never writes that pair, and still
-- runs against this schema.
ALTER TABLE tms.task_events DROP CONSTRAINT task_events_allowed_transition;
ALTER TABLE tms.task_events ADD CONSTRAINT task_events_allowed_transition CHECK (
    (from_status IS NULL AND to_status = 'pending')
    OR (from_status, to_status) IN (
        ('pending', 'running'), ('failed', 'running'), ('running', 'running'),
        ('running', 'pending'),
        ('running', 'succeeded'), ('running', 'failed'), ('running', 'dead'),
        ('pending', 'cancelled'), ('failed', 'cancelled'), ('dead', 'pending')
    )
) NOT VALID;
ALTER TABLE tms.task_events VALIDATE CONSTRAINT task_events_allowed_transition;
