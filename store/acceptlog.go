package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The accept log keeps the poster's acceptances out of the writer's queue.
//
// A POST that Userlike accepted must be on record before the poster takes
// another slot, or a kill -9 re-posts it. With the SQLite ledger that record
// was a commit of its own, which waited behind the inbound handler's batch
// transactions (about 2 ms of the 6 ms a post took in a backlog) and wrote
// the row's and its indexes' pages once per post. With Options.AcceptLog the
// acceptance is instead one 16-byte record appended to `<database>-accepted`
// (a write(2), which survives the process dying like a commit without
// fsync does), and the store folds the accepted posts into the ledger rows
// at the start of the next write transaction, many at once; a goroutine
// starts one when no other writer comes along.
//
// Until a fold commits, the store overlays the log on what it reads for the
// poster (DuePosts hands out the post after the accepted one, or the
// contact's next row), and every write transaction folds first, so a row's
// state changes (dead letters, failures) see every acceptance before them.
//
// A record is fsynced by a goroutine of its own, not by the poster: the
// poster's slot is free once the write(2) returns, and the fsync of its
// record overlaps the next POST. Two rules keep what a power cut can
// re-post bounded and in order:
//   - PostAccepted waits for the fsync when maxUnsynced records are
//     already waiting for one, so at most maxUnsynced accepted posts
//     besides those in flight are not on disk;
//   - a post to a contact whose last acceptance is not on disk yet (the
//     row's next post, or the contact's next row) carries that record's
//     number, and PostBarrier has it on disk before the POST, so a power
//     cut never re-posts an email after the contact's next one.
// The barrier otherwise covers only the post's row. Open replays a log
// left by a process that died, and the log is emptied once everything in
// it is folded and on disk.
//
// Only one process appends: the one holding an exclusive flock on the log
// (the daemon). A store opened while another process holds it (a CLI
// command beside the daemon) records acceptances as commits.

// acceptRecordSize is the size of one log record: the ledger id (8 bytes),
// the number of the row's posts accepted so far (4) and a CRC-32C of both
// (4), little-endian.
const acceptRecordSize = 16

// The log is a file of zeros, written over record by record: an fsync of
// a write that does not change the file's size need not write its inode
// (p50 165 us against 270 us when appending, p90 230-450 us against
// 700-1,100 us on the bench machine's ext4). It starts with
// acceptLogChunk bytes, grows by as many when full, and is zeroed again
// from the start once acceptLogResetAt bytes of it are folded and
// durable.
const (
	acceptLogChunk   = 1 << 20
	acceptLogResetAt = 256 << 10
)

// maxUnsynced is how many accepted posts may wait for the fsync of their
// record after PostAccepted returned: a power cut re-posts at most these
// and the posts in flight. It is the daemon's default number of posting
// workers, so the bound is twice what a kill -9 can re-post.
const maxUnsynced = 4

// foldDelay is how long the folder lets acceptances gather before it
// folds those no other write transaction took.
const foldDelay = 20 * time.Millisecond

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// acceptLog is the open accept log of a DB (nil when it has none).
type acceptLog struct {
	path string
	f    *os.File

	mu       sync.Mutex
	pending  map[int64]int     // ledger id -> posts accepted, not yet taken by a fold
	folding  map[int64]int     // taken by a fold that has not committed yet
	contacts map[string]uint64 // contact (normContact) -> number of its last record, while not on disk
	written  uint64            // records appended since open
	off      int64             // where the next record goes
	size     int64             // the file's size: zeros from off on
	broken   error             // a failed append: every later acceptance is a commit

	syncMu sync.Mutex    // one fsync of the log at a time
	synced atomic.Uint64 // records on disk: appended before the last fsync began (set under syncMu)

	wake     chan struct{} // pokes the folder
	syncWake chan struct{} // pokes the syncer
	stop     chan struct{}
	done     chan struct{} // closed when the folder and the syncer have stopped
}

// encodeAccept is a log record for row id with next posts accepted.
func encodeAccept(id int64, next int) [acceptRecordSize]byte {
	var rec [acceptRecordSize]byte
	binary.LittleEndian.PutUint64(rec[0:], uint64(id))
	binary.LittleEndian.PutUint32(rec[8:], uint32(next))
	binary.LittleEndian.PutUint32(rec[12:], crc32.Checksum(rec[:12], castagnoli))
	return rec
}

