-- 008_inbound_refetch.sql: `mailgate dead retry` of an email that died
-- before it had anything to post (too large, unreadable) asks the folder's
-- Watcher to fetch it again; the new decision replaces the dead row.
ALTER TABLE inbound ADD COLUMN refetch INTEGER NOT NULL DEFAULT 0;
CREATE INDEX inbound_refetch ON inbound (channel, folder, uidvalidity, uid) WHERE refetch = 1;
