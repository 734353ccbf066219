// Package store keeps mailgate's state in one database: the IMAP cursors,
// the inbound ledger and the posts it still owes Userlike, the outbox of
// operator replies, the conversation threads, the media index and the
// installation secrets.
//
// One API, two backends. Open opens an SQLite file, the embedded default
// for a single host; OpenPostgres opens a PostgreSQL database that several
// mailgate instances share. The queries are written once, in the SQL both
// understand (RETURNING, ON CONFLICT, CASE instead of SQLite's scalar max),
// with "?" placeholders; the statement helpers (stmt.go) pass every query
// through the dialect (dialect.go), which for PostgreSQL numbers the
// placeholders, drops SQLite's index hints and spells json_each as
// json_array_elements_text, once per query text. The schema exists in both
// dialects: schema.sql and postgres_schema.sql, kept equal in tables,
// columns and indexes by TestPostgresSchema; migrations in schema/ run on
// both unless one comes with a NNN_what.pg.sql version.
//
// # SQLite
//
// A DB holds two connection pools on the same file. All writes and all
// transactions go through a single writer connection, so writers queue in
// database/sql instead of fighting for the SQLite write lock (no
// SQLITE_BUSY inside one process). Reads go through a separate pool of
// query-only connections that, thanks to WAL mode, never wait for the
// writer.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL, so a
// COMMIT writes the WAL into the kernel's page cache without an fsync. That
// already keeps every committed transaction when the process dies (kill
// -9, panic, OOM kill), but a power cut or kernel crash may roll back the
// last commits. Whatever mailgate acknowledges to the outside world must
// survive that, so the store makes commits durable with an explicit
// fsync of the WAL, a barrier (see Barrier), before the acknowledgement:
//
//   - methods whose commit is itself an acknowledgement or feeds one
//     directly (the outbox behind the webhook's 200, retries and failures
//     of replies, installation keys, migrations, admin changes) pass the
//     barrier before they return, exactly as synchronous=FULL did;
//   - the inbound ledger (RecordInbound, MarkPosting, PostDone,
//     PostAccepted, PostFailed, MarkDead, SetLastError, ActionsDone,
//     PruneRaw, the cursors, the media index) commits without it: nothing
//     has been acknowledged yet when it writes. The barrier comes before
//     the acknowledgements instead: PendingActions passes it before it
//     returns any IMAP action (so mail is flagged, moved or deleted on the
//     server only once its ledger row is on disk), and the poster passes
//     it before each POST (PostBarrier; so that a power cut never
//     re-posts more than the posts in flight, as with FULL, or with the
//     accept log, below, maxUnsynced more);
//   - the SMTP bookkeeping of one burst (MarkOutboxSending, EnsureThread,
//     MarkOutboxSent) commits without it too: the outbound worker passes
//     the barrier once before the burst, so the Message-IDs the emails
//     carry are on disk before any of them leaves, and once after it, so
//     a power cut sends at most the burst in flight again, with the same
//     Message-IDs.
//
// With Options.AcceptLog (the daemon), PostAccepted does not commit at
// all: it appends the acceptance to a log beside the database, which, like
// a commit without fsync, survives the process dying; the log's own
// goroutine fsyncs it, and the next write transaction folds the accepted
// posts into their rows. PostBarrier then covers the row it posts and the
// acceptance that post follows, and a power cut re-posts at most the posts
// in flight and maxUnsynced accepted ones. See acceptlog.go.
//
// A barrier fsyncs the WAL file itself, outside the writer connection, so
// writers go on meanwhile, and concurrent barriers share one fsync (group
// commit): a burst of webhook requests costs a few fsyncs, not one each.
//
// # PostgreSQL
//
// One pool (Options.MaxReaders plus 4 connections) serves reads and
// writes. There is no group commit: transactions run concurrently, at
// SERIALIZABLE, so each has the outcome it would have alone, as with
// SQLite's single writer; one that loses a race with another (in this
// process or another instance) is rolled back and run again. Read-only
// transactions run at REPEATABLE READ, one snapshot as SQLite's WAL
// readers have. pgx prepares and caches each query per connection, so the
// store keeps no statement cache of its own. Barrier is a no-op: with
// synchronous_commit on (PostgreSQL's default; keep it), every COMMIT is
// durable when it returns, on the server and on its synchronous standbys.
//
// Instances share the outbox: every instance answers the webhook and runs
// the outbox worker, and MarkOutboxSending claims a due batch with FOR
// UPDATE SKIP LOCKED, so that each reply is claimed by one instance and a
// contact's batch is never split (see MarkOutboxSending). Installation keys
// are created with INSERT ... ON CONFLICT DO NOTHING and read back, so all
// instances sign media URLs and Message-IDs with the same keys, and the
// media contents are kept in the store too (PutMediaBlob, MediaBlob; see
// media.Options.Blobs), so that a signed media URL works on every
// instance. CopyTo copies an SQLite store into a new PostgreSQL one
// (mailgate store migrate). The inbound
// ledger of a channel is written by the one instance working that
// channel's mailbox; it takes no row locks. Each open DB holds a session
// advisory lock under a random key for as long as it is open and stamps
// the outbox items it claims with that key (claimed_by); RequeueSending
// requeues only the items whose claimer's lock is free, that is, whose
// process has gone, never those another running instance is delivering.
//
// PostgreSQL's TEXT holds only UTF-8 without NUL bytes: a string with
// others (a broken header of a malformed email) is stored with U+FFFD in
// their place rather than failing; SQLite keeps the bytes.
//
// All times are stored as unix milliseconds.
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"mailgate/mailaddr"
)

