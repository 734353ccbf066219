-- 016_inbound_text.pg.sql: 016_inbound_text.sql in PostgreSQL's dialect.
CREATE TABLE inbound_text (
	ledger_id BIGINT PRIMARY KEY REFERENCES inbound (id) ON DELETE CASCADE,
	full_text TEXT   NOT NULL
);
INSERT INTO inbound_text (ledger_id, full_text) SELECT id, full_text FROM inbound WHERE full_text != '';
ALTER TABLE inbound DROP COLUMN full_text;