// decodeAccepts parses a log: the highest count of accepted posts per
// ledger id. It stops at the first record that is short, fails its
// checksum (the tail of a write a power cut tore; appending stops at the
// first failed write) or is zeros (the unwritten rest of the file).
func decodeAccepts(b []byte) map[int64]int {
	acc := map[int64]int{}
	for len(b) >= acceptRecordSize {
		rec := b[:acceptRecordSize]
		b = b[acceptRecordSize:]
		if crc32.Checksum(rec[:12], castagnoli) != binary.LittleEndian.Uint32(rec[12:]) {
			break
		}
		id := int64(binary.LittleEndian.Uint64(rec[0:]))
		next := int(binary.LittleEndian.Uint32(rec[8:]))
		if id <= 0 {
			break // no ledger row has it
		}
		if next > acc[id] {
			acc[id] = next
		}
	}
	return acc
}

// openAcceptLog opens (creating it when create is set) the accept log of
// the database at dbPath and takes its flock. It returns nil, nil when the
// log does not exist and create is not set, or when another process holds
// it. The caller replays what it holds (startAcceptLog).
func openAcceptLog(dbPath string, create bool) (*acceptLog, error) {
	path := dbPath + "-accepted"
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrNotExist) && !create {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: accept log %q: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil // another process appends to it
		}
		return nil, fmt.Errorf("store: accept log %q: lock: %w", path, err)
	}
	return &acceptLog{path: path, f: f, pending: map[int64]int{}, folding: map[int64]int{}, contacts: map[string]uint64{}}, nil
}

// read returns the acceptances the log holds.
func (l *acceptLog) read() (map[int64]int, error) {
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("store: accept log %q: %w", l.path, err)
	}
	b, err := io.ReadAll(l.f)
	if err != nil {
		return nil, fmt.Errorf("store: accept log %q: %w", l.path, err)
	}
	return decodeAccepts(b), nil
}

// truncate empties the log file; the caller has made everything in it
// durable in the ledger and is alone with it.
func (l *acceptLog) truncate() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("store: accept log %q: %w", l.path, err)
	}
	l.off, l.size = 0, 0
	return nil
}

// zero writes zeros over [from, to) of the file. It holds l.mu or is
// alone.
func (l *acceptLog) zero(from, to int64) error {
	zeros := make([]byte, min(to-from, acceptLogChunk))
	for off := from; off < to; off += int64(len(zeros)) {
		if _, err := l.f.WriteAt(zeros[:min(int64(len(zeros)), to-off)], off); err != nil {
			return fmt.Errorf("store: accept log %q: %w", l.path, err)
		}
	}
	if to > l.size {
		l.size = to
	}
	return nil
}

// reset starts the log over: the records it holds are folded and
// durable. Zeros end a replay, and a record that a power cut keeps from
// before the reset is one the ledger has already. It holds l.mu.
func (l *acceptLog) reset() error {
	if err := l.zero(0, l.off); err != nil {
		return err
	}
	l.off = 0
	return nil
}

// add appends the acceptance of post next-1 of row id, a post to contact,
// and returns the record's number, for syncTo. On error nothing more is
// appended and the caller records the acceptance as a commit.
func (l *acceptLog) add(id int64, next int, contact string) (uint64, error) {
	rec := encodeAccept(id, next)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken != nil {
		return 0, l.broken
	}
	var err error
	if l.off+acceptRecordSize > l.size {
		err = l.zero(l.size, l.size+acceptLogChunk)
	}
	if err == nil {
		_, err = l.f.WriteAt(rec[:], l.off)
	}
	if err != nil {
		// A short write would hide every later record from a replay:
		// stop appending.
		l.broken = fmt.Errorf("store: accept log %q: %w", l.path, err)
		return 0, l.broken
	}
	l.written++
	l.off += acceptRecordSize
	if next > l.pending[id] {
		l.pending[id] = next
	}
	l.contacts[normContact(contact)] = l.written
	for _, c := range []chan struct{}{l.wake, l.syncWake} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return l.written, nil
}

