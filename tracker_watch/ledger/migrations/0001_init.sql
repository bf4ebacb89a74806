-- Walking skeleton: who claims what (rights holders, works, targets) and what we saw (observations).
-- Unqualified names: the migration runner sets search_path to the configured schema.

CREATE TABLE rights_holders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE works (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    holder_id   bigint NOT NULL REFERENCES rights_holders (id),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (holder_id, title)
);

-- Every insert or update of a target takes a new revision, so a daemon can pick up changes with
-- "revision > last seen" instead of re-reading every target.
CREATE SEQUENCE target_revision;

CREATE TABLE targets (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_id       bigint NOT NULL REFERENCES works (id),
    infohash_v1   bytea CHECK (octet_length(infohash_v1) = 20),
    infohash_v2   bytea CHECK (octet_length(infohash_v2) = 32),
    input_kind    text NOT NULL CHECK (input_kind IN ('hex', 'magnet', 'torrent')),
    display_name  text,
    trackers      text[] NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'deleted')),
    -- metadata, from the .torrent or fetched from peers (ut_metadata) for magnets and bare hashes
    info          bytea,
    name          text,
    total_size    bigint CHECK (total_size >= 0),
    piece_length  integer CHECK (piece_length > 0),
    num_pieces    integer CHECK (num_pieces >= 0),
    metadata_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    revision      bigint NOT NULL DEFAULT nextval('target_revision'),
    CHECK (infohash_v1 IS NOT NULL OR infohash_v2 IS NOT NULL)
);
-- a work lists a swarm once; two rights holders may claim the same swarm, each with its own evidence
CREATE UNIQUE INDEX targets_work_v1 ON targets (work_id, infohash_v1) WHERE status <> 'deleted';
CREATE UNIQUE INDEX targets_work_v2 ON targets (work_id, infohash_v2) WHERE status <> 'deleted';
CREATE INDEX targets_infohash_v1 ON targets (infohash_v1);
CREATE INDEX targets_infohash_v2 ON targets (infohash_v2);
CREATE INDEX targets_revision ON targets (revision);

CREATE FUNCTION targets_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('target_revision');
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER targets_touch BEFORE UPDATE ON targets FOR EACH ROW EXECUTE FUNCTION targets_touch();

-- One row per sighting of a peer in a target's swarm. Append-only: the id is chosen by the collector
-- before the first write attempt, so a retried batch can never insert a row twice.
CREATE TABLE observations (
    id                 uuid PRIMARY KEY,
    target_id          bigint NOT NULL REFERENCES targets (id),
    infohash_v1        bytea,
    infohash_v2        bytea,
    observed_at        timestamptz NOT NULL,
    ip                 inet NOT NULL,
    port               integer NOT NULL CHECK (port BETWEEN 0 AND 65535),
    source             text NOT NULL CHECK (source IN ('tracker', 'dht', 'pex', 'incoming', 'lsd', 'resume')),
    tracker_url        text,
    grade              text NOT NULL CHECK (grade IN ('listed', 'handshake', 'advertised', 'verified', 'corrupt')),
    peer_id            bytea CHECK (octet_length(peer_id) = 20),
    client             text,
    pieces_advertised  integer CHECK (pieces_advertised >= 0),
    num_pieces         integer CHECK (num_pieces >= 0),
    pieces_verified    integer NOT NULL DEFAULT 0 CHECK (pieces_verified >= 0),
    bytes_verified     bigint NOT NULL DEFAULT 0 CHECK (bytes_verified >= 0),
    node               text NOT NULL,
    version            text NOT NULL,
    our_ip             inet,
    our_port           integer CHECK (our_port BETWEEN 0 AND 65535),
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX observations_target_ip ON observations (target_id, ip, observed_at);
CREATE INDEX observations_ip ON observations (ip, observed_at);
CREATE INDEX observations_observed_at ON observations (observed_at);

CREATE FUNCTION reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER observations_append_only BEFORE UPDATE OR DELETE ON observations
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER observations_no_truncate BEFORE TRUNCATE ON observations
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();

-- Who did what, for every write made on behalf of a person (CLI or API).
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    object      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION reject_change();
