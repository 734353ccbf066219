-- 005_raw_chunks.sql: the raw message in chunks of at most 1 MiB. SQLite
-- builds a whole record in memory to insert it, and the driver copies a
-- bound blob first, so a 34 MB email cost about 70 MB of C heap on top of
-- the Go copy; chunks keep that to a few MB. Existing raw messages become
-- one chunk each.
CREATE TABLE inbound_raw_chunks (
	ledger_id INTEGER NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	data      BLOB    NOT NULL,
	PRIMARY KEY (ledger_id, seq)
);
INSERT INTO inbound_raw_chunks (ledger_id, seq, data) SELECT ledger_id, 0, raw FROM inbound_raw;
DROP TABLE inbound_raw;
