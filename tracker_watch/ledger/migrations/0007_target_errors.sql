-- A stored target that a node cannot watch (libtorrent refuses its metadata, or one of our limits) is set
-- aside with the reason, instead of failing every poll, start-up and takeover of every node.
ALTER TABLE targets DROP CONSTRAINT targets_status_check;
ALTER TABLE targets ADD CONSTRAINT targets_status_check CHECK (status IN ('active', 'paused', 'deleted', 'error'));
ALTER TABLE targets ADD COLUMN error text CHECK (octet_length(error) <= 1000);
ALTER TABLE targets ADD COLUMN error_at timestamptz;
