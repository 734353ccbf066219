-- schema.sql: mailgate's whole store schema at the newest migration.
--
-- A new database is created from this file; an existing one is brought here
-- by the numbered migrations in schema/. Do not edit by hand: add a
-- migration, then run
--
--     go test ./store -run TestSchemaFile -update-schema
--
-- All times are unix milliseconds (INTEGER); 0 means "unset". Booleans are
-- INTEGER 0/1. The comments inside the statements come from the migration
-- that created each table.

CREATE TABLE cursors (
	channel     TEXT    NOT NULL,
	folder      TEXT    NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uid         INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL, history_below  INTEGER NOT NULL DEFAULT 0, history_before INTEGER NOT NULL DEFAULT 0, history        INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (channel, folder)
) WITHOUT ROWID;

CREATE TABLE inbound (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	channel        TEXT    NOT NULL,
	folder         TEXT    NOT NULL,
	uidvalidity    INTEGER NOT NULL,
	uid            INTEGER NOT NULL,
	dedupe_key     TEXT    NOT NULL DEFAULT '',
	message_id     TEXT    NOT NULL DEFAULT '',
	contact        TEXT    NOT NULL DEFAULT '',
	contact_name   TEXT    NOT NULL DEFAULT '',
	subject        TEXT    NOT NULL DEFAULT '',
	state          TEXT    NOT NULL CHECK (state IN ('fetched', 'skipped', 'quarantined', 'posting', 'posted', 'dead')),
	reason         TEXT    NOT NULL DEFAULT '',
	classification TEXT    NOT NULL DEFAULT '',
	verdict        BLOB,
	posts_total    INTEGER NOT NULL DEFAULT 0,
	posts_done     INTEGER NOT NULL DEFAULT 0,
	after_kind     TEXT    NOT NULL DEFAULT '',
	after_dest     TEXT    NOT NULL DEFAULT '',
	after_done     INTEGER NOT NULL DEFAULT 0,
	thread_subject TEXT    NOT NULL DEFAULT '',
	new_thread     INTEGER NOT NULL DEFAULT 0,
	attempts       INTEGER NOT NULL DEFAULT 0,
	last_error     TEXT    NOT NULL DEFAULT '',
	arrived_at     INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	refetch INTEGER NOT NULL DEFAULT 0, after_error TEXT NOT NULL DEFAULT '', duplicate_of INTEGER NOT NULL DEFAULT 0,
	UNIQUE (channel, folder, uidvalidity, uid)
);

CREATE INDEX inbound_dedupe ON inbound (channel, dedupe_key) WHERE dedupe_key != '';

CREATE INDEX inbound_contact ON inbound (channel, contact, arrived_at);

CREATE INDEX inbound_state ON inbound (channel, state, id);

CREATE TABLE inbound_posts (
	ledger_id INTEGER NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	body      BLOB    NOT NULL,
	PRIMARY KEY (ledger_id, seq)
) WITHOUT ROWID;

CREATE TABLE threads (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	channel          TEXT    NOT NULL,
	contact          TEXT    NOT NULL,
	subject          TEXT    NOT NULL DEFAULT '',
	last_customer_id TEXT    NOT NULL DEFAULT '',
	last_our_id      TEXT    NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL
, cc TEXT NOT NULL DEFAULT '');

CREATE INDEX threads_contact ON threads (channel, contact, id);

CREATE TABLE thread_messages (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	thread_id  INTEGER NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
	message_id TEXT    NOT NULL,
	ours       INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	UNIQUE (thread_id, message_id)
);

CREATE INDEX thread_messages_id ON thread_messages (message_id);

CREATE TABLE outbox (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	channel     TEXT    NOT NULL,
	contact     TEXT    NOT NULL,
	userlike_id TEXT    NOT NULL DEFAULT '',
	operator    TEXT    NOT NULL DEFAULT '',
	text        TEXT    NOT NULL DEFAULT '',
	media_url   TEXT    NOT NULL DEFAULT '',
	state       TEXT    NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
	send_after  INTEGER NOT NULL DEFAULT 0,
	attempts    INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT    NOT NULL DEFAULT '',
	message_id  TEXT    NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
, cancel_requested INTEGER NOT NULL DEFAULT 0, claimed_by BIGINT NOT NULL DEFAULT 0);

CREATE UNIQUE INDEX outbox_userlike_id ON outbox (channel, userlike_id) WHERE userlike_id != '';

CREATE INDEX outbox_due ON outbox (channel, state, send_after, id);

CREATE INDEX outbox_contact ON outbox (channel, contact, id);

CREATE TABLE media (
	id           TEXT    NOT NULL PRIMARY KEY,
	sha256       TEXT    NOT NULL,
	size         INTEGER NOT NULL,
	content_type TEXT    NOT NULL DEFAULT '',
	filename     TEXT    NOT NULL DEFAULT '',
	channel      TEXT    NOT NULL DEFAULT '',
	ledger_id    INTEGER REFERENCES inbound (id) ON DELETE SET NULL,
	created_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX media_sha256 ON media (sha256);

CREATE INDEX media_created ON media (created_at);

CREATE INDEX media_ledger ON media (ledger_id);

CREATE TABLE installation_keys (
	name       TEXT    NOT NULL PRIMARY KEY,
	value      BLOB    NOT NULL,
	created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX outbox_pending ON outbox (channel, contact, send_after, id)
	WHERE state IN ('queued', 'sending');

CREATE INDEX outbox_message_id ON outbox (message_id) WHERE message_id != '';

CREATE INDEX inbound_unfinished ON inbound (channel, id) WHERE state IN ('fetched', 'posting');

CREATE TABLE inbound_raw_chunks (
	ledger_id INTEGER NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	data      BLOB    NOT NULL,
	PRIMARY KEY (ledger_id, seq)
);

CREATE INDEX outbox_queued ON outbox (send_after, id) WHERE state = 'queued';

CREATE INDEX inbound_actions ON inbound (channel, folder, id)
	WHERE after_kind != '' AND after_done = 0 AND state IN ('skipped', 'quarantined', 'posted');

CREATE INDEX inbound_refetch ON inbound (channel, folder, uidvalidity, uid) WHERE refetch = 1;

CREATE INDEX inbound_after_error ON inbound (channel, updated_at) WHERE after_error != '';

CREATE INDEX inbound_duplicates ON inbound (channel, duplicate_of) WHERE duplicate_of != 0;

CREATE TABLE oauth_grants (
	channel       TEXT    NOT NULL PRIMARY KEY,
	grant_kind    TEXT    NOT NULL,
	refresh_token BLOB,
	expires_at    INTEGER NOT NULL DEFAULT 0,
	last_refresh  INTEGER NOT NULL DEFAULT 0,
	login_needed  INTEGER NOT NULL DEFAULT 0,
	login_reason  TEXT    NOT NULL DEFAULT '',
	updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE media_chunks (
	sha256 TEXT    NOT NULL,
	seq    INTEGER NOT NULL,
	data   BLOB    NOT NULL,
	PRIMARY KEY (sha256, seq)
);

CREATE TABLE inbound_text (
	ledger_id INTEGER PRIMARY KEY REFERENCES inbound (id) ON DELETE CASCADE,
	full_text TEXT    NOT NULL
);
