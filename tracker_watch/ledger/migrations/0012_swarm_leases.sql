-- Leases per swarm, lease epochs, drain and the heartbeat's spool depth (issue 16).
-- Expand only: nothing of 0005 is dropped or changed, so a node of the previous version (per-target
-- leases in target_leases) runs side by side with one of this version during a rolling upgrade. Nodes of
-- this version mirror their swarm leases into target_leases for that reason (docs/scaling.md, "Rolling
-- upgrades"); the release after every node runs this one drops target_leases (the contract step).

-- The swarm of an active target: the libtorrent torrent its infohashes name. A hybrid (v1 + v2) is one
-- swarm whichever of its hashes a rights holder registered with it: a v2-only registration joins the swarm
-- of an active target that has the same v2 hash and a v1 one.
CREATE VIEW active_target_swarms AS
SELECT t.id AS target_id,
       coalesce(t.infohash_v1,
                (SELECT o.infohash_v1 FROM targets o
                 WHERE o.infohash_v2 = t.infohash_v2 AND o.status = 'active' AND o.infohash_v1 IS NOT NULL
                 ORDER BY o.infohash_v1 LIMIT 1),
                t.infohash_v2) AS swarm
FROM targets t WHERE t.status = 'active';

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
