-- 012_inbound_duplicate_of.sql: the relation "skipped as a duplicate of
-- row N" as a column (issue 15) instead of prose in the reason that had to
-- be parsed back. 0 means the row is no duplicate.
ALTER TABLE inbound ADD COLUMN duplicate_of INTEGER NOT NULL DEFAULT 0;
UPDATE inbound SET duplicate_of = CAST(substr(reason, 15) AS INTEGER)
	WHERE state = 'skipped' AND reason GLOB 'duplicate of #[0-9]*';
CREATE INDEX inbound_duplicates ON inbound (channel, duplicate_of) WHERE duplicate_of != 0;
