package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countFsyncs replaces db's fsync with one that counts the WAL syncs.
func countFsyncs(db *DB) *atomic.Int64 {
	var n atomic.Int64
	db.wal.mu.Lock()
	defer db.wal.mu.Unlock()
	db.wal.fsync = func(path string) error {
		if strings.HasSuffix(path, "-wal") {
			n.Add(1)
		}
		return fsyncPath(path)
	}
	return &n
}

// TestBarrierGroupCommit checks that callers queued behind a running fsync
// share the next one, and that nobody returns before an fsync that began
// after its call.
func TestBarrierGroupCommit(t *testing.T) {
	w := newWALSyncer(filepath.Join(t.TempDir(), "x.db"))
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	var calls atomic.Int64
	w.fsync = func(path string) error {
		if strings.HasSuffix(path, "-wal") {
			calls.Add(1)
			entered <- struct{}{}
			<-release
		}
		return nil
	}
	first := make(chan error, 1)
	go func() { first <- w.sync() }()
	<-entered // the first fsync is running

	const n = 10
	var wg sync.WaitGroup
	var returned atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.sync(); err != nil {
				t.Error(err)
			}
			returned.Add(1)
		}()
	}
	// Let the callers take their tickets and queue on the lock.
	for w.requests.Load() < n+1 {
		time.Sleep(time.Millisecond)
	}
	release <- struct{}{} // finish the first fsync
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Every later caller called after the first fsync began: none may
	// return on it.
	time.Sleep(20 * time.Millisecond)
	if got := returned.Load(); got != 0 {
		t.Fatalf("%d callers returned on an fsync that began before their call", got)
	}
	<-entered // the second fsync, for all of them
	release <- struct{}{}
	wg.Wait()
	if got := calls.Load(); got != 2 {
		t.Errorf("%d WAL fsyncs for 1+%d concurrent callers, want 2", got, n)
	}
	// A later call needs an fsync of its own.
	go func() { <-entered; release <- struct{}{} }()
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("%d WAL fsyncs after a further call, want 3", got)
	}
}

// TestBarrierPlacement checks which methods pass the barrier: the outbox
// and the other acknowledged writes do; the inbound ledger does not, and
// PendingActions does before it hands out actions.
func TestBarrierPlacement(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	n := countFsyncs(db)
	check := func(what string, want int64, fn func() error) {
		t.Helper()
		before := n.Load()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := n.Load() - before; got != want {
			t.Errorf("%s: %d WAL fsyncs, want %d", what, got, want)
		}
	}
	var id int64
	check("RecordInbound", 0, func() error {
		res, err := db.RecordInbound(ctx, newInbound(1, "a@example.org", 1))
		id = res.ID
		return err
	})
	check("PendingActions with nothing settled", 0, func() error {
		_, err := db.PendingActions(ctx, "c", "INBOX", 10)
		return err
	})
	check("MarkPosting", 0, func() error { return db.MarkPosting(ctx, id) })
	check("PostDone", 0, func() error { _, err := db.PostDone(ctx, id, 0); return err })
	check("PendingActions with an action", 1, func() error {
		acts, err := db.PendingActions(ctx, "c", "INBOX", 10)
		if err == nil && len(acts) != 1 {
			err = fmt.Errorf("%d actions, want 1", len(acts))
		}
		return err
	})
	check("ActionsDone", 0, func() error { return db.ActionsDone(ctx, []int64{id}) })
	check("Enqueue", 1, func() error {
		_, _, err := db.Enqueue(ctx, &OutboxItem{Channel: "c", Contact: "a@example.org", UserlikeID: "id:1", Text: "hi"})
		return err
	})
	// The SMTP bookkeeping of a burst: the outbound worker passes one
	// barrier before the burst and one after it.
	var queued int64
	check("Enqueue a reply", 1, func() error {
		var err error
		queued, _, err = db.Enqueue(ctx, &OutboxItem{Channel: "c", Contact: "b@example.org", UserlikeID: "id:2", Text: "hi"})
		return err
	})
	check("EnsureThread", 0, func() error {
		_, err := db.EnsureThread(ctx, "c", "b@example.org", "Your request")
		return err
	})
	check("MarkOutboxSending", 0, func() error {
		_, err := db.MarkOutboxSending(ctx, []int64{queued}, "m2@mailgate.test")
		return err
	})
	check("MarkOutboxSent", 0, func() error { return db.MarkOutboxSent(ctx, []int64{queued}, "m2@mailgate.test") })
	check("Barrier", 1, func() error { return db.Barrier(ctx) })
}

