package store

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the statement cache of one pool. The store's
// queries are constant strings, plus a few built from a handful of filter
// combinations; past the bound a query is simply prepared each time.
const maxCachedStmts = 256

// stmtCache keeps one prepared statement per query text for a pool.
// Preparing (parsing and planning) a statement cost about as much CPU as
// running it for the store's small queries; database/sql keeps a prepared
// statement per connection, so the writer's single connection and each
// reader reuse theirs.
//
// Preparing on a pool needs a free connection of that pool. Inside a
// transaction the caller holds one (the writer has only one), so a query
// first met inside a transaction runs unprepared and is only noted; it is
// prepared by prepare, which callers run before they begin a transaction.
// No lock is held while preparing.
//
// On PostgreSQL the store keeps no stmtCache (the nil *stmtCache caches
// nothing): pgx prepares and caches each query text per connection by
// itself.
type stmtCache struct {
	pool *sql.DB
	mu   sync.Mutex
	m    map[string]*sql.Stmt
	todo map[string]bool // met inside a transaction, not prepared yet
}

func newStmtCache(pool *sql.DB) *stmtCache {
	return &stmtCache{pool: pool, m: make(map[string]*sql.Stmt), todo: make(map[string]bool)}
}

// lookup returns the prepared statement of query, or nil; with note, an
// unknown query is remembered for prepare.
func (c *stmtCache) lookup(query string, note bool) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[query]
	if st == nil && note && len(c.m)+len(c.todo) < maxCachedStmts {
		c.todo[query] = true
	}
	return st
}

// get returns the prepared statement of query, preparing it when needed;
// nil when the cache is full or preparing failed (the caller then runs the
// query unprepared). The caller must not hold a connection of the pool.
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	st, full := c.m[query], len(c.m) >= maxCachedStmts
	c.mu.Unlock()
	if st != nil || full {
		return st
	}
	st, err := c.pool.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.todo, query)
	if old := c.m[query]; old != nil {
		st.Close() // prepared meanwhile by another caller
		return old
	}
	c.m[query] = st
	return st
}

// prepare prepares the queries noted inside transactions. The caller must
// not hold a connection of the pool.
func (c *stmtCache) prepare(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	var todo []string
	for q := range c.todo {
		todo = append(todo, q)
	}
	c.mu.Unlock()
	for _, q := range todo {
		c.get(ctx, q)
	}
}

// close closes every cached statement.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// txExec runs a single-statement query in tx with a cached statement; tx
// must be a writer transaction (db.tx, db.lazyTx).
func (db *DB) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	query, args = db.d.q(query), db.d.args(args)
	st := db.wstmts.lookup(query, true)
	if st == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// txQueryRow is tx.QueryRowContext with a cached statement; tx must be a
// writer transaction (db.tx, db.lazyTx).
func (db *DB) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	return db.cachedQueryRow(ctx, tx, true, query, args...)
}

// rtxQuery is tx.QueryContext with a cached statement; tx must be a
// transaction of the read pool.
func (db *DB) rtxQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	return db.cachedQuery(ctx, tx, false, query, args...)
}

// rtxQueryRow is tx.QueryRowContext with a cached statement; tx must be a
// transaction of the read pool.
func (db *DB) rtxQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	return db.cachedQueryRow(ctx, tx, false, query, args...)
}

// cachedQuery is tx.QueryContext with a statement cached for the writer
// (write) or the read pool; the outbox reads threads in both kinds of
// transaction, once per reply of a burst.
func (db *DB) cachedQuery(ctx context.Context, tx *sql.Tx, write bool, query string, args ...any) (*sql.Rows, error) {
	query, args = db.d.q(query), db.d.args(args)
	c := db.rstmts
	if write {
		c = db.wstmts
	}
	if st := c.lookup(query, true); st != nil {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// cachedQueryRow is cachedQuery for one row.
func (db *DB) cachedQueryRow(ctx context.Context, tx *sql.Tx, write bool, query string, args ...any) *sql.Row {
	query, args = db.d.q(query), db.d.args(args)
	c := db.rstmts
	if write {
		c = db.wstmts
	}
	if st := c.lookup(query, true); st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// writeExec is db.write.ExecContext with a cached statement (no barrier).
func (db *DB) writeExec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	query, args = db.d.q(query), db.d.args(args)
	st := db.wstmts.get(ctx, query)
	if st == nil {
		return db.write.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

// readQuery is db.read.QueryContext with a cached statement.
func (db *DB) readQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query, args = db.d.q(query), db.d.args(args)
	st := db.rstmts.get(ctx, query)
	if st == nil {
		return db.read.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// readQueryRow is db.read.QueryRowContext with a cached statement.
func (db *DB) readQueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	query, args = db.d.q(query), db.d.args(args)
	st := db.rstmts.get(ctx, query)
	if st == nil {
		return db.read.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// beginRead begins a read-only transaction of the read pool, after
// preparing the statements earlier read transactions noted.
func (db *DB) beginRead(ctx context.Context) (*sql.Tx, error) {
	if db.d.postgres {
		// One snapshot for the whole transaction, as SQLite's WAL
		// readers have.
		return db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	}
	db.rstmts.prepare(ctx)
	return db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
}

// The uncached forms: every query the store sends goes through db.d.q,
// which puts it in the backend's dialect.

// txExecOnce is tx.ExecContext for a query run too seldom to cache.
func (db *DB) txExecOnce(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, db.d.q(query), db.d.args(args)...)
}

// txQueryOnce is tx.QueryContext for a query run too seldom to cache.
func (db *DB) txQueryOnce(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	return tx.QueryContext(ctx, db.d.q(query), db.d.args(args)...)
}

// txQueryRowOnce is tx.QueryRowContext for a query run too seldom to
// cache.
func (db *DB) txQueryRowOnce(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	return tx.QueryRowContext(ctx, db.d.q(query), db.d.args(args)...)
}

// readQueryOnce is db.read.QueryContext for a query run too seldom to
// cache.
func (db *DB) readQueryOnce(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.read.QueryContext(ctx, db.d.q(query), db.d.args(args)...)
}

// readQueryRowOnce is db.read.QueryRowContext for a query run too seldom
// to cache.
func (db *DB) readQueryRowOnce(ctx context.Context, query string, args ...any) *sql.Row {
	return db.read.QueryRowContext(ctx, db.d.q(query), db.d.args(args)...)
}
