package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// groupCommit runs concurrent write transactions of the single writer
// connection together: each caller queues its function, the first one
// leads, takes every queued function (up to maxGroup), runs them in one
// SQLite transaction, each inside its own savepoint, and commits once. It
// then hands the lead to the next waiting caller, whose group commits
// while this one's barrier (fsync) runs. During a backlog the inbound
// handler, the posters and the watcher write at once, and every commit
// writes its index and table pages to the WAL with one system call each:
// a group shares those pages and those calls.
//
// A caller's outcome is the same as alone: its function's error (the
// others unaffected: the group runs again with a savepoint per function), or nil once the group is
// committed (and, when it asked for one, past a barrier). A failed commit
// fails every function of the group.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*txReq
	leading bool
}

// maxGroup bounds a group, so that a flood does not make one transaction
// (and the latency of its first caller) arbitrarily long.
const maxGroup = 64

// txReq is one transaction function waiting for its group.
type txReq struct {
	ctx     context.Context
	fn      func(tx *sql.Tx) error
	barrier bool          // pass a Barrier before answering
	wake    chan struct{} // closed when done, or when it is to lead the next group
	lead    bool          // set before wake is closed: run the next group
	err     error
}

// run returns fn's outcome once its group has committed.
func (g *groupCommit) run(db *DB, ctx context.Context, fn func(tx *sql.Tx) error, barrier bool) error {
	req := &txReq{ctx: ctx, fn: fn, barrier: barrier, wake: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, req)
	if g.leading {
		g.mu.Unlock()
		<-req.wake
		if !req.lead {
			return req.err
		}
		g.mu.Lock() // the previous leader handed over; g.leading stays true
	}
	g.leading = true
	n := min(len(g.queue), maxGroup)
	group := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	err := db.commitGroup(group)

	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.lead = true
		close(next.wake)
	} else {
		g.leading = false
	}
	g.mu.Unlock()

	var durable []*txReq
	for _, r := range group {
		if err != nil && r.err == nil {
			r.err = err
		}
		if r.barrier && r.err == nil {
			durable = append(durable, r)
			continue
		}
		if r != req {
			close(r.wake)
		}
	}
	if len(durable) > 0 {
		// Concurrent leaders share this fsync (see walSyncer).
		berr := db.Barrier(context.WithoutCancel(durable[0].ctx))
		for _, r := range durable {
			r.err = berr
			if r != req {
				close(r.wake)
			}
		}
	}
	return req.err
}

// commitGroup runs the functions of group in one transaction and commits
// it. A function whose context has ended is not run. The error is the
// transaction's; each function's own error is in its request. The
// transaction first folds the acceptances waiting in the accept log, so
// that the functions see them (see acceptlog.go).
func (db *DB) commitGroup(group []*txReq) error {
	var taken map[int64]int
	if db.accepts != nil {
		taken = db.accepts.take()
	}
	committed, err := db.runGroup(group, taken)
	if db.accepts != nil {
		db.accepts.settle(taken, committed)
	}
	return err
}

// runGroup is commitGroup's transaction: it reports whether it committed.
func (db *DB) runGroup(group []*txReq, taken map[int64]int) (committed bool, err error) {
	db.wstmts.prepare(group[0].ctx)
	// The transaction is the group's, not any one caller's: a caller that
	// gives up does not take the others down.
	ctx := context.WithoutCancel(group[0].ctx)
	begin := func() (*sql.Tx, error) {
		tx, err := db.write.BeginTx(ctx, nil)
		if err != nil || len(taken) == 0 {
			return tx, err
		}
		if err := db.foldAccepted(ctx, tx, taken); err != nil {
			tx.Rollback()
			return nil, err
		}
		return tx, nil
	}
	// end commits tx when anything in it is to be kept.
	end := func(tx *sql.Tx, keep bool) (bool, error) {
		if !keep && len(taken) == 0 {
			return false, tx.Rollback()
		}
		err := tx.Commit()
		return err == nil, err
	}
	tx, err := begin()
	if err != nil {
		return false, err
	}
	if len(group) == 1 {
		r := group[0]
		if r.err = r.ctx.Err(); r.err == nil {
			r.err = r.fn(tx)
		}
		if r.err != nil {
			// The fold, if any, waits for the next transaction.
			tx.Rollback()
			return false, nil
		}
		return end(tx, true)
	}
	// First without savepoints. Inside a savepoint SQLite copies every
	// page a statement changes into a statement journal first (a malloc
	// and a page copy each), and functions rarely fail. When one does, the
	// whole transaction is rolled back and the group runs again with a
	// savepoint per function, so that only the failing one is undone. A
	// function may run twice that way; pgTx runs them again too.
	ran, failed := 0, false
	for _, r := range group {
		if r.err = r.ctx.Err(); r.err != nil {
			continue
		}
		if r.err = r.fn(tx); r.err != nil {
			failed = true
			break
		}
		ran++
	}
	if !failed {
		return end(tx, ran > 0)
	}
	if err := tx.Rollback(); err != nil {
		return false, err
	}
	db.groupRetries.Add(1)
	if tx, err = begin(); err != nil {
		return false, err
	}
	ok := 0
	for _, r := range group {
		if r.err = r.ctx.Err(); r.err != nil {
			continue
		}
		if _, err := tx.Exec("SAVEPOINT g"); err != nil {
			tx.Rollback()
			return false, err
		}
		if r.err = r.fn(tx); r.err != nil {
			if _, err := tx.Exec("ROLLBACK TO g"); err != nil {
				tx.Rollback()
				return false, errors.Join(errGroupAborted, err)
			}
		} else {
			ok++
		}
		if _, err := tx.Exec("RELEASE g"); err != nil {
			tx.Rollback()
			return false, err
		}
	}
	return end(tx, ok > 0)
}

// errGroupAborted is the error of a group whose transaction could not roll
// one function back: none of its functions is committed.
var errGroupAborted = errors.New("store: a transaction of the group failed and could not be rolled back alone")
