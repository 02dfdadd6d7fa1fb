-- Lifecycle events (SPEC §3 "Notifications"): each transition to succeeded, dead or cancelled,
-- and each import's end, is recorded here in the transaction that makes it, published to the
-- deployment's event bus after commit, and deleted once published. What stays here was not
-- published (the function stopped, the bus refused): the relay job publishes it again. The id
-- is the event's stable id (in its detail), so a consumer recognises an event published twice.
-- Expand only: a new table the previous release never reads.
CREATE TABLE tms.notifications (
    id           uuid        PRIMARY KEY,
    tenant       text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    detail_type  text        NOT NULL CHECK (length(detail_type) BETWEEN 1 AND 128),
    detail       jsonb       NOT NULL CHECK (jsonb_typeof(detail) = 'object'),
    -- The task or import the event is about: the API and the importer publish their own.
    subject      uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- The relay: the oldest unpublished events first.
CREATE INDEX notifications_oldest ON tms.notifications (created_at);
CREATE INDEX notifications_subject ON tms.notifications (subject);
