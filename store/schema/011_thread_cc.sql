-- 011_thread_cc.sql: the CC list replies of a thread go to (issue 12).
--
-- cc is a JSON array of addr-specs: the Cc addresses of the contact's
-- latest posted email, without mailgate's own addresses; '' or '[]' means
-- none. Replies go to the contact with these in Cc.
ALTER TABLE threads ADD COLUMN cc TEXT NOT NULL DEFAULT '';
