-- Magnet peer hints (BEP 9 `x.pe`): literal "ip:port" / "[ip]:port" addresses the link names, handed to the
-- swarm as peers when it starts (names are never kept: we never resolve a name given to us). A peer we
-- learned of that way is recorded with source 'magnet'.
ALTER TABLE targets ADD COLUMN peer_hints text[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(peer_hints) <= 50);
ALTER TABLE observations DROP CONSTRAINT observations_source_check;
ALTER TABLE observations ADD CONSTRAINT observations_source_check
    CHECK (source IN ('tracker', 'dht', 'pex', 'incoming', 'lsd', 'resume', 'magnet'));