// ErrNotFound is returned (possibly wrapped) when a looked-up row does not
// exist.
var ErrNotFound = errors.New("store: not found")

//go:embed schema/*.sql
var schemaFS embed.FS

// currentSchema is the whole schema at the newest migration, in one file
// (store/schema.sql): what a new database is created from, and what a
// reader consults instead of replaying the migrations in store/schema.
// TestSchemaFile keeps the two in step.
//
//go:embed schema.sql
var currentSchema string

// Options tunes Open. The zero value is ready to use.
type Options struct {
	// BusyTimeout is how long a connection waits for a lock held by
	// another process (for example a mailgate CLI command running beside
	// the daemon) before failing with SQLITE_BUSY. Default 5s.
	BusyTimeout time.Duration
	// MaxReaders caps the read pool. Default: max(4, GOMAXPROCS). On
	// PostgreSQL it caps the one pool, plus 4 for writers.
	MaxReaders int
	// Now returns the current time; tests set it. Default time.Now.
	Now func() time.Time
	// AcceptLog records PostAccepted in an append-only log beside the
	// database (`<path>-accepted`) and folds the acceptances into the
	// ledger in batches, instead of a commit per post (see acceptlog.go).
	// The daemon sets it; only one process can hold the log, and a store
	// opened beside one that does records acceptances as commits.
	// PostgreSQL ignores it.
	AcceptLog bool

	foldManually bool // tests: no folder goroutine, acceptances wait for a write
}

// DB is an open mailgate database. It is safe for concurrent use.
type DB struct {
	path  string   // the database file; on PostgreSQL the DSN without its password
	d     *dialect // the backend's SQL dialect
	write *sql.DB  // exactly one connection: every write and transaction; on PostgreSQL the one pool
	read  *sql.DB  // query-only pool; on PostgreSQL the same pool as write
	now   func() time.Time
	wal   *walSyncer // nil on PostgreSQL

	wstmts, rstmts *stmtCache // prepared statements of write and read

	commits groupCommit   // every write transaction goes through it
	recent  recentPosts   // queued posts recorded by this process, for DuePosts
	walWake chan struct{} // pokes the WAL syncer (with the accept log); nil without one
	accepts *acceptLog    // Options.AcceptLog on SQLite: see acceptlog.go; else nil

	txRetries    atomic.Uint64 // PostgreSQL transactions run again (pgTx)
	groupRetries atomic.Uint64 // SQLite groups run again with savepoints (commitGroup)

	// owner is this process's claim key on PostgreSQL (0 on SQLite): the
	// session advisory lock it holds on ownerConn for as long as the DB is
	// open, and the outbox's claimed_by of the items it sends.
	owner     int64
	ownerMu   sync.Mutex // serialises the use of ownerConn
	ownerConn *sql.Conn
}

// StateError reports that a ledger or outbox row is not in a state that
// allows the requested change.
type StateError struct {
	Table string // "inbound" or "outbox"
	ID    int64
	State string // the row's current state
	Op    string // what was attempted, e.g. "requeue"
}

