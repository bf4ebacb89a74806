-- Observations partitioned by day (declarative range partitioning on observed_at, UTC days).
--
-- At 10 million observations a day one table grows by ~6 GB a day; its indexes stop fitting in memory,
-- and retention's row-by-row redaction leaves a dead tuple per row for VACUUM. Partitioned by day,
-- writes go to today's partition (its indexes stay hot), time-bounded reads touch only their days, and
-- retention rewrites a whole month into one compact partition (ledger/partitions.py) instead of updating
-- rows in place. Partitions are created ahead by the maintenance step (ledger/partitions.py, run at start
-- and hourly); a DEFAULT partition catches anything that arrives for a day not created yet, so an insert
-- never fails for want of a partition, and the maintenance step moves such rows to their day.
--
-- Keys: a partitioned table's unique constraints must contain the partition key, so the primary key
-- becomes (id, observed_at) and the chain's unique index (node, chain_seq, observed_at). Nothing
-- weakens in practice: an observation keeps its id and its time through every retry and spool replay
-- (the replay is the same record), ids are random UUIDs, and `ledger verify` still rejects two rows at
-- one chain position.
--
-- The existing rows are copied, in this one transaction, into partitions for the days they fall on.

ALTER TABLE observations RENAME TO observations_unpartitioned;
DO $$
DECLARE
    r record;
BEGIN
    -- free the index names (and the primary key's) for the new table
    FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'observations_unpartitioned'::regclass LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, left('old_' || r.relname, 63));
    END LOOP;
END $$;

CREATE TABLE observations (LIKE observations_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                           INCLUDING STORAGE INCLUDING COMMENTS)
    PARTITION BY RANGE (observed_at);
ALTER TABLE observations ADD CONSTRAINT observations_pkey PRIMARY KEY (id, observed_at);
ALTER TABLE observations ADD CONSTRAINT observations_target_id_fkey
    FOREIGN KEY (target_id) REFERENCES targets (id);
CREATE UNIQUE INDEX observations_chain ON observations (node, chain_seq, observed_at);
CREATE INDEX observations_target_ip ON observations (target_id, ip, observed_at);
CREATE INDEX observations_ip ON observations (ip, observed_at);
CREATE INDEX observations_observed_at ON observations (observed_at);
CREATE INDEX observations_target_time ON observations (target_id, observed_at, id);
-- any other index an earlier migration gave the table, carried over (a unique one needs observed_at added
-- by hand: refuse rather than drop it silently)
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname, i.indisunique, i.indisprimary, pg_get_indexdef(i.indexrelid) AS def
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'observations_unpartitioned'::regclass LOOP
        CONTINUE WHEN r.indisprimary OR to_regclass(quote_ident(substr(r.relname, 5))) IS NOT NULL;
        IF r.indisunique THEN
            RAISE EXCEPTION 'unique index % on observations: it must include observed_at to be partitioned',
                substr(r.relname, 5);
        END IF;
        EXECUTE regexp_replace(r.def, 'INDEX \S+ ON \S+',
                               format('INDEX %I ON observations', substr(r.relname, 5)));
    END LOOP;
END $$;
-- row triggers are cloned onto every partition; TRUNCATE of one partition is guarded per partition below
CREATE TRIGGER observations_append_only BEFORE UPDATE OR DELETE ON observations
    FOR EACH ROW EXECUTE FUNCTION reject_change_except_redaction('ip', 'port', 'peer_id', 'client');
CREATE TRIGGER observations_no_truncate BEFORE TRUNCATE ON observations
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();

-- One UTC day's partition, with the TRUNCATE guard a statement trigger on the parent does not give it.
-- Rows of that day already caught by the DEFAULT partition must be moved first (ledger/partitions.py).
CREATE FUNCTION observations_add_partition(name text, lo timestamptz, hi timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF observations FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                   'EXECUTE FUNCTION reject_change()', name);
END $$;

CREATE TABLE observations_default PARTITION OF observations DEFAULT;
CREATE TRIGGER no_truncate BEFORE TRUNCATE ON observations_default
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();

-- the days the existing rows fall on, and yesterday to a week ahead
SELECT observations_add_partition('observations_p' || to_char(d, 'YYYYMMDD'), d AT TIME ZONE 'UTC',
                                  (d + interval '1 day') AT TIME ZONE 'UTC')
FROM (SELECT date_trunc('day', observed_at AT TIME ZONE 'UTC') AS d FROM observations_unpartitioned
      UNION
      SELECT generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') - interval '1 day',
                             date_trunc('day', now() AT TIME ZONE 'UTC') + interval '7 days', interval '1 day')
     ) AS days
ORDER BY d;

INSERT INTO observations SELECT * FROM observations_unpartitioned ORDER BY observed_at;
DROP TABLE observations_unpartitioned;
