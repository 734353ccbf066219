-- 007_inbound_actions.sql: the rows whose IMAP action is due. The watcher
-- asks for them between every two batches; inbound_after also held the
-- rows still waiting for their POST, so during a backlog every call read
-- the whole unposted rest of the ledger to skip it.
CREATE INDEX inbound_actions ON inbound (channel, folder, id)
	WHERE after_kind != '' AND after_done = 0 AND state IN ('skipped', 'quarantined', 'posted');
DROP INDEX inbound_after;
