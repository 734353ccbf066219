-- 016_inbound_text.sql: the email's text (full_text: 2-20 KB, quoted in
-- replies) in a table of its own (issue 17). A ledger row is updated two
-- or three times in its life (post accepted, action done); with the text
-- inside it SQLite rewrote the text's overflow pages on every update.
-- Rows without text have no inbound_text row.
CREATE TABLE inbound_text (
	ledger_id INTEGER PRIMARY KEY REFERENCES inbound (id) ON DELETE CASCADE,
	full_text TEXT    NOT NULL
);
INSERT INTO inbound_text (ledger_id, full_text) SELECT id, full_text FROM inbound WHERE full_text != '';
ALTER TABLE inbound DROP COLUMN full_text;