// take moves the pending acceptances to the running fold.
func (l *acceptLog) take() map[int64]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return nil
	}
	taken := l.pending
	l.pending = map[int64]int{}
	for id, n := range taken {
		if n > l.folding[id] {
			l.folding[id] = n
		}
	}
	return taken
}

// settle ends a fold of taken: committed, its entries leave the overlay
// (the ledger has them); otherwise they are pending again.
func (l *acceptLog) settle(taken map[int64]int, committed bool) {
	if len(taken) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range taken {
		if l.folding[id] == n {
			delete(l.folding, id)
		}
		if !committed && n > l.pending[id] {
			l.pending[id] = n
		}
	}
	if !committed {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// overlay returns the acceptances not yet in the ledger, or nil.
func (l *acceptLog) overlay() map[int64]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 && len(l.folding) == 0 {
		return nil
	}
	m := make(map[int64]int, len(l.pending)+len(l.folding))
	for id, n := range l.folding {
		m[id] = n
	}
	for id, n := range l.pending {
		if n > m[id] {
			m[id] = n
		}
	}
	return m
}

// follows returns the number of the last record of contact that is not
// yet on disk, or 0: a post to the contact must not leave before it is
// (whether or not a fold has taken it since, as a fold's commit need not
// be on disk either).
func (l *acceptLog) follows(contact string) uint64 {
	key := normContact(contact)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.contacts[key]
}

// unfolded reports whether acceptances wait for a fold.
func (l *acceptLog) unfolded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending) > 0
}

// syncTo returns once record n is on disk: concurrent callers share one
// fsync, as Barrier's callers do.
func (l *acceptLog) syncTo(n uint64) error {
	if l.synced.Load() >= n {
		return nil
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced.Load() >= n {
		return nil // an fsync that began after record n was written has finished
	}
	l.mu.Lock()
	m := l.written
	l.mu.Unlock()
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("store: accept log %q: %w", l.path, err)
	}
	l.synced.Store(m)
	l.mu.Lock()
	for c, n := range l.contacts {
		if n <= m {
			delete(l.contacts, c)
		}
	}
	l.mu.Unlock()
	return nil
}

// syncAll returns once every record written before the call is on disk.
func (l *acceptLog) syncAll() error {
	l.mu.Lock()
	n := l.written
	l.mu.Unlock()
	return l.syncTo(n)
}

// unsynced returns how many records wait for an fsync.
func (l *acceptLog) unsynced() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written - l.synced.Load()
}

// runSyncer fsyncs the log whenever records wait for it, so that
// PostAccepted need not: one fsync covers every record written before it
// began.
func (l *acceptLog) runSyncer(done *sync.WaitGroup) {
	defer done.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.syncWake:
		}
		// A failure is PostAccepted's and PostBarrier's to report: they
		// call syncTo themselves before anything depends on the record.
		_ = l.syncAll()
	}
}

// foldAccepted writes acceptances into the ledger rows inside tx: each
// row's posts_done becomes the accepted count, its state posting, or
// posted once all its posts are accepted, and the acceptance of its first
// post counts an attempt (as PostAccepted does). Rows that already have
// them, or that left fetched and posting meanwhile (an admin dropped the
// row), are left as they are.
func (db *DB) foldAccepted(ctx context.Context, tx *sql.Tx, acc map[int64]int) error {
	if len(acc) == 0 {
		return nil
	}
	// One statement for all of them: [[id, next], ...].
	b := make([]byte, 0, 2+len(acc)*16)
	b = append(b, '[')
	for id, next := range acc {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, id, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(next), 10)
		b = append(b, ']')
	}
	b = append(b, ']')
	_, err := db.txExec(ctx, tx, qFoldAccepted, db.nowMS(), string(b))
	if err != nil {
		return fmt.Errorf("store: fold the accepted posts of %d rows: %w", len(acc), err)
	}
	return nil
}

