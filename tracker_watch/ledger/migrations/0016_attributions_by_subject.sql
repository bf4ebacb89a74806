-- The strike ledger reads a subject's policy inputs (ledger/unchanged.py POLICY_INCIDENTS) by subject, but
-- attributions are stored in chain order: a tick's 10,000 subjects have ~100,000 rows scattered over the
-- whole table, and PostgreSQL read all of it and sorted the result on disk (~0.35 s of a 2 s tick at
-- 1M attributions, BENCHMARKS.md, Ledger). With every column the query needs in the index, it is answered
-- from the index alone, in (subject, work, window) order — the order it groups by — once the table's pages
-- are marked all-visible (the ledger vacuums after filling the table in bulk; autovacuum does it after).
DROP INDEX attributions_subject;
CREATE INDEX attributions_subject ON attributions (subject_id, work_id, window_start)
    INCLUDE (observed_at, in_jurisdiction, target_id, ip);
