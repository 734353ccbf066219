package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Barrier makes every transaction committed before the call durable: it
// survives a power cut or kernel crash, not only the process dying. It
// fsyncs the WAL file; concurrent callers share one fsync. Commits of
// methods documented as durable have passed it already; call it before
// acknowledging anything that rests on the inbound ledger (a POST, an IMAP
// action). See the package documentation.
func (db *DB) Barrier(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: barrier %q: %w", db.path, err)
	}
	if db.wal == nil {
		// PostgreSQL: with synchronous_commit on, every COMMIT is durable
		// (on the server, and on its synchronous standbys) when it returns.
		return nil
	}
	if err := db.wal.sync(); err != nil {
		return fmt.Errorf("store: barrier %q: %w", db.path, err)
	}
	return nil
}

// WALSyncs returns the number of fsyncs of the WAL since Open. Against the
// number of commits that needed one, it shows how well group commit works;
// mailgate exports it as mailgate_store_wal_fsyncs_total (TxRetries as
// mailgate_store_tx_retries_total).
// On PostgreSQL it is always 0.
func (db *DB) WALSyncs() uint64 {
	if db.wal == nil {
		return 0
	}
	return db.wal.syncs.Load()
}

// walSyncer fsyncs a database's WAL file with group commit: a caller
// returns once an fsync that began after its call has finished, and the
// callers that queue behind a running fsync share the next one.
//
// fsync acts on the file, not the descriptor, so syncing a descriptor of
// our own flushes the WAL frames SQLite wrote through its connections. The
// file is opened for each fsync: SQLite may delete and re-create the WAL
// (when the last connection closes), and a long-lived descriptor would
// then sync a file nobody uses.
type walSyncer struct {
	wal, dir string
	fsync    func(path string) error // fsyncPath; tests count the calls

	requests atomic.Uint64 // tickets handed to callers, counting from 1
	syncs    atomic.Uint64 // WAL fsyncs done
	mu       sync.Mutex    // held during an fsync
	covered  uint64        // every ticket <= covered is durable
	passed   atomic.Uint64 // covered, for readers that do not wait (hasPassed)
	dirDone  bool          // the directory has been synced once
}

func newWALSyncer(dbPath string) *walSyncer {
	return &walSyncer{wal: dbPath + "-wal", dir: filepath.Dir(dbPath), fsync: fsyncPath}
}

// sync returns once every commit that finished before the call is on
// disk. A commit that a caller can see (through any connection) has
// written its WAL frames, so its frames were written before the caller's
// ticket; an fsync that starts after the ticket covers them.
func (w *walSyncer) sync() error {
	ticket := w.requests.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.covered >= ticket {
		return nil // an fsync that began after our call has finished
	}
	start := w.requests.Load() // every ticket up to here is covered by this fsync
	if !w.dirDone {
		if err := w.fsync(w.dir); err != nil {
			return err
		}
	}
	if err := w.fsync(w.wal); err != nil {
		return err
	}
	w.syncs.Add(1)
	w.dirDone = true
	w.covered = start
	w.passed.Store(start)
	return nil
}

// ticket takes a ticket without waiting: every commit that finished
// before the call is durable once hasPassed(ticket) holds.
func (w *walSyncer) ticket() uint64 { return w.requests.Add(1) }

// hasPassed reports whether an fsync that began after ticket t was taken
// has finished.
func (w *walSyncer) hasPassed(t uint64) bool { return t != 0 && w.passed.Load() >= t }

// runWALSyncer passes a barrier after each commit of new ledger rows
// (keepRecent wakes it), so that a row is usually on disk before its post
// is due and PostBarrier need not wait for an fsync of its own.
func (db *DB) runWALSyncer(done *sync.WaitGroup, stop <-chan struct{}) {
	defer done.Done()
	for {
		select {
		case <-stop:
			return
		case <-db.walWake:
		}
		// A failure is PostBarrier's to report: it passes a barrier
		// itself when this one did not.
		_ = db.wal.sync()
	}
}

// fsyncPath opens path and fsyncs it. A missing WAL file has nothing to
// sync: SQLite checkpointed it into the database file (syncing both) and
// removed it.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
