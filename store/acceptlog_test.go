package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestDecodeAccepts(t *testing.T) {
	rec := func(id int64, next int) []byte { r := encodeAccept(id, next); return r[:] }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	bad := rec(3, 1)
	bad[12] ^= 0xff
	for _, c := range []struct {
		name string
		log  []byte
		want map[int64]int
	}{
		{"empty", nil, map[int64]int{}},
		{"one", rec(7, 1), map[int64]int{7: 1}},
		{"the highest count per row", cat(rec(7, 1), rec(9, 1), rec(7, 2)), map[int64]int{7: 2, 9: 1}},
		{"a torn tail", cat(rec(7, 1), rec(9, 1)[:10]), map[int64]int{7: 1}},
		{"stops at a bad checksum", cat(rec(7, 1), bad, rec(9, 1)), map[int64]int{7: 1}},
		{"stops at zeros", cat(rec(7, 1), make([]byte, 32), rec(9, 1)), map[int64]int{7: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := decodeAccepts(c.log); !reflect.DeepEqual(got, c.want) {
				t.Errorf("decodeAccepts = %v, want %v", got, c.want)
			}
		})
	}
}

func FuzzDecodeAccepts(f *testing.F) {
	r := encodeAccept(7, 2)
	f.Add(r[:])
	f.Add(append(r[:], r[:5]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		acc := decodeAccepts(b)
		// Re-encoding what was decoded decodes to the same.
		var again []byte
		for id, n := range acc {
			if n < 0 {
				t.Fatalf("negative count %d for #%d", n, id)
			}
			r := encodeAccept(id, n)
			again = append(again, r[:]...)
		}
		if got := decodeAccepts(again); !reflect.DeepEqual(got, acc) {
			t.Fatalf("round trip: %v, want %v", got, acc)
		}
	})
}

