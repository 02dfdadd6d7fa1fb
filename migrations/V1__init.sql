-- TMS schema, version 1: tasks, their transition history, and imports.
-- Every object lives in schema `tms`; the bootstrapper creates the schema and the roles.

CREATE TABLE tms.imports (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    bucket          text        NOT NULL CHECK (bucket <> ''),
    object_key      text        NOT NULL CHECK (object_key <> ''),
    object_version  text        NOT NULL CHECK (object_version <> ''),
    format          text        NOT NULL CHECK (format IN ('csv', 'jsonl')),
    compressed      boolean     NOT NULL,
    status          text        NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    rows_total      bigint      NOT NULL DEFAULT 0 CHECK (rows_total >= 0),
    rows_accepted   bigint      NOT NULL DEFAULT 0 CHECK (rows_accepted >= 0),
    rows_rejected   bigint      NOT NULL DEFAULT 0 CHECK (rows_rejected >= 0),
    rows_created    bigint      NOT NULL DEFAULT 0 CHECK (rows_created >= 0),
    report_key      text,
    errors_key      text,
    error           text,
    correlation_id  text        NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT imports_counts_add_up CHECK (rows_accepted + rows_rejected <= rows_total),
    CONSTRAINT imports_created_within_accepted CHECK (rows_created <= rows_accepted),
    CONSTRAINT imports_finished_when_done CHECK ((status = 'running') = (finished_at IS NULL)),
    CONSTRAINT imports_error_when_failed CHECK ((status = 'failed') = (error IS NOT NULL)),
    CONSTRAINT imports_one_per_object_version UNIQUE (bucket, object_key, object_version)
);

-- GET /v1/imports: one tenant's imports, newest first (ids are UUID v7).
CREATE INDEX imports_tenant_newest ON tms.imports (tenant, id DESC);

CREATE TABLE tms.tasks (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    kind            text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    -- json, not jsonb: stored as given, so it reads back exactly as it was written.
    payload         json        NOT NULL CHECK (json_typeof(payload) = 'object'),
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    integer     NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 20),
    run_after       timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    idempotency_key text        CHECK (length(idempotency_key) BETWEEN 1 AND 2048),
    request_hash    bytea       CHECK (length(request_hash) = 32),
    correlation_id  text        NOT NULL CHECK (correlation_id <> ''),
    source          text        NOT NULL CHECK (source IN ('api', 'import', 'queue')),
    -- NOTE: no foreign key to imports: bulk imports would pay a lookup per row, and import
    -- bookkeeping has its own retention.
    import_id       uuid,
    import_line     bigint      CHECK (import_line >= 1),
    result          jsonb,
    last_error      jsonb       CHECK (last_error IS NULL OR jsonb_typeof(last_error) = 'object'),
    enqueued_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    CONSTRAINT tasks_attempts_within_budget CHECK (attempts <= max_attempts),
    CONSTRAINT tasks_lease_iff_running CHECK ((status = 'running') = (lease_until IS NOT NULL)),
    CONSTRAINT tasks_result_iff_succeeded CHECK ((status = 'succeeded') = (result IS NOT NULL)),
    CONSTRAINT tasks_error_when_dead CHECK (status <> 'dead' OR last_error IS NOT NULL),
    CONSTRAINT tasks_import_source CHECK ((source = 'import') = (import_id IS NOT NULL AND import_line IS NOT NULL)),
    CONSTRAINT tasks_hash_with_key CHECK (idempotency_key IS NULL OR request_hash IS NOT NULL),
    CONSTRAINT tasks_idempotency_key_unique UNIQUE (tenant, idempotency_key)
);

-- GET /v1/tasks: one tenant's tasks newest first (UUID v7 ids sort by creation), with an
-- optional status filter; keyset pagination on id. A kind filter uses the first index.
CREATE INDEX tasks_tenant_newest ON tms.tasks (tenant, id DESC);
CREATE INDEX tasks_tenant_status_newest ON tms.tasks (tenant, status, id DESC);
-- relay: pending or failed tasks that are due and whose work message may be missing; stats:
-- the most overdue pending task.
CREATE INDEX tasks_relay ON tms.tasks (run_after) WHERE status IN ('pending', 'failed');
-- reap: running tasks whose lease expired.
CREATE INDEX tasks_leases ON tms.tasks (lease_until) WHERE status = 'running';
-- retention: finished tasks by age.
CREATE INDEX tasks_retention ON tms.tasks (updated_at) WHERE status IN ('succeeded', 'cancelled');

CREATE TABLE tms.task_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id         uuid        NOT NULL REFERENCES tms.tasks (id) ON DELETE CASCADE,
    from_status     text,
    to_status       text        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    attempt         integer     NOT NULL CHECK (attempt BETWEEN 0 AND 20),
    error           jsonb       CHECK (error IS NULL OR jsonb_typeof(error) = 'object'),
    correlation_id  text        NOT NULL CHECK (correlation_id <> ''),
    -- The lifecycle's transitions, and the creation event. The domain decides; this is the
    -- last line of defence against a statement that would write anything else.
    CONSTRAINT task_events_allowed_transition CHECK (
        (from_status IS NULL AND to_status = 'pending')
        OR (from_status, to_status) IN (
            ('pending', 'running'), ('failed', 'running'), ('running', 'running'),
            ('running', 'succeeded'), ('running', 'failed'), ('running', 'dead'),
            ('pending', 'cancelled'), ('failed', 'cancelled'), ('dead', 'pending')
        )
    )
);

-- GET /v1/tasks/{id}/events, and the cascade of retention deletes.
CREATE INDEX task_events_by_task ON tms.task_events (task_id, id);
