-- Ingestion at the speed of COPY (issue 14, target 1): fewer index writes per observation.
--
-- Incidents: every batch updates most of its incidents (last_seen, counters). last_seen was indexed, so
-- no update could be HOT: each one inserted a new entry into all of the table's indexes (~27 buffer hits
-- a row, the largest single cost of ingestion; BENCHMARKS.md, Ingestion). The one reader of that index was
-- retention, which now finds due incidents by window_start (an incident's last_seen lies inside its
-- window, so last_seen < cutoff implies window_start < cutoff; ledger/retention.py), through a partial
-- index on a column no update changes. With free space on each page (fillfactor) the new version of a
-- row stays on its page, and the writer's updates become heap-only: no index is touched.
DROP INDEX incidents_last_seen;
CREATE INDEX incidents_retention ON incidents (window_start) WHERE redacted_at IS NULL;
ALTER TABLE incidents SET (fillfactor = 70);

-- Observations: (target_id, ip, observed_at) duplicated (ip, observed_at) for every query that has an
-- address (retention, evidence packages, notices: one address has few observations, the target is a
-- filter) and (target_id, observed_at, id) for every query by target without one. One random-order
-- index fewer for every observation written.
-- Written to apply after migration 0011 (observations partitioned by day) as well as before it: an index
-- dropped on the partitioned parent goes from every partition with it.
DROP INDEX IF EXISTS observations_target_ip;
