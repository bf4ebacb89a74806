-- attributions are derived (`strikes rebuild` re-makes them from the evidence) and their referents are
-- never deleted (observations, targets and works are append-only or soft-deleted; subjects and leases
-- stay). Their foreign keys bought nothing but cost most of the attribution time: each inserted row ran
-- five referential checks, and the one on observations took a KEY SHARE row lock that rewrites the
-- referenced evidence tuple. Measured with bench/ledger.py: see BENCHMARKS.md.
ALTER TABLE attributions DROP CONSTRAINT attributions_observation_id_fkey;
ALTER TABLE attributions DROP CONSTRAINT attributions_subject_id_fkey;
ALTER TABLE attributions DROP CONSTRAINT attributions_lease_id_fkey;
ALTER TABLE attributions DROP CONSTRAINT attributions_target_id_fkey;
ALTER TABLE attributions DROP CONSTRAINT attributions_work_id_fkey;
