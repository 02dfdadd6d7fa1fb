-- Flow control (SPEC §3 "Flow control"): a task's priority, the limits a tenant sets on its tasks
-- (running at once and a token-bucket rate, for all of them or one kind; a rate per webhook
-- destination host), and why a task over a limit was deferred. Expand only: the previous release
-- inserts tasks without a priority (they are `normal`), never writes a deferral, claims without
-- reading the limits, and never reads the new table.

-- `high` tasks travel on the high-priority work queue.
ALTER TABLE tms.tasks ADD COLUMN priority text NOT NULL DEFAULT 'normal';
ALTER TABLE tms.tasks ADD CONSTRAINT tasks_priority_known
    CHECK (priority IN ('normal', 'high')) NOT VALID;
ALTER TABLE tms.tasks VALIDATE CONSTRAINT tasks_priority_known;

-- Why the worker's claim last deferred the task (a limit it was over), until a claim takes it.
-- Its `run_after` is when the limit is expected to let it run.
ALTER TABLE tms.tasks ADD COLUMN deferred_reason text;
ALTER TABLE tms.tasks ADD CONSTRAINT tasks_deferred_reason_known CHECK (deferred_reason IN (
    'tenant_concurrency', 'tenant_rate', 'kind_concurrency', 'kind_rate', 'host_rate'
)) NOT VALID;
ALTER TABLE tms.tasks VALIDATE CONSTRAINT tasks_deferred_reason_known;

-- The fair claim: for each tenant with waiting tasks (one index descent per tenant), its oldest
-- due ones.
CREATE INDEX tasks_waiting_by_tenant ON tms.tasks (tenant, run_after)
    WHERE status IN ('pending', 'failed');
-- GET /v1/stats and the console: deferred tasks per reason.
CREATE INDEX tasks_deferred ON tms.tasks (tenant, deferred_reason)
    WHERE deferred_reason IS NOT NULL;

-- A tenant's limits, one row per key: '*' (every task of the tenant), 'kind:<kind>' or
-- 'host:<webhook destination host>'. The rows are also the limits' state, which the worker's
-- claim updates in the statement that claims (locking the rows of the batch's keys in key
-- order):
-- - `tokens`, `refilled_at`: the token bucket (`rate` tokens a second up to `burst`). A task
--   deferred for the rate books its token ahead (`tokens` goes below zero), so the tasks a
--   backlog defers come back one token apart instead of all at once;
-- - `running`: tasks of the key running now (claims add, recorded outcomes and the reaper's
--   subtract; the reap job recounts them every minute);
-- - `slot_at`, `run_ms`: when the last task deferred for the concurrency limit was booked to
--   come back, and how long the key's tasks ran of late (a moving average), which spaces them.
CREATE TABLE tms.flow_limits (
    tenant       text             NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    key          text             NOT NULL CHECK (key = '*' OR key ~ '^kind:[a-z][a-z0-9_]{0,31}$'
                                                  OR key ~ '^host:[a-z0-9.:\[\]-]{1,255}$'),
    max_running  integer          CHECK (max_running BETWEEN 1 AND 100000),
    rate         double precision CHECK (rate > 0 AND rate <= 100000),
    burst        double precision CHECK (burst >= 1 AND burst <= 1000000),
    tokens       double precision NOT NULL DEFAULT 0,
    refilled_at  timestamptz      NOT NULL DEFAULT now(),
    running      integer          NOT NULL DEFAULT 0 CHECK (running >= 0),
    slot_at      timestamptz,
    run_ms       double precision CHECK (run_ms >= 0),
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key),
    CONSTRAINT flow_limits_limit_something CHECK (max_running IS NOT NULL OR rate IS NOT NULL),
    CONSTRAINT flow_limits_rate_with_burst CHECK ((rate IS NULL) = (burst IS NULL)),
    CONSTRAINT flow_limits_hosts_by_rate CHECK (key NOT LIKE 'host:%' OR max_running IS NULL)
);
