-- 014_media_chunks.sql: the contents of media files kept in the database
-- (issue 18), for a store shared by several instances, so that every
-- instance serves every signed media URL. A file is the rows of its SHA256
-- in seq order, each at most 1 MiB, written in one transaction. A store on
-- one host keeps its media files in media.dir and leaves this table empty.
CREATE TABLE media_chunks (
	sha256 TEXT    NOT NULL,
	seq    INTEGER NOT NULL,
	data   BLOB    NOT NULL,
	PRIMARY KEY (sha256, seq)
);
