-- 003_outbox_cancel.sql: an operator may delete a message while its email
-- is being sent. The deletion is remembered, so that a failed attempt is
-- not retried and a crash does not queue it again.
ALTER TABLE outbox ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
