package store

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// postgresSchema is the whole schema at the newest migration in
// PostgreSQL's dialect (store/postgres_schema.sql): what a new PostgreSQL
// database is created from. TestPostgresSchema keeps its tables and
// columns equal to schema.sql's.
//
//go:embed postgres_schema.sql
var postgresSchema string

// pgVersionQuery reads a PostgreSQL database's schema version, the
// counterpart of SQLite's PRAGMA user_version.
const pgVersionQuery = `SELECT version FROM mailgate_schema`

// pgMigrateLock is the advisory lock key under which one process at a
// time creates or migrates the schema of a PostgreSQL database shared by
// several instances.
const pgMigrateLock = 0x6d61696c67617465 // "mailgate"

// maxTxAttempts bounds how often a PostgreSQL transaction that lost a
// race (serialization failure, deadlock) is run again.
const maxTxAttempts = 100

// OpenPostgres opens the PostgreSQL database at dsn (a libpq connection
// string or postgres:// URL, as pgx accepts it) and brings its schema up
// to date. A new (empty) database gets the whole schema at once; several
// instances may open one database concurrently.
//
// Errors name the database by RedactDSN, never with its password.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*DB, error) {
	name := RedactDSN(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN, with a best-effort redaction;
		// say only that it is malformed.
		return nil, fmt.Errorf("store: open %s: the DSN cannot be parsed (want key=value pairs or a postgres:// URL)", name)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	conns := opts.MaxReaders
	if conns <= 0 {
		conns = max(4, runtime.GOMAXPROCS(0))
	}
	pool := stdlib.OpenDB(*cfg)
	pool.SetMaxOpenConns(conns + 4)
	pool.SetMaxIdleConns(conns + 4)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{path: name, d: &dialect{postgres: true, texts: map[string]string{}}, write: pool, read: pool, now: now}
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: open %s: %w", name, err)
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.takeOwnerLock(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: open %s: %w", name, err)
	}
	return db, nil
}

// takeOwnerLock picks this process's claim key and holds its session
// advisory lock on a connection of its own until Close. PostgreSQL drops
// the lock when the session ends, also when the process is killed, which
// is how RequeueSending on another instance tells a dead claimer's items
// from those still being sent.
func (db *DB) takeOwnerLock(ctx context.Context) error {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return err
	}
	for range 8 {
		key := rand.Int64N(1<<62) + 1
		var ok bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
			conn.Close()
			return fmt.Errorf("take the outbox claim lock: %w", err)
		}
		if ok {
			db.owner, db.ownerConn = key, conn
			return nil
		}
	}
	conn.Close()
	return errors.New("take the outbox claim lock: no free key")
}

// deadClaimers returns those of keys whose process no longer holds its
// advisory lock: its session has ended, so the items it claimed are not
// being sent any more.
func (db *DB) deadClaimers(ctx context.Context, keys []int64) ([]int64, error) {
	db.ownerMu.Lock()
	defer db.ownerMu.Unlock()
	var dead []int64
	for _, k := range keys {
		if k == db.owner {
			continue
		}
		if k == 0 {
			dead = append(dead, k) // claimed before claims had owners
			continue
		}
		var free bool
		if err := db.ownerConn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, k).Scan(&free); err != nil {
			return nil, err
		}
		if free {
			if _, err := db.ownerConn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, k); err != nil {
				return nil, err
			}
			dead = append(dead, k)
		}
	}
	return dead, nil
}

// pgPassword matches the password of a key=value DSN, quoted or not.
var pgPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)

// RedactDSN returns dsn with its password (in the URL's user info or a
// password parameter) replaced by "xxxxx", for logs and errors.
func RedactDSN(dsn string) string {
	s := strings.TrimSpace(dsn)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "postgres://(malformed URL)"
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return pgPassword.ReplaceAllString(s, "${1}xxxxx")
}

// pgTx runs fn in a SERIALIZABLE transaction and commits it. PostgreSQL
// runs transactions concurrently (within one process and across
// instances); SERIALIZABLE gives each the outcome it had alone, as with
// SQLite's single writer, and a transaction that lost a race is run again
// from the start, so fn must only set its results, never append to them.
// Like groupCommit, the transaction does not end with ctx once fn has
// begun: a caller that gives up does not leave its commit undecided.
func (db *DB) pgTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tctx := context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		tx, err := db.write.BeginTx(tctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
		if err != nil {
			return err
		}
		if err = fn(tx); err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err == nil || !retryable(err) || attempt == maxTxAttempts {
			return err
		}
		db.txRetries.Add(1)
		// Back off a little, at random, so the racers do not meet again.
		t := time.NewTimer(rand.N(time.Millisecond << min(attempt, 6)))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// TxRetries returns how many PostgreSQL transactions since Open lost a
// race with another (a serialization failure or deadlock) and were run
// again; always 0 on SQLite. Against the number of writes it shows how
// much the instances and goroutines contend.
func (db *DB) TxRetries() uint64 { return db.txRetries.Load() }

// migratePostgres creates or migrates the schema of a PostgreSQL database
// under an advisory lock, in one READ COMMITTED transaction (so that it
// sees what an instance that held the lock before it committed).
func (db *DB) migratePostgres(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("store: open %s: %w", db.path, err) }
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrateLock)); err != nil {
		return fail(fmt.Errorf("lock the schema: %w", err))
	}
	var stamped bool
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass('mailgate_schema') IS NOT NULL`).Scan(&stamped); err != nil {
		return fail(fmt.Errorf("read schema: %w", err))
	}
	if !stamped {
		var tables int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
			WHERE table_schema = current_schema()`).Scan(&tables); err != nil {
			return fail(fmt.Errorf("read schema: %w", err))
		}
		if tables > 0 {
			return fail(errors.New("the database has tables but no mailgate_schema table: it is not a mailgate store; give mailgate a database of its own"))
		}
		if _, err := tx.ExecContext(ctx, postgresSchema); err != nil {
			return fail(fmt.Errorf("create schema: %w", err))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO mailgate_schema (version) VALUES ($1)`, len(ms)); err != nil {
			return fail(fmt.Errorf("create schema: %w", err))
		}
		return wrapCommit(tx.Commit(), fail)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, pgVersionQuery).Scan(&cur); err != nil {
		return fail(fmt.Errorf("read schema version: %w", err))
	}
	if cur > len(ms) {
		return fmt.Errorf("store: %s has schema version %d, but this mailgate knows only up to %d; upgrade mailgate or restore a backup", db.path, cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, m.postgres()); err != nil {
			return fail(fmt.Errorf("migration %s: %w", m.name, err))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE mailgate_schema SET version = $1`, m.version); err != nil {
			return fail(fmt.Errorf("migration %s: %w", m.name, err))
		}
	}
	return wrapCommit(tx.Commit(), fail)
}

func wrapCommit(err error, fail func(error) error) error {
	if err != nil {
		return fail(err)
	}
	return nil
}