// Error implements error.
func (e *StateError) Error() string {
	return fmt.Sprintf("store: %s %s #%d: not allowed in state %q", e.Op, e.Table, e.ID, e.State)
}

// Open opens (creating when needed) the database at path and brings its
// schema up to date. The parent directory is created with mode 0700 and
// the database file with mode 0600.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: open: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	// Create the file ourselves so that it gets 0600; SQLite then gives the
	// -wal and -shm files the same mode. An existing file keeps its mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}

	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	maxReaders := opts.MaxReaders
	if maxReaders <= 0 {
		maxReaders = max(4, runtime.GOMAXPROCS(0))
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	write, err := sql.Open("sqlite", dsn(abs, busy, false))
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)

	db := &DB{path: abs, d: &dialect{}, write: write, now: now, wal: newWALSyncer(abs), wstmts: newStmtCache(write)}
	if err := db.migrate(ctx); err != nil {
		write.Close()
		return nil, err
	}
	// The first barrier also syncs the directory, which makes the -wal
	// file's own directory entry durable.
	if err := db.Barrier(ctx); err != nil {
		write.Close()
		return nil, err
	}

	read, err := sql.Open("sqlite", dsn(abs, busy, true))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	read.SetMaxOpenConns(maxReaders)
	read.SetMaxIdleConns(maxReaders)
	if err := read.PingContext(ctx); err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	db.read = read
	db.rstmts = newStmtCache(read)
	// A log left by a process that died is replayed even without
	// AcceptLog, so that every store sees its acceptances.
	if err := db.startAcceptLog(ctx, opts.AcceptLog, opts.foldManually); err != nil {
		write.Close()
		read.Close()
		return nil, err
	}
	return db, nil
}

// dsn builds the connection string. The pragmas ride in the DSN so that
// every connection database/sql opens gets them, not just the first.
func dsn(abs string, busy time.Duration, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	// NORMAL: commits are made durable by Barrier (see the package doc).
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Statement journals (multi-row UPDATEs inside a transaction) in
	// memory, not in a temporary file written page by page.
	q.Add("_pragma", "temp_store(MEMORY)")
	if readOnly {
		// Applied after the other pragmas (the driver sorts them).
		q.Add("_pragma", "query_only(1)")
	} else {
		// Take the write lock at BEGIN: a deferred transaction that
		// upgrades from read to write can fail with SQLITE_BUSY at
		// once, without waiting for busy_timeout.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// Path returns the absolute path of the database file; on PostgreSQL the
// DSN with its password left out (see RedactDSN).
func (db *DB) Path() string { return db.path }

// Driver returns the backend: DriverSQLite or DriverPostgres.
func (db *DB) Driver() string { return db.d.name() }

// Close folds the acceptances in the accept log into the ledger and closes
// both connection pools.
func (db *DB) Close() error {
	aerr := db.closeAcceptLog(context.Background())
	db.wstmts.close()
	db.rstmts.close()
	if db.ownerConn != nil {
		db.ownerConn.Close()
	}
	var err error
	if db.read != db.write {
		err = db.read.Close()
	}
	if werr := db.write.Close(); err == nil {
		err = werr
	}
	if err == nil {
		err = aerr
	}
	if err != nil {
		return fmt.Errorf("store: close %q: %w", db.path, err)
	}
	return nil
}

// migration is one numbered schema file.
type migration struct {
	version int
	name    string
	sql     string
	pg      string // NNN_what.pg.sql: the PostgreSQL version, when sql is not portable
}

// postgres returns the migration's PostgreSQL text.
func (m migration) postgres() string {
	if m.pg != "" {
		return m.pg
	}
	return m.sql
}

// pgSuffix ends the name of a migration's PostgreSQL version.
const pgSuffix = ".pg.sql"

// migrations returns the embedded schema files ordered by number. Files are
// named NNN_what.sql and numbered 1, 2, 3, ... without gaps.
//
// A migration whose SQL PostgreSQL does not accept comes with its
// PostgreSQL version beside it, NNN_what.pg.sql; otherwise both backends
// run NNN_what.sql. A new PostgreSQL database starts from
// postgres_schema.sql at the newest version, so only migrations added
// after a database was created ever run on it.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(schemaFS, "schema")
	if err != nil {
		return nil, fmt.Errorf("store: read schema: %w", err)
	}
	var ms []migration
	pg := map[string]string{}
	for _, e := range entries {
		if base, ok := strings.CutSuffix(e.Name(), pgSuffix); ok {
			b, err := fs.ReadFile(schemaFS, path.Join("schema", e.Name()))
			if err != nil {
				return nil, fmt.Errorf("store: read schema %s: %w", e.Name(), err)
			}
			pg[base+".sql"] = string(b)
			continue
		}
		n, err := migrationVersion(e.Name())
		if err != nil {
			return nil, err
		}
		b, err := fs.ReadFile(schemaFS, path.Join("schema", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: read schema %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: n, name: e.Name(), sql: string(b)})
	}
	for i := range ms {
		if s, ok := pg[ms[i].name]; ok {
			ms[i].pg = s
			delete(pg, ms[i].name)
		}
	}
	for name := range pg {
		return nil, fmt.Errorf("store: schema %s%s: no %s beside it", strings.TrimSuffix(name, ".sql"), pgSuffix, name)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: schema %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// migrationVersion parses the number in front of "NNN_name.sql".
func migrationVersion(name string) (int, error) {
	num, _, ok := strings.Cut(name, "_")
	if !ok || !strings.HasSuffix(name, ".sql") {
		return 0, fmt.Errorf("store: schema file %q: want NNN_name.sql", name)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("store: schema file %q: bad version number", name)
	}
	return n, nil
}

// migrate brings the schema to the newest version. Each migration runs in
// its own transaction together with the user_version bump, so a failed
// migration leaves the database at the previous version.
func (db *DB) migrate(ctx context.Context) error {
	if db.d.postgres {
		return db.migratePostgres(ctx)
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	var cur int
	if err := db.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
		return fmt.Errorf("store: open %q: read schema version: %w", db.path, err)
	}
	if cur > len(ms) {
		return fmt.Errorf("store: %s has schema version %d, but this mailgate knows only up to %d; upgrade mailgate or restore a backup", db.path, cur, len(ms))
	}
	var objects int
	if err := db.write.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&objects); err != nil {
		return fmt.Errorf("store: open %q: read schema: %w", db.path, err)
	}
	if cur == 0 && objects == 0 {
		// A new database: the current schema at once.
		err := db.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, currentSchema); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(ms)))
			return err
		})
		if err != nil {
			return fmt.Errorf("store: open %q: create schema: %w", db.path, err)
		}
		return nil
	}
	for _, m := range ms[cur:] {
		err := db.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version))
			return err
		})
		if err != nil {
			return fmt.Errorf("store: open %q: migration %s: %w", db.path, m.name, err)
		}
	}
	return nil
}

