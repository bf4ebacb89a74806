-- Chain format v2 (tracker_watch/domain/chain_v2.py): each chained row says which format it was written
-- in, so `ledger verify` and the package verifier recompute it the way it was hashed. Rows from before
-- this migration are format 1; the writer writes 2 from now on. The format is also bound into the row
-- hash (each format links under its own domain string), so changing this column breaks the chain.
-- A constant default: no table rewrite.
ALTER TABLE observations ADD COLUMN chain_format smallint NOT NULL DEFAULT 1 CHECK (chain_format IN (1, 2));
ALTER TABLE incident_changes ADD COLUMN chain_format smallint NOT NULL DEFAULT 1 CHECK (chain_format IN (1, 2));
