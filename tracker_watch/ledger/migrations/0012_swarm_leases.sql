-- Leases per swarm, lease epochs, drain and the heartbeat's spool depth (issue 16).
-- Expand only: nothing of 0005 is dropped or changed, so a node of the previous version (per-target
-- leases in target_leases) runs side by side with one of this version during a rolling upgrade. Nodes of
-- this version mirror their swarm leases into target_leases for that reason (docs/scaling.md, "Rolling
-- upgrades"); the release after every node runs this one drops target_leases (the contract step).

-- The swarm of an active target: the libtorrent torrent the watchlist runs for it, named as the watchlist
-- names it (TargetRow.key): its v1 infohash, else its v2. A hybrid registered with both hashes is one swarm,
-- and so is every registration of it that includes the v1 hash.
CREATE VIEW active_target_swarms AS
SELECT t.id AS target_id, coalesce(t.infohash_v1, t.infohash_v2) AS swarm FROM targets t WHERE t.status = 'active';
CREATE INDEX targets_active_swarm ON targets ((coalesce(infohash_v1, infohash_v2))) WHERE status = 'active';

-- One row per swarm ever leased. A lease is released by disowning it (node '' and expired), never by
-- deleting it, so that `epoch` only ever grows: it is bumped at every take, and a term (swarm, epoch)
-- names one node's tenure of one swarm (lease_terms).
CREATE TABLE swarm_leases (
    swarm         bytea PRIMARY KEY,
    node          text NOT NULL,
    epoch         bigint NOT NULL DEFAULT 0,  -- 0: never held
    expires_at    timestamptz NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX swarm_leases_node ON swarm_leases (node);

-- Who held which swarm from when (database clock): lets an auditor attribute any observation of a node to
-- the term under which it was made, late (spooled) writes included.
CREATE TABLE lease_terms (
    swarm         bytea NOT NULL,
    epoch         bigint NOT NULL,
    node          text NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    PRIMARY KEY (swarm, epoch)
);
CREATE INDEX lease_terms_node ON lease_terms (node, acquired_at);
CREATE INDEX lease_terms_ended ON lease_terms (ended_at);  -- a lease handed back wakes the other nodes

-- Drain (`tracker-watch node drain NAME`): a drained node hands its leases back at its next look and takes
-- none until `node undrain NAME`; it survives a restart. The heartbeat reports the spool's depth.
ALTER TABLE nodes ADD COLUMN drained_at timestamptz;
ALTER TABLE nodes ADD COLUMN spool_records bigint;
ALTER TABLE nodes ADD COLUMN spool_bytes bigint;