// qFoldAccepted is foldAccepted's statement (SQLite only: the accept log
// is): its second argument is the JSON array of [id, next] pairs.
const qFoldAccepted = `UPDATE inbound SET
	posts_done = CASE WHEN a.next < posts_total THEN a.next ELSE posts_total END,
	state = CASE WHEN a.next < posts_total THEN 'posting' ELSE 'posted' END,
	attempts = attempts + CASE WHEN posts_done = 0 THEN 1 ELSE 0 END,
	updated_at = ?
	FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS next FROM json_each(?)) AS a
	WHERE inbound.id = a.id AND inbound.posts_done < a.next AND inbound.state IN ('fetched', 'posting')`

// foldNow folds the pending acceptances in a write transaction of their
// own, if there are any.
func (db *DB) foldNow(ctx context.Context) error {
	if db.accepts == nil || !db.accepts.unfolded() {
		return nil
	}
	return db.lazyTx(ctx, func(*sql.Tx) error { return nil })
}

// runFolder folds acceptances that no other write transaction took, and
// empties the log once it is large and all of it is durable in the ledger.
func (db *DB) runFolder(done *sync.WaitGroup) {
	l := db.accepts
	defer done.Done()
	ctx := context.Background()
	for {
		select {
		case <-l.stop:
			return
		case <-l.wake:
		}
		// Let acceptances gather, and other write transactions fold
		// them meanwhile: a fold per wake would be a commit per post
		// again.
		t := time.NewTimer(foldDelay)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
		}
		// A failure leaves them pending: the next write transaction, or
		// the next wake, tries again.
		_ = db.foldNow(ctx)
		l.mu.Lock()
		big := l.off >= acceptLogResetAt && len(l.pending) == 0 && len(l.folding) == 0
		l.mu.Unlock()
		if big {
			_ = db.emptyAcceptLog(ctx)
		}
	}
}

// emptyAcceptLog starts the log over when everything it holds was folded
// before a barrier that then passed, and nothing was appended since.
func (db *DB) emptyAcceptLog(ctx context.Context) error {
	l := db.accepts
	l.mu.Lock()
	idle := len(l.pending) == 0 && len(l.folding) == 0 && l.broken == nil
	n := l.written
	l.mu.Unlock()
	if !idle {
		return nil
	}
	// Every fold of what is in the log has committed; the barrier makes
	// those commits durable.
	if err := db.Barrier(ctx); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written != n {
		return nil
	}
	return l.reset()
}

// startAcceptLog opens the accept log of an SQLite DB: it replays and
// empties what a process that died left in it, then keeps it open for
// appending when keep is set. Without keep it only replays an existing
// log, and only when no other process holds it.
func (db *DB) startAcceptLog(ctx context.Context, keep, manual bool) error {
	l, err := openAcceptLog(db.path, keep)
	if l == nil || err != nil {
		return err
	}
	acc, err := l.read()
	if err == nil && len(acc) > 0 {
		err = db.lazyTx(ctx, func(tx *sql.Tx) error { return db.foldAccepted(ctx, tx, acc) })
		if err == nil {
			err = db.Barrier(ctx)
		}
	}
	if err == nil {
		err = l.truncate()
	}
	if err == nil && keep {
		err = l.zero(0, acceptLogChunk)
	}
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil || !keep {
		l.f.Close()
		return err
	}
	l.wake = make(chan struct{}, 1)
	l.syncWake = make(chan struct{}, 1)
	l.stop = make(chan struct{})
	l.done = make(chan struct{})
	db.accepts = l
	if manual {
		close(l.done)
		return nil
	}
	db.walWake = make(chan struct{}, 1)
	var running sync.WaitGroup
	running.Add(3)
	go db.runFolder(&running)
	go l.runSyncer(&running)
	go db.runWALSyncer(&running, l.stop)
	go func() {
		running.Wait()
		close(l.done)
	}()
	return nil
}

// closeAcceptLog stops the folder, folds what is left, makes it durable
// and empties the log.
func (db *DB) closeAcceptLog(ctx context.Context) error {
	l := db.accepts
	if l == nil {
		return nil
	}
	close(l.stop)
	<-l.done // closed at once without a folder and a syncer (Options.foldManually)
	err := l.syncAll()
	if err == nil {
		err = db.foldNow(ctx)
	}
	if err == nil {
		err = db.emptyAcceptLog(ctx)
	}
	db.accepts = nil
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
