-- 001_init.sql: the first mailgate schema.
--
-- All times are unix milliseconds (INTEGER); 0 means "unset".
-- Booleans are INTEGER 0/1.

-- One IMAP cursor per (channel, folder): the highest UID recorded in the
-- ledger under the folder's current UIDVALIDITY.
CREATE TABLE cursors (
	channel     TEXT    NOT NULL,
	folder      TEXT    NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uid         INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	PRIMARY KEY (channel, folder)
) WITHOUT ROWID;

-- The inbound ledger: one row per fetched IMAP message.
-- state: fetched, skipped, quarantined, posting, posted, dead.
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
	full_text      TEXT    NOT NULL DEFAULT '',
	UNIQUE (channel, folder, uidvalidity, uid)
);

-- Duplicate detection by Message-ID or content hash, per channel.
CREATE INDEX inbound_dedupe ON inbound (channel, dedupe_key) WHERE dedupe_key != '';
-- Posting queue: the oldest unfinished row of each contact.
CREATE INDEX inbound_due ON inbound (channel, contact, id) WHERE state IN ('fetched', 'posting');
-- IMAP actions still to apply.
CREATE INDEX inbound_after ON inbound (channel, folder, id) WHERE after_kind != '' AND after_done = 0;
-- Per-sender rate limit.
CREATE INDEX inbound_contact ON inbound (channel, contact, arrived_at);
-- Listing by state and pruning.
CREATE INDEX inbound_state ON inbound (channel, state, id);

-- The raw message, kept apart so that scanning the ledger never walks
-- through large blobs; pruned once a row is settled.
CREATE TABLE inbound_raw (
	ledger_id INTEGER PRIMARY KEY REFERENCES inbound (id) ON DELETE CASCADE,
	raw       BLOB    NOT NULL
);

-- The JSON bodies to POST for one ledger row, in order (seq from 0).
CREATE TABLE inbound_posts (
	ledger_id INTEGER NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	body      BLOB    NOT NULL,
	PRIMARY KEY (ledger_id, seq)
) WITHOUT ROWID;

-- Conversation threads per (channel, contact). A contact may have had
-- several threads; the newest (highest id) is the current one.
CREATE TABLE threads (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	channel          TEXT    NOT NULL,
	contact          TEXT    NOT NULL,
	subject          TEXT    NOT NULL DEFAULT '',
	last_customer_id TEXT    NOT NULL DEFAULT '',
	last_our_id      TEXT    NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL
);
CREATE INDEX threads_contact ON threads (channel, contact, id);

-- The Message-IDs of a thread, the customer's and ours, in order.
CREATE TABLE thread_messages (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	thread_id  INTEGER NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
	message_id TEXT    NOT NULL,
	ours       INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	UNIQUE (thread_id, message_id)
);
CREATE INDEX thread_messages_id ON thread_messages (message_id);

-- The outbox: operator replies to mail out.
-- state: queued, sending, sent, failed, cancelled.
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
);
CREATE UNIQUE INDEX outbox_userlike_id ON outbox (channel, userlike_id) WHERE userlike_id != '';
CREATE INDEX outbox_due ON outbox (channel, state, send_after, id);
CREATE INDEX outbox_contact ON outbox (channel, contact, id);

-- Media files served at signed URLs. Several ids may share one file
-- (same sha256); the file goes when its last row goes.
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

-- Installation secrets (for example the media URL HMAC key), created once
-- with crypto/rand and never shown.
CREATE TABLE installation_keys (
	name       TEXT    NOT NULL PRIMARY KEY,
	value      BLOB    NOT NULL,
	created_at INTEGER NOT NULL
) WITHOUT ROWID;