// TestRawChunks checks that raw messages of every size read back intact,
// split into chunks of at most rawChunk.
func TestRawChunks(t *testing.T) { forEachBackend(t, testRawChunks) }

func testRawChunks(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	for i, size := range []int{0, 1, rawChunk - 1, rawChunk, rawChunk + 1, 2*rawChunk + 12345} {
		raw := make([]byte, size)
		for k := range raw {
			raw[k] = byte(k*7 + i)
		}
		in := newInbound(uint32(i+1), "a@example.org", 1)
		in.Raw = raw
		res, err := db.RecordInbound(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.Inbound(ctx, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Raw == nil || !bytes.Equal(got.Raw, raw) {
			t.Errorf("size %d: read back %d bytes (nil %v)", size, len(got.Raw), got.Raw == nil)
		}
		var chunks, biggest int
		err = db.readQueryRowOnce(ctx, `SELECT count(*), coalesce(max(length(data)), 0) FROM inbound_raw_chunks WHERE ledger_id = ?`, res.ID).
			Scan(&chunks, &biggest)
		if err != nil {
			t.Fatal(err)
		}
		if want := max(1, (size+rawChunk-1)/rawChunk); chunks != want || biggest > rawChunk {
			t.Errorf("size %d: %d chunks (largest %d), want %d of at most %d", size, chunks, biggest, want, rawChunk)
		}
	}
}

// TestMigrationMovesRaw opens a database at schema version 4 that holds a
// raw message in the old inbound_raw table and checks that it survives
// the move to chunks.
func TestMigrationMovesRaw(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old, err := sql.Open("sqlite", dsn(path, time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:4] {
		if _, err := old.ExecContext(ctx, m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	raw := []byte("Subject: kept\r\n\r\nfrom before the chunks\r\n")
	for _, q := range []string{
		`PRAGMA user_version = 4`,
		`INSERT INTO inbound (id, channel, folder, uidvalidity, uid, state, created_at, updated_at)
			VALUES (7, 'c', 'INBOX', 1, 1, 'dead', 1, 1)`,
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := old.ExecContext(ctx, `INSERT INTO inbound_raw (ledger_id, raw) VALUES (7, ?)`, raw); err != nil {
		t.Fatal(err)
	}
	old.Close()

	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(ms) {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(ms))
	}
	in, err := db.Inbound(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in.Raw, raw) {
		t.Errorf("raw after migration = %q, want %q", in.Raw, raw)
	}
}

// TestStmtCache checks that a query first met inside a transaction runs
// unprepared (preparing there would wait for the connection the
// transaction holds) and is prepared before the next transaction.
func TestStmtCache(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	count := func(c *stmtCache) (prepared, noted int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.m), len(c.todo)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.RecordInbound(ctx, newInbound(1, "a@example.org", 1))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RecordInbound deadlocked on the statement cache")
	}
	if p, n := count(db.wstmts); p != 0 || n == 0 {
		t.Fatalf("after the first transaction: %d prepared, %d noted; want 0 and some", p, n)
	}
	if _, err := db.RecordInbound(ctx, newInbound(2, "b@example.org", 1)); err != nil {
		t.Fatal(err)
	}
	if p, n := count(db.wstmts); p == 0 || n != 0 {
		t.Errorf("after the second transaction: %d prepared, %d noted; want some and 0", p, n)
	}
	if _, err := db.DuePosts(ctx, "c", nil, 10); err != nil {
		t.Fatal(err)
	}
	due, err := db.DuePosts(ctx, "c", nil, 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("DuePosts with prepared statements = %d, %v", len(due), err)
	}
	if p, _ := count(db.rstmts); p == 0 {
		t.Error("read statements were never prepared")
	}
}

// TestEnqueueGroupCommit checks that concurrent Enqueue calls are batched:
// each gets its own answer (duplicates included), a caller that gave up
// does not stop the others, and the batch shares fsyncs.
func TestEnqueueGroupCommit(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	var fsyncs atomic.Int64
	db.wal.mu.Lock()
	db.wal.fsync = func(path string) error {
		if strings.HasSuffix(path, "-wal") {
			fsyncs.Add(1)
			time.Sleep(5 * time.Millisecond) // a disk's fsync
		}
		return nil
	}
	db.wal.mu.Unlock()

	const n = 60
	type answer struct {
		id  int64
		dup bool
		err error
	}
	answers := make([]answer, n)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var wg sync.WaitGroup
	start := make(chan struct{}) // all requests at once, however the goroutines are scheduled
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c := ctx
			if i == 7 {
				c = cancelled
			}
			// Every tenth request repeats the id of the one before it.
			uid := fmt.Sprintf("id:%d", i-btoi(i%10 == 9))
			id, dup, err := db.Enqueue(c, &OutboxItem{Channel: "c", Contact: fmt.Sprintf("u%d@example.org", i), UserlikeID: uid, Text: "hi"})
			answers[i] = answer{id, dup, err}
		}()
	}
	close(start)
	wg.Wait()
	ids := map[int64]int{}
	for i, a := range answers {
		switch {
		case i == 7:
			if a.err == nil {
				t.Errorf("request with a cancelled context: no error")
			}
		case a.err != nil:
			t.Errorf("request %d: %v", i, a.err)
		default:
			ids[a.id]++
		}
	}
	var rows int
	if err := db.readQueryRowOnce(ctx, `SELECT count(*) FROM outbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	// 60 requests, one cancelled, 6 repeating the id of another.
	if want := n - 1 - 6; rows != want || len(ids) != want {
		t.Errorf("%d rows and %d distinct ids, want %d", rows, len(ids), want)
	}
	for i := 9; i < n; i += 10 {
		a, b := answers[i-1], answers[i]
		if a.id != b.id || a.dup == b.dup {
			t.Errorf("requests %d and %d with one id: (%d, dup %v) and (%d, dup %v), want the same id, one duplicate", i-1, i, a.id, a.dup, b.id, b.dup)
		}
	}
	if got := fsyncs.Load(); got > n/2 {
		t.Errorf("%d fsyncs for %d concurrent requests: no group commit", got, n)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestEnqueueBatchFailureIsolated checks that a request that fails inside
// a batch fails alone.
func TestEnqueueBatchFailureIsolated(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	if _, err := db.writeExec(ctx, `CREATE TRIGGER boom BEFORE INSERT ON outbox
		WHEN NEW.text = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END`); err != nil {
		t.Fatal(err)
	}
	db.wal.mu.Lock()
	db.wal.fsync = func(string) error { time.Sleep(5 * time.Millisecond); return nil }
	db.wal.mu.Unlock()
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := "fine"
			if i == 5 {
				text = "boom"
			}
			_, _, errs[i] = db.Enqueue(ctx, &OutboxItem{Channel: "c", Contact: fmt.Sprintf("u%d@example.org", i), UserlikeID: fmt.Sprintf("id:%d", i), Text: text})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 5) {
			t.Errorf("request %d: error %v", i, err)
		}
	}
	var rows int
	if err := db.readQueryRowOnce(ctx, `SELECT count(*) FROM outbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n-1 {
		t.Errorf("%d rows, want %d", rows, n-1)
	}
}
