-- Several nodes on one database: each active target is leased to one node at a time. A lease expires
-- unless its node renews it (heartbeat); a node that stops deletes its leases so others take over at once.

CREATE TABLE nodes (
    name          text PRIMARY KEY,
    max_targets   integer NOT NULL CHECK (max_targets > 0),
    version       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

CREATE TABLE target_leases (
    target_id     bigint PRIMARY KEY REFERENCES targets (id) ON DELETE CASCADE,
    node          text NOT NULL,
    expires_at    timestamptz NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX target_leases_node ON target_leases (node);
CREATE INDEX targets_active ON targets (id) WHERE status = 'active';
