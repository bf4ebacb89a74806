-- Notices are rendered when first needed (delivery, or a reader asking for the body), not when their
-- strike is issued: issuing 300,000 strikes spent 86 % of its time rendering bodies most of which are
-- held and never sent (BENCHMARKS.md, Ledger). A bare notice keeps the evidence cut it rests on — per
-- node, the chain position attribution had reached — so rendering later gives what rendering then would
-- have (ledger/notice_render.py). Nothing leaves unrendered: a delivery attempt needs the body first.
ALTER TABLE notices ALTER COLUMN xml DROP NOT NULL, ALTER COLUMN json DROP NOT NULL;
ALTER TABLE notices ADD COLUMN evidence_upto jsonb;
ALTER TABLE notices ADD CONSTRAINT notices_body_whole CHECK ((xml IS NULL) = (json IS NULL));
ALTER TABLE notices ADD CONSTRAINT notices_renderable CHECK (xml IS NOT NULL OR evidence_upto IS NOT NULL);
ALTER TABLE notices ADD CONSTRAINT notices_sent_rendered CHECK (xml IS NOT NULL OR (attempts = 0 AND state <> 'delivered'));

-- The strike ledger asks, per chunk of subjects, which of their incidents came from a corrupt peer; they
-- are few, and without this index the question hashed every incident each time (BENCHMARKS.md, Ledger).
CREATE INDEX incidents_corrupt ON incidents (target_id, ip, window_start) WHERE corrupt;

-- What each subject's strikes were last planned from (ledger/unchanged.py): a rebuild that re-derives the
-- same inputs for a subject does not plan it again.
ALTER TABLE subjects ADD COLUMN policy_digest text;
