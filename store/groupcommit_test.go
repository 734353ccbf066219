package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit: transactions queued behind a running one commit
// together, each with its own outcome: a failing function is rolled back
// alone, a cancelled caller's function is not run, the others commit.
func TestGroupCommit(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	if _, err := db.write.Exec(`CREATE TABLE scratch (x INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	insert := func(x int) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO scratch (x) VALUES (?)`, x)
			return err
		}
	}
	// The first transaction holds the lead until ten more are queued.
	release, leading := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.lazyTx(ctx, func(tx *sql.Tx) error {
			close(leading)
			<-release
			return insert(0)(tx)
		})
	}()
	<-leading
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	errBoom := errors.New("boom")
	var wg sync.WaitGroup
	results := make([]error, 11)
	for i := 1; i <= 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i {
			case 3:
				results[i] = db.lazyTx(ctx, func(tx *sql.Tx) error {
					if err := insert(i)(tx); err != nil {
						return err
					}
					return errBoom // after writing: the write must be undone
				})
			case 5:
				results[i] = db.lazyTx(cancelled, insert(i))
			case 7:
				results[i] = db.tx(ctx, insert(i)) // durable: passes a barrier
			default:
				results[i] = db.lazyTx(ctx, insert(i))
			}
		}()
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		db.commits.mu.Lock()
		n := len(db.commits.queue)
		db.commits.mu.Unlock()
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions queued, want 10", n)
		}
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		switch {
		case i == 3 && !errors.Is(results[i], errBoom):
			t.Errorf("failing transaction returned %v", results[i])
		case i == 5 && !errors.Is(results[i], context.Canceled):
			t.Errorf("cancelled transaction returned %v", results[i])
		case i != 3 && i != 5 && results[i] != nil:
			t.Errorf("transaction %d: %v", i, results[i])
		}
	}
	var got string
	if err := db.read.QueryRow(`SELECT group_concat(x, ',') FROM (SELECT x FROM scratch ORDER BY x)`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "0,1,2,4,6,7,8,9,10"; got != want {
		t.Errorf("committed %s, want %s", got, want)
	}
	// The group of ten ran without savepoints first and once more with
	// them, because transaction 3 failed; the first group did not fail.
	if n := db.groupRetries.Load(); n != 1 {
		t.Errorf("%d groups ran again with savepoints, want 1", n)
	}
}

// BenchmarkGroupCommit records ledger rows from several goroutines at
// once, as the handler and the posters do during a backlog.
func BenchmarkGroupCommit(b *testing.B) { forEachBackendB(b, benchmarkGroupCommit) }

func benchmarkGroupCommit(b *testing.B) {
	db, _ := openTest(b)
	defer func() { b.ReportMetric(float64(db.TxRetries())/float64(b.N), "retries/op") }()
	ctx := context.Background()
	body := []byte(`{"type":"message","text":"Hello"}`)
	var mu sync.Mutex
	uid := 0
	b.SetParallelism(4)
	b.ResetTimer() // opening a PostgreSQL database takes a while
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			uid++
			u := uid
			mu.Unlock()
			in := &Inbound{Channel: "c", Folder: "INBOX", UIDValidity: 1, UID: uint32(u),
				DedupeKey: fmt.Sprintf("<g%d@example.org>", u), Contact: fmt.Sprintf("u%d@example.org", u),
				Posts: [][]byte{body}, After: Action{Kind: "seen"}}
			if _, err := db.RecordInbound(ctx, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
