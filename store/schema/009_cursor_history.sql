-- 009_cursor_history.sql: where reading a folder started (issue 12).
--
-- history_below and history_before: the messages of the folder with a UID
-- below history_below that arrived (INTERNALDATE) before history_before
-- (unix ms) were in the folder before mailgate started reading it, and
-- are recorded without being posted; 0 means none. history counts the
-- messages left out when the start point was set.
ALTER TABLE cursors ADD COLUMN history_below  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cursors ADD COLUMN history_before INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cursors ADD COLUMN history        INTEGER NOT NULL DEFAULT 0;
