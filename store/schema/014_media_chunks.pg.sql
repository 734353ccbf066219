-- 014_media_chunks.pg.sql: 014_media_chunks.sql in PostgreSQL's dialect.
CREATE TABLE media_chunks (
	sha256 TEXT   NOT NULL,
	seq    BIGINT NOT NULL,
	data   BYTEA  NOT NULL,
	PRIMARY KEY (sha256, seq)
);
