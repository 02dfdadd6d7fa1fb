-- Schedules and event triggers (SPEC §3): the tables, and the tasks' new sources. Expand only:
-- new nullable columns and tables, and constraints widened (the previous release never writes
-- the new sources). Its code cannot read a task of a new source: roll back before creating
-- schedules or triggers, or delete them first.

ALTER TABLE tms.tasks
    ADD COLUMN schedule_id uuid,
    ADD COLUMN fire_time   timestamptz,
    ADD COLUMN trigger_id  uuid,
    ADD COLUMN event_id    text CHECK (length(event_id) BETWEEN 1 AND 128);

ALTER TABLE tms.tasks DROP CONSTRAINT tasks_source_check;
ALTER TABLE tms.tasks ADD CONSTRAINT tasks_source_check
    CHECK (source IN ('api', 'import', 'queue', 'schedule', 'event')) NOT VALID;
ALTER TABLE tms.tasks VALIDATE CONSTRAINT tasks_source_check;
ALTER TABLE tms.tasks ADD CONSTRAINT tasks_schedule_source
    CHECK ((source = 'schedule') = (schedule_id IS NOT NULL AND fire_time IS NOT NULL)) NOT VALID;
ALTER TABLE tms.tasks VALIDATE CONSTRAINT tasks_schedule_source;
ALTER TABLE tms.tasks ADD CONSTRAINT tasks_event_source
    CHECK ((source = 'event') = (trigger_id IS NOT NULL AND event_id IS NOT NULL)) NOT VALID;
ALTER TABLE tms.tasks VALIDATE CONSTRAINT tasks_event_source;

-- A tenant's schedules: a cron expression (five fields) or rate(N unit) in an IANA time zone,
-- and the task each fire creates (idempotency key schedule:{id}:{fire time}).
CREATE TABLE tms.schedules (
    id            uuid        PRIMARY KEY,
    tenant        text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    expression    text        NOT NULL CHECK (length(expression) BETWEEN 1 AND 256),
    timezone      text        NOT NULL CHECK (length(timezone) BETWEEN 1 AND 64),
    kind          text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    payload       json        NOT NULL CHECK (json_typeof(payload) = 'object'),
    max_attempts  integer     NOT NULL CHECK (max_attempts BETWEEN 1 AND 20),
    starts_at     timestamptz,
    ends_at       timestamptz,
    missed        text        NOT NULL CHECK (missed IN ('skip', 'catch_up')),
    catch_up_max  integer     NOT NULL DEFAULT 0 CHECK (catch_up_max BETWEEN 0 AND 1000),
    paused        boolean     NOT NULL DEFAULT false,
    -- The next fire time; NULL once the schedule has ended.
    next_run_at   timestamptz,
    last_fire_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    CONSTRAINT schedules_name_unique UNIQUE (tenant, name),
    CONSTRAINT schedules_window CHECK (ends_at IS NULL OR starts_at IS NULL OR starts_at < ends_at)
);
-- The schedules job: the due, running schedules, most overdue first.
CREATE INDEX schedules_due ON tms.schedules (next_run_at) WHERE NOT paused AND next_run_at IS NOT NULL;
-- GET /v1/schedules: a tenant's schedules, newest first.
CREATE INDEX schedules_tenant_newest ON tms.schedules (tenant, id DESC);

-- A tenant's event triggers: an EventBridge event whose source and detail-type match (and,
-- optionally, a value of its detail) creates one task from the template (idempotency key
-- event:{event id}:{trigger id}).
CREATE TABLE tms.triggers (
    id            uuid        PRIMARY KEY,
    tenant        text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    event_source  text        NOT NULL CHECK (length(event_source) BETWEEN 1 AND 256),
    detail_type   text        NOT NULL CHECK (length(detail_type) BETWEEN 1 AND 256),
    -- {"pointer": "/status", "equals": <JSON value>}, or NULL for every event of the pair.
    detail_match  jsonb       CHECK (detail_match IS NULL OR jsonb_typeof(detail_match) = 'object'),
    kind          text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    -- The payload template: values {"$event": "<JSON pointer>"} take the event's values.
    payload       json        NOT NULL CHECK (json_typeof(payload) = 'object'),
    max_attempts  integer     NOT NULL CHECK (max_attempts BETWEEN 1 AND 20),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT triggers_name_unique UNIQUE (tenant, name)
);
-- The worker's match of an event: by source and detail-type.
CREATE INDEX triggers_match ON tms.triggers (event_source, detail_type);
-- GET /v1/triggers: a tenant's triggers, newest first.
CREATE INDEX triggers_tenant_newest ON tms.triggers (tenant, id DESC);
