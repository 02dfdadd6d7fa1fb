-- Webhook subscriptions and signing secrets (SPEC §3 "Notifications"). Expand only: new tables,
-- and the tasks' source check widened to the deliveries' source (the previous release never
-- writes it; its code cannot read a delivery: roll back before creating subscriptions, or
-- delete the deliveries first).
--
-- NOTE: the signing secrets are stored as they are shown (whsec_...), readable by whoever may
-- read these tables: the worker needs them to sign. See the README ("Webhook signing").

-- A delivery of a lifecycle event to a subscription: a `notification` task whose event_id is
-- the event's stable id (the subscription is in its payload).
ALTER TABLE tms.tasks DROP CONSTRAINT tasks_source_check;
ALTER TABLE tms.tasks ADD CONSTRAINT tasks_source_check
    CHECK (source IN ('api', 'import', 'queue', 'schedule', 'event', 'subscription')) NOT VALID;
ALTER TABLE tms.tasks VALIDATE CONSTRAINT tasks_source_check;
ALTER TABLE tms.tasks ADD CONSTRAINT tasks_subscription_source
    CHECK (source <> 'subscription' OR (kind = 'notification' AND event_id IS NOT NULL)) NOT VALID;
ALTER TABLE tms.tasks VALIDATE CONSTRAINT tasks_subscription_source;

-- A tenant's subscriptions: the URL its lifecycle events of the given types (and, for task
-- events, kinds) are delivered to, and the secrets that sign them. During a rotation the
-- replaced secret signs too, until previous_until.
CREATE TABLE tms.subscriptions (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    url             text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    event_types     text[]      NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 5),
    -- NULL: events of every kind.
    kinds           text[]      CHECK (cardinality(kinds) BETWEEN 1 AND 8),
    secret          text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    previous_secret text        CHECK (previous_secret LIKE 'whsec\_%'),
    previous_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_previous_until CHECK ((previous_secret IS NULL) = (previous_until IS NULL))
);
-- GET /v1/subscriptions (a tenant's, newest first) and the worker's match of a batch's events
-- (the subscriptions of the events' tenants).
CREATE INDEX subscriptions_tenant_newest ON tms.subscriptions (tenant, id DESC);

-- The secret that signs a tenant's `webhook` tasks, when it has one.
CREATE TABLE tms.webhook_signing (
    tenant          text        PRIMARY KEY CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    secret          text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    previous_secret text        CHECK (previous_secret LIKE 'whsec\_%'),
    previous_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_signing_previous_until CHECK ((previous_secret IS NULL) = (previous_until IS NULL))
);
