-- Withdrawals: when a strike whose notice the ISP may have received stops standing (voided, or withdrawn
-- because a strike it rested on was voided), the ISP gets a withdrawal of that notice. A withdrawal is a
-- notice row of its own (it goes through the same outbox) that names the notice it withdraws; each
-- notice is withdrawn at most once, and each strike still has exactly one notice of kind 'notice'.
ALTER TABLE notices ADD COLUMN kind text NOT NULL DEFAULT 'notice' CHECK (kind IN ('notice', 'withdrawal'));
ALTER TABLE notices ADD COLUMN withdraws bigint UNIQUE REFERENCES notices (id);
ALTER TABLE notices ADD CONSTRAINT notices_withdrawal_names_its_notice CHECK ((kind = 'withdrawal') = (withdraws IS NOT NULL));
ALTER TABLE notices DROP CONSTRAINT notices_strike_id_key;
CREATE UNIQUE INDEX notices_one_per_strike ON notices (strike_id) WHERE kind = 'notice';
