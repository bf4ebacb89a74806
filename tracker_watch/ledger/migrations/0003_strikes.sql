-- The strike ledger: ISPs and their lease data, subjects, attributions of evidence to subjects,
-- strikes, and the notices outbox.

CREATE TABLE isps (
    name         text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    abuse_email  text NOT NULL DEFAULT '',
    webhook_url  text CHECK (webhook_url ~ '^https?://'),
    drop_dir     text,
    format       text NOT NULL DEFAULT 'xml' CHECK (format IN ('xml', 'json')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Who had which address (and ports, behind carrier-grade NAT) when. No two leases may cover the same
-- address, port and moment: the database refuses it, whatever the importer checked.
CREATE TABLE isp_leases (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    isp             text NOT NULL REFERENCES isps (name),
    prefix          cidr NOT NULL,
    ports           int4range NOT NULL,
    valid           tstzrange NOT NULL,
    subscriber_ref  text NOT NULL CHECK (length(subscriber_ref) BETWEEN 1 AND 200),
    import_line     integer,
    imported_at     timestamptz NOT NULL DEFAULT now(),
    EXCLUDE USING gist (prefix inet_ops WITH &&, ports WITH &&, valid WITH &&)
);

-- Whom strikes are against: an ISP's subscriber when lease data covers the evidence, else the bare IP.
CREATE TABLE subjects (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('subscriber', 'ip')),
    isp             text REFERENCES isps (name),
    subscriber_ref  text,
    ip              inet,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'subscriber' AND isp IS NOT NULL AND subscriber_ref IS NOT NULL AND ip IS NULL)
        OR (kind = 'ip' AND ip IS NOT NULL AND isp IS NULL AND subscriber_ref IS NULL))
);
CREATE UNIQUE INDEX subjects_subscriber ON subjects (isp, subscriber_ref) WHERE kind = 'subscriber';
CREATE UNIQUE INDEX subjects_ip ON subjects (ip) WHERE kind = 'ip';

-- Each observation at or above the minimum grade, attributed to a subject (derived; rebuilt at will).
CREATE TABLE attributions (
    observation_id   uuid PRIMARY KEY REFERENCES observations (id),
    subject_id       bigint NOT NULL REFERENCES subjects (id),
    lease_id         bigint REFERENCES isp_leases (id),
    target_id        bigint NOT NULL REFERENCES targets (id),
    work_id          bigint NOT NULL REFERENCES works (id),
    ip               inet NOT NULL,
    port             integer,
    observed_at      timestamptz NOT NULL,
    window_start     timestamptz NOT NULL,
    country          text,
    in_jurisdiction  boolean NOT NULL
);
CREATE INDEX attributions_subject ON attributions (subject_id, work_id, window_start);

-- How far each node's chain has been attributed (positions are committed in order per node).
CREATE TABLE attribution_progress (
    node  text PRIMARY KEY,
    seq   bigint NOT NULL
);

CREATE TABLE strikes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id    bigint NOT NULL REFERENCES subjects (id),
    level         integer NOT NULL CHECK (level BETWEEN 1 AND 3),
    cycle_start   timestamptz NOT NULL,
    issued_at     timestamptz NOT NULL,
    work_id       bigint NOT NULL REFERENCES works (id),
    incident_key  text NOT NULL,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'voided', 'superseded')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    changed_at    timestamptz,
    changed_by    text,
    reason        text
);
-- one strike per level per escalation cycle per subject: a retry or a second node can never double it
CREATE UNIQUE INDEX strikes_active ON strikes (subject_id, cycle_start, level) WHERE status = 'active';
CREATE INDEX strikes_subject ON strikes (subject_id, issued_at);

CREATE TABLE notices (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    strike_id        bigint NOT NULL UNIQUE REFERENCES strikes (id),
    isp              text REFERENCES isps (name),
    idempotency_key  text NOT NULL UNIQUE,
    xml              text NOT NULL,
    json             text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'held', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE state = 'pending';
