-- 002_outbox.sql: indexes for the outbox worker.
--
-- The worker looks at the unfinished items of each (channel, contact) group:
-- a group is due when every queued item of it is due, and a group with an
-- item being sent waits for that delivery to finish (order per contact).
CREATE INDEX outbox_pending ON outbox (channel, contact, send_after, id)
	WHERE state IN ('queued', 'sending');

-- Bounces are matched to what was sent by our Message-ID.
CREATE INDEX outbox_message_id ON outbox (message_id) WHERE message_id != '';
