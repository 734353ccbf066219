-- 006_outbox_queued.sql: the queued items by the time they become due.
-- The outbox worker runs after every webhook request; finding the due
-- groups and the next due time from here costs the due items only, where
-- grouping every queued item by contact on each run grew with the queue.
CREATE INDEX outbox_queued ON outbox (send_after, id) WHERE state = 'queued';
