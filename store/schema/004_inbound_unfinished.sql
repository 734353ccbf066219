-- 004_inbound_unfinished.sql: the posting queue in ledger order. DuePosts
-- walks the unfinished rows oldest first and stops once it has enough
-- contacts, instead of grouping every unfinished row of the channel by
-- contact on each call (which grew with the backlog).
CREATE INDEX inbound_unfinished ON inbound (channel, id) WHERE state IN ('fetched', 'posting');
-- The per-contact index that the grouping query used is no longer read.
DROP INDEX inbound_due;