// openAcceptTest opens an SQLite store with the accept log and no folder
// goroutine, so that acceptances stay in the log until a write folds them.
func openAcceptTest(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, Options{AcceptLog: true, foldManually: true})
	if err != nil {
		t.Fatal(err)
	}
	if db.accepts == nil {
		t.Fatal("no accept log")
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestAcceptLogOverlay checks that the poster sees an acceptance before it
// is folded into the ledger: DuePosts hands out the row's next post, or
// the contact's next row, never the accepted post again; and that the
// next write transaction folds it.
func TestAcceptLogOverlay(t *testing.T) {
	ctx := context.Background()
	db := openAcceptTest(t, filepath.Join(t.TempDir(), "mailgate.db"))
	a := mustRecord(t, db, newInbound(1, "ann@example.org", 2))
	b := mustRecord(t, db, newInbound(2, "ann@example.org", 1))
	c := mustRecord(t, db, newInbound(3, "bob@example.org", 1))
	due := func() map[int64]int {
		t.Helper()
		list, err := db.DuePosts(ctx, "c", nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		m := map[int64]int{}
		for _, d := range list {
			m[d.LedgerID] = d.Seq
		}
		return m
	}
	row := func(id int64) *Inbound {
		t.Helper()
		in, err := db.Inbound(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	accept := func(id int64, seq, total int, wantFinished bool) {
		t.Helper()
		fin, err := db.PostAccepted(ctx, DuePost{LedgerID: id, Seq: seq, Total: total})
		if err != nil || fin != wantFinished {
			t.Fatalf("PostAccepted(#%d, %d) = %v, %v; want %v", id, seq, fin, err, wantFinished)
		}
	}

	if got, want := due(), map[int64]int{a.ID: 0, c.ID: 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("due %v, want %v", got, want)
	}
	accept(a.ID, 0, 2, false)
	if got, want := due(), map[int64]int{a.ID: 1, c.ID: 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after post 0 of #%d: due %v, want %v", a.ID, got, want)
	}
	if in := row(a.ID); in.PostsDone != 0 || in.State != StateFetched {
		t.Fatalf("folded without a write: %s, %d done", in.State, in.PostsDone)
	}
	accept(a.ID, 1, 2, true)
	if got, want := due(), map[int64]int{b.ID: 0, c.ID: 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after #%d's last post: due %v, want %v (ann's next row)", a.ID, got, want)
	}
	// Any write folds first: here a failure of b's post, which must see
	// a's acceptances before it.
	if err := db.PostFailed(ctx, b.ID, 0, "HTTP 503"); err != nil {
		t.Fatal(err)
	}
	if in := row(a.ID); in.State != StatePosted || in.PostsDone != 2 || in.Attempts != 1 {
		t.Fatalf("after the fold: %s, %d done, %d attempts; want posted, 2, 1", in.State, in.PostsDone, in.Attempts)
	}
	if db.accepts.overlay() != nil {
		t.Fatalf("overlay %v after the fold", db.accepts.overlay())
	}
	// PendingActions folds too, so that the action of a posted email is
	// due at once.
	accept(c.ID, 0, 1, true)
	acts, err := db.PendingActions(ctx, "c", "INBOX", 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, p := range acts {
		ids = append(ids, p.ID)
	}
	if want := []int64{a.ID, c.ID}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("pending actions %v, want %v", ids, want)
	}
	// A row that left fetched and posting meanwhile is left alone.
	accept(b.ID, 0, 1, true)
	if _, err := db.write.ExecContext(ctx, `UPDATE inbound SET state = 'skipped' WHERE id = ?`, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.foldNow(ctx); err != nil {
		t.Fatal(err)
	}
	if in := row(b.ID); in.State != StateSkipped || in.PostsDone != 0 {
		t.Fatalf("dropped row: %s, %d done", in.State, in.PostsDone)
	}
	// Several rows fold in one write, each to its own count.
	d := mustRecord(t, db, newInbound(4, "dan@example.org", 2))
	e := mustRecord(t, db, newInbound(5, "eve@example.org", 1))
	accept(d.ID, 0, 2, false)
	accept(e.ID, 0, 1, true)
	if err := db.foldNow(ctx); err != nil {
		t.Fatal(err)
	}
	if in := row(d.ID); in.State != StatePosting || in.PostsDone != 1 || in.Attempts != 1 {
		t.Fatalf("#%d after the fold: %s, %d done, %d attempts; want posting, 1, 1", d.ID, in.State, in.PostsDone, in.Attempts)
	}
	if in := row(e.ID); in.State != StatePosted || in.PostsDone != 1 || in.Attempts != 1 {
		t.Fatalf("#%d after the fold: %s, %d done, %d attempts; want posted, 1, 1", e.ID, in.State, in.PostsDone, in.Attempts)
	}
	// The second post of d counts no second attempt.
	accept(d.ID, 1, 2, true)
	if err := db.foldNow(ctx); err != nil {
		t.Fatal(err)
	}
	if in := row(d.ID); in.State != StatePosted || in.PostsDone != 2 || in.Attempts != 1 {
		t.Fatalf("#%d after its last post: %s, %d done, %d attempts; want posted, 2, 1", d.ID, in.State, in.PostsDone, in.Attempts)
	}
}

// TestAcceptLogReplay checks that Open folds what a log holds (as a
// process that died leaves it), then empties it, with and without
// AcceptLog.
func TestAcceptLogReplay(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(map[bool]string{true: "daemon", false: "cli"}[keep], func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "mailgate.db")
			db, err := Open(ctx, path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			a := mustRecord(t, db, newInbound(1, "ann@example.org", 2))
			b := mustRecord(t, db, newInbound(2, "bob@example.org", 2))
			db.Close()
			r1, r2, r3 := encodeAccept(a.ID, 1), encodeAccept(a.ID, 2), encodeAccept(b.ID, 1)
			log := bytes.Join([][]byte{r1[:], r2[:], r3[:], r3[:7]}, nil)
			if err := os.WriteFile(path+"-accepted", log, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err = Open(ctx, path, Options{AcceptLog: keep})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, w := range []struct {
				id    int64
				state InboundState
				done  int
			}{{a.ID, StatePosted, 2}, {b.ID, StatePosting, 1}} {
				in, err := db.Inbound(ctx, w.id)
				if err != nil || in.State != w.state || in.PostsDone != w.done || in.Attempts != 1 {
					t.Errorf("#%d after the replay: %+v, %v; want %s with %d done", w.id, in, err, w.state, w.done)
				}
			}
			if acc := logRecords(t, path); len(acc) != 0 {
				t.Errorf("log after the replay: %v; want empty", acc)
			}
			if (db.accepts != nil) != keep {
				t.Errorf("log kept open: %v, want %v", db.accepts != nil, keep)
			}
		})
	}
}

// TestAcceptLogOneWriter checks that a second store on the same file (a
// CLI command beside the daemon) neither replays nor appends to the log
// the first holds, and records its acceptances as commits; and that Close
// folds and empties the log.
func TestAcceptLogOneWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mailgate.db")
	daemon := openAcceptTest(t, path)
	a := mustRecord(t, daemon, newInbound(1, "ann@example.org", 1))
	b := mustRecord(t, daemon, newInbound(2, "bob@example.org", 1))
	if _, err := daemon.PostAccepted(ctx, DuePost{LedgerID: a.ID, Seq: 0, Total: 1}); err != nil {
		t.Fatal(err)
	}
	if l := daemon.accepts; l.written != 1 {
		t.Errorf("PostAccepted wrote %d records, want 1", l.written)
	}
	cli, err := Open(ctx, path, Options{AcceptLog: true})
	if err != nil {
		t.Fatal(err)
	}
	if cli.accepts != nil {
		t.Fatal("a second store took the log")
	}
	if in, err := cli.Inbound(ctx, a.ID); err != nil || in.State != StateFetched {
		t.Fatalf("the second store replayed the first's log: %+v, %v", in, err)
	}
	if fin, err := cli.PostAccepted(ctx, DuePost{LedgerID: b.ID, Seq: 0, Total: 1}); err != nil || !fin {
		t.Fatalf("PostAccepted through the second store = %v, %v", fin, err)
	}
	if in, err := cli.Inbound(ctx, b.ID); err != nil || in.State != StatePosted {
		t.Fatalf("the second store's acceptance is not a commit: %+v, %v", in, err)
	}
	cli.Close()
	if err := daemon.Close(); err != nil {
		t.Fatal(err)
	}
	if acc := logRecords(t, path); len(acc) != 0 {
		t.Errorf("log after Close: %v; want empty", acc)
	}
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if in, err := db.Inbound(ctx, a.ID); err != nil || in.State != StatePosted {
		t.Fatalf("after Close: %+v, %v; want posted", in, err)
	}
}

// TestAcceptLogEmptied checks that the log is emptied only when all it
// holds is folded.
func TestAcceptLogEmptied(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mailgate.db")
	db := openAcceptTest(t, path)
	a := mustRecord(t, db, newInbound(1, "ann@example.org", 1))
	if _, err := db.PostAccepted(ctx, DuePost{LedgerID: a.ID, Seq: 0, Total: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.emptyAcceptLog(ctx); err != nil || len(logRecords(t, path)) != 1 {
		t.Fatalf("emptied before the fold: %v, %v", err, logRecords(t, path))
	}
	if err := db.foldNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.emptyAcceptLog(ctx); err != nil || len(logRecords(t, path)) != 0 {
		t.Fatalf("not emptied after the fold: %v, %v", err, logRecords(t, path))
	}
	// The file is written over, not appended to: its size stays.
	b := mustRecord(t, db, newInbound(2, "bob@example.org", 1))
	if _, err := db.PostAccepted(ctx, DuePost{LedgerID: b.ID, Seq: 0, Total: 1}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-accepted"); err != nil || fi.Size() != acceptLogChunk {
		t.Errorf("log file: %v, %v; want %d bytes", fi, err, acceptLogChunk)
	}
	if got, want := logRecords(t, path), map[int64]int{b.ID: 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("log after the reset: %v, want %v", got, want)
	}
}

// TestAcceptLogGrows checks that a log filled to its size grows, and that
// a replay reads all of it.
func TestAcceptLogGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mailgate.db")
	db := openAcceptTest(t, path)
	n := acceptLogChunk/acceptRecordSize + 3
	for i := range n {
		if _, err := db.accepts.add(int64(i+1), 1, "ann@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(path + "-accepted"); err != nil || fi.Size() != 2*acceptLogChunk {
		t.Errorf("log file: %v, %v; want %d bytes", fi, err, 2*acceptLogChunk)
	}
	if acc := logRecords(t, path); len(acc) != n || acc[int64(n)] != 1 {
		t.Errorf("replay reads %d records, want %d", len(acc), n)
	}
}

// logRecords decodes the accept log of the database at path.
func logRecords(t *testing.T, path string) map[int64]int {
	t.Helper()
	b, err := os.ReadFile(path + "-accepted")
	if err != nil {
		t.Fatal(err)
	}
	return decodeAccepts(b)
}

// TestPostBarrier checks that, with the accept log, the posts of one
// DuePosts call share one barrier, and that without it every post passes
// one (its previous acceptances are lazy commits then).
func TestPostBarrier(t *testing.T) {
	ctx := context.Background()
	for _, log := range []bool{true, false} {
		t.Run(map[bool]string{true: "accept log", false: "commits"}[log], func(t *testing.T) {
			db, err := Open(ctx, filepath.Join(t.TempDir(), "mailgate.db"), Options{AcceptLog: log, foldManually: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for i := range 3 {
				mustRecord(t, db, newInbound(uint32(i+1), fmt.Sprintf("c%d@example.org", i), 1))
			}
			due, err := db.DuePosts(ctx, "c", nil, 10)
			if err != nil || len(due) != 3 {
				t.Fatalf("DuePosts = %d posts, %v", len(due), err)
			}
			before := db.WALSyncs()
			for _, p := range due {
				if err := db.PostBarrier(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			want := uint64(3)
			if log {
				want = 1
			}
			if got := db.WALSyncs() - before; got != want {
				t.Errorf("%d fsyncs for 3 posts read together, want %d", got, want)
			}
			// A post read before the last fsync passed needs none; one
			// read after it does.
			before = db.WALSyncs()
			if err := db.PostBarrier(ctx, due[0]); err != nil || (log && db.WALSyncs() != before) {
				t.Errorf("PostBarrier of a post read before a barrier: %v, %d fsyncs", err, db.WALSyncs()-before)
			}
			if err := db.PostBarrier(ctx, DuePost{LedgerID: due[0].LedgerID}); err != nil || db.WALSyncs() == before {
				t.Errorf("PostBarrier of a post without a ticket: %v, no fsync", err)
			}
			// A row this process recorded is on disk once a barrier began
			// after its commit, whenever DuePosts reads it (the WAL
			// syncer starts one after each commit of new rows).
			mustRecord(t, db, newInbound(9, "dora@example.org", 1))
			if err := db.Barrier(ctx); err != nil {
				t.Fatal(err)
			}
			due, err = db.DuePosts(ctx, "c", nil, 10)
			if err != nil || len(due) != 4 {
				t.Fatalf("DuePosts = %d posts, %v", len(due), err)
			}
			before = db.WALSyncs()
			if err := db.PostBarrier(ctx, due[3]); err != nil {
				t.Fatal(err)
			}
			want = 1
			if log {
				want = 0
			}
			if got := db.WALSyncs() - before; got != want {
				t.Errorf("%d fsyncs for a row recorded before a barrier, want %d", got, want)
			}
		})
	}
}

// TestAcceptLogUnsyncedBound checks that PostAccepted returns without an
// fsync until maxUnsynced records wait for one, and then waits for it.
func TestAcceptLogUnsyncedBound(t *testing.T) {
	ctx := context.Background()
	db := openAcceptTest(t, filepath.Join(t.TempDir(), "mailgate.db")) // no syncer
	l := db.accepts
	for i := range maxUnsynced + 1 {
		in := mustRecord(t, db, newInbound(uint32(i+1), fmt.Sprintf("c%d@example.org", i), 1))
		if _, err := db.PostAccepted(ctx, DuePost{LedgerID: in.ID, Seq: 0, Total: 1}); err != nil {
			t.Fatal(err)
		}
		want := uint64(0)
		if i == maxUnsynced {
			want = uint64(maxUnsynced + 1) // this one waited for all
		}
		if got := l.synced.Load(); got != want {
			t.Errorf("after %d acceptances %d records synced, want %d", i+1, got, want)
		}
	}
}

// TestAcceptLogSyncer checks that the daemon's syncer puts an accepted
// record on disk without anyone waiting for it.
func TestAcceptLogSyncer(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "mailgate.db"), Options{AcceptLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	in := mustRecord(t, db, newInbound(1, "ann@example.org", 1))
	if _, err := db.PostAccepted(ctx, DuePost{LedgerID: in.ID, Seq: 0, Total: 1}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.accepts.synced.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the accepted record is not on disk after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPostBarrierFollows checks that a post to a contact whose last
// acceptance is not yet on disk (the row's next post, or the contact's next
// row) has that record synced by PostBarrier, even when a fold took the
// acceptance meanwhile (its commit need not be on disk either), and that a
// post to another contact leaves the log alone.
func TestPostBarrierFollows(t *testing.T) {
	ctx := context.Background()
	db := openAcceptTest(t, filepath.Join(t.TempDir(), "mailgate.db")) // no syncer
	l := db.accepts
	two := mustRecord(t, db, newInbound(1, "ann@example.org", 2))   // a row with 2 posts
	first := mustRecord(t, db, newInbound(2, "bob@example.org", 1)) // bob's first email
	mustRecord(t, db, newInbound(3, "bob@example.org", 1))          // and his second
	for _, p := range []DuePost{
		{LedgerID: two.ID, Contact: "ann@example.org", Seq: 0, Total: 2},
		{LedgerID: first.ID, Contact: "bob@example.org", Seq: 0, Total: 1},
	} {
		if _, err := db.PostAccepted(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Recording carl's email folds both acceptances into the ledger.
	other := mustRecord(t, db, newInbound(4, "carl@example.org", 1))
	if acc := l.overlay(); acc != nil {
		t.Fatalf("overlay %v after a write transaction, want the acceptances folded", acc)
	}
	due, err := db.DuePosts(ctx, "c", nil, 10)
	if err != nil || len(due) != 3 {
		t.Fatalf("DuePosts = %+v, %v; want 3 posts", due, err)
	}
	byContact := map[string]DuePost{}
	for _, p := range due {
		byContact[p.Contact] = p
	}
	if p := byContact["carl@example.org"]; p.LedgerID != other.ID || p.after != 0 {
		t.Fatalf("carl's post = %+v, want row %d following nothing", p, other.ID)
	}
	if err := db.PostBarrier(ctx, byContact["carl@example.org"]); err != nil {
		t.Fatal(err)
	}
	if got := l.synced.Load(); got != 0 {
		t.Errorf("PostBarrier of a post following nothing synced the log (%d records)", got)
	}
	if p := byContact["bob@example.org"]; l.follows("BOB@example.org") != p.after {
		t.Errorf("the address in upper case follows record %d, want %d", l.follows("BOB@example.org"), p.after)
	}
	for _, c := range []string{"ann@example.org", "bob@example.org"} {
		p := byContact[c]
		if p.after == 0 {
			t.Fatalf("%s's post %+v follows no record", c, p)
		}

		if err := db.PostBarrier(ctx, p); err != nil {
			t.Fatal(err)
		}
		if got := l.synced.Load(); got < p.after {
			t.Errorf("after PostBarrier of %s's post, %d records synced, want >= %d", c, got, p.after)
		}
	}
	// Once on disk, a record holds nobody back.
	if n := l.follows("bob@example.org"); n != 0 {
		t.Errorf("bob follows record %d after it was synced", n)
	}
}
