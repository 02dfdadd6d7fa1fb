-- The console (served by the API at /console). Expand only: the previous release reads and
-- writes nothing here, and runs against this schema unchanged.

-- Signed-in browsers. The cookie holds a random session id; the table holds its SHA-256, so a
-- read of the table signs no one in. A session made from an API token keeps that token's hash
-- and is checked against the token map on each request (a revoked token ends its sessions).
CREATE TABLE tms.console_sessions (
    id_hash     bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    tenant      text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    role        text        NOT NULL CHECK (role IN ('viewer', 'member', 'operator')),
    -- Who signed in, for the page header and the logs: a token's hash prefix or an OIDC subject.
    subject     text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 512),
    token_hash  bytea       CHECK (token_hash IS NULL OR length(token_hash) = 32),
    -- The session's anti-forgery token, sent back with every form that changes something.
    csrf        text        NOT NULL CHECK (length(csrf) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
-- The retention job's purge of expired sessions.
CREATE INDEX console_sessions_expiry ON tms.console_sessions (expires_at);

-- OpenID Connect sign-ins in flight (authorization code with PKCE): the state parameter, the
-- code verifier and the nonce, until the provider redirects back (10 minutes at most).
CREATE TABLE tms.console_logins (
    state       text        PRIMARY KEY CHECK (length(state) >= 32),
    verifier    text        NOT NULL CHECK (length(verifier) BETWEEN 43 AND 128),
    nonce       text        NOT NULL CHECK (length(nonce) >= 32),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX console_logins_expiry ON tms.console_logins (expires_at);

-- The overview's failures per minute of the last hour: only failed attempts are indexed, so the
-- worker's writes of every other transition stay as they were.
CREATE INDEX task_events_failures ON tms.task_events (at) WHERE to_status IN ('failed', 'dead');
