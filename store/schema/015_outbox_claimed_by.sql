-- Which process claimed an outbox item in state sending: on PostgreSQL
-- the key of the advisory lock that process holds for its lifetime, so
-- that another instance requeues the item only once that process is gone
-- (RequeueSending). 0 on SQLite, where one process owns the store.
ALTER TABLE outbox ADD COLUMN claimed_by BIGINT NOT NULL DEFAULT 0;
