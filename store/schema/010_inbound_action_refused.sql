-- 010_inbound_action_refused.sql: IMAP actions the server refused (issue 12).
--
-- after_error is the server's refusal of a row's IMAP action (a move to a
-- folder it will not create, say). The action counts as done, since
-- retrying cannot help, but the row stays visible to `mailgate status`.
ALTER TABLE inbound ADD COLUMN after_error TEXT NOT NULL DEFAULT '';
CREATE INDEX inbound_after_error ON inbound (channel, updated_at) WHERE after_error != '';
