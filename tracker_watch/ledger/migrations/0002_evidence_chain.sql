-- Evidence that stands up: verified pieces, incidents, a per-node SHA-256 hash chain over every evidence
-- row (observations and incident changes), signed checkpoints, and redaction for retention.

-- What a verified (or failed) piece was, on the observation that reports it.
ALTER TABLE observations
    ADD COLUMN piece_index   integer CHECK (piece_index >= 0),
    ADD COLUMN piece_bytes   integer CHECK (piece_bytes >= 0),  -- bytes of that piece this peer supplied
    ADD COLUMN piece_sha1    bytea CHECK (octet_length(piece_sha1) = 20),
    ADD COLUMN piece_sha256  bytea CHECK (octet_length(piece_sha256) = 32),
    -- chain: the node's own sequence, the hash of the row's canonical encoding, and the link
    ADD COLUMN chain_seq     bigint,
    ADD COLUMN content_hash  bytea,
    ADD COLUMN prev_hash     bytea,
    ADD COLUMN row_hash      bytea,
    ADD COLUMN redacted_at   timestamptz;
ALTER TABLE observations ALTER COLUMN ip DROP NOT NULL, ALTER COLUMN port DROP NOT NULL;
ALTER TABLE observations ADD CONSTRAINT observations_personal_fields
    CHECK (redacted_at IS NOT NULL OR (ip IS NOT NULL AND port IS NOT NULL));
CREATE UNIQUE INDEX observations_chain ON observations (node, chain_seq);

CREATE FUNCTION grade_rank(grade text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE grade WHEN 'verified' THEN 3 WHEN 'advertised' THEN 2 WHEN 'handshake' THEN 1
                      WHEN 'listed' THEN 0 ELSE -1 END
$$;

-- One row per (target, peer IP, window): the summary strikes are built on. Mutable (it grows as
-- observations arrive); every change is also appended to incident_changes, which is chained.
CREATE TABLE incidents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_id        bigint NOT NULL REFERENCES targets (id),
    ip               inet,
    window_start     timestamptz NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    best_grade       text NOT NULL CHECK (best_grade IN ('listed', 'handshake', 'advertised', 'verified')),
    corrupt          boolean NOT NULL DEFAULT false,
    ports            integer[] NOT NULL DEFAULT '{}',
    pieces_verified  integer[] NOT NULL DEFAULT '{}',
    bytes_verified   bigint NOT NULL DEFAULT 0,
    observations     integer NOT NULL DEFAULT 0,
    legal_hold       boolean NOT NULL DEFAULT false,  -- set by whatever relies on it (a strike): never purged
    redacted_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (redacted_at IS NOT NULL OR ip IS NOT NULL)
);
CREATE UNIQUE INDEX incidents_window ON incidents (target_id, ip, window_start);
CREATE INDEX incidents_ip ON incidents (ip, window_start);
CREATE INDEX incidents_last_seen ON incidents (last_seen);

CREATE TABLE incident_changes (
    node             text NOT NULL,
    chain_seq        bigint NOT NULL,
    incident_id      bigint NOT NULL REFERENCES incidents (id),
    target_id        bigint NOT NULL,
    ip               inet,
    window_start     timestamptz NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    best_grade       text NOT NULL,
    corrupt          boolean NOT NULL,
    ports            integer[],
    pieces_verified  integer[] NOT NULL,
    bytes_verified   bigint NOT NULL,
    observations     integer NOT NULL,
    recorded_at      timestamptz NOT NULL,
    content_hash     bytea NOT NULL,
    prev_hash        bytea NOT NULL,
    row_hash         bytea NOT NULL,
    redacted_at      timestamptz,
    PRIMARY KEY (node, chain_seq)
);
CREATE INDEX incident_changes_incident ON incident_changes (incident_id);

-- The head of each node's chain; the writer locks its row, so two processes that were given the same
-- node name still append one after the other instead of forking the chain.
CREATE TABLE chain_heads (
    node       text PRIMARY KEY,
    seq        bigint NOT NULL,
    head_hash  bytea NOT NULL
);

CREATE TABLE signing_keys (
    key_id      text PRIMARY KEY,       -- first 16 hex digits of SHA-256 of the raw public key
    node        text NOT NULL,
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),  -- raw Ed25519
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chain_checkpoints (
    node        text NOT NULL,
    seq         bigint NOT NULL,
    head_hash   bytea NOT NULL,
    signed_at   timestamptz NOT NULL,
    key_id      text NOT NULL REFERENCES signing_keys (key_id),
    signature   bytea NOT NULL,
    PRIMARY KEY (node, seq)
);

-- Evidence rows never change, except that retention may blank the personal fields (and nothing else)
-- of a row, inside a transaction that declared it with SET LOCAL tracker_watch.redact = 'on'.
CREATE FUNCTION reject_change_except_redaction() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    personal text[] := TG_ARGV;
BEGIN
    IF TG_OP = 'UPDATE' AND coalesce(current_setting('tracker_watch.redact', true), '') = 'on'
       AND NEW.redacted_at IS NOT NULL
       AND (to_jsonb(NEW) - personal - 'redacted_at') = (to_jsonb(OLD) - personal - 'redacted_at') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER observations_append_only ON observations;
CREATE TRIGGER observations_append_only BEFORE UPDATE OR DELETE ON observations
    FOR EACH ROW EXECUTE FUNCTION reject_change_except_redaction('ip', 'port', 'peer_id', 'client');
CREATE TRIGGER incident_changes_append_only BEFORE UPDATE OR DELETE ON incident_changes
    FOR EACH ROW EXECUTE FUNCTION reject_change_except_redaction('ip', 'ports');
CREATE TRIGGER incident_changes_no_truncate BEFORE TRUNCATE ON incident_changes
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();
CREATE TRIGGER chain_checkpoints_append_only BEFORE UPDATE OR DELETE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION reject_change();