// SchemaVersion returns the database's schema version (PRAGMA user_version).
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	q := "PRAGMA user_version"
	if db.d.postgres {
		q = pgVersionQuery
	}
	var v int
	if err := db.read.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

// tx runs fn in a transaction on the writer connection, commits when fn
// returns nil and makes the commit durable (Barrier) before it returns.
// fn must use tx only, never db.write: the writer has a single connection
// and tx holds it.
func (db *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if db.d.postgres {
		return db.pgTx(ctx, fn)
	}
	return db.commits.run(db, ctx, fn, true)
}

// lazyTx is tx without the barrier: the commit survives the process dying
// but not a power cut until the next Barrier. Only the inbound ledger and
// the SMTP bookkeeping use it (see the package doc).
// Concurrent calls share one transaction and one commit (see groupCommit).
func (db *DB) lazyTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if db.d.postgres {
		return db.pgTx(ctx, fn)
	}
	return db.commits.run(db, ctx, fn, false)
}

// exec runs one statement on the writer and makes it durable (Barrier).
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r, err := db.write.ExecContext(ctx, db.d.q(query), db.d.args(args)...)
	if err != nil {
		return nil, err
	}
	return r, db.Barrier(ctx)
}

// ms converts t to unix milliseconds; the zero time is 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS converts unix milliseconds back; 0 is the zero time.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// nowMS is the current time in unix milliseconds.
func (db *DB) nowMS() int64 { return db.now().UnixMilli() }

// normContact is the key a contact (an email address) is stored under.
func normContact(c string) string { return mailaddr.Key(c) }

// boolInt converts a bool to the 0/1 the schema stores booleans as.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// jsonArray encodes a slice as a JSON array for json_each(?).
func jsonArray(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
