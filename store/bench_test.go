package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRecordInbound records a posted email's ledger row with and
// without its 8 KiB raw copy: since issue 17 only dead letters keep one.
func BenchmarkRecordInbound(b *testing.B) { forEachBackendB(b, benchmarkRecordInbound) }

func benchmarkRecordInbound(b *testing.B) {
	for _, tt := range []struct {
		name string
		raw  []byte
	}{{"raw=none", nil}, {"raw=8KiB", make([]byte, 8<<10)}} {
		b.Run(tt.name, func(b *testing.B) {
			db, _ := openTest(b)
			ctx := context.Background()
			body := []byte(`{"type":"message","text":"Hello, I have a question about my order."}`)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				in := &Inbound{Channel: "c", Folder: "INBOX", UIDValidity: 1, UID: uint32(i),
					DedupeKey: fmt.Sprintf("<b%d@example.org>", i), MessageID: fmt.Sprintf("<b%d@example.org>", i),
					Contact: fmt.Sprintf("u%d@example.org", i%50), Raw: tt.raw, Posts: [][]byte{body}, After: Action{Kind: "seen"}}
				if _, err := db.RecordInbound(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDuePosts(b *testing.B) { forEachBackendB(b, benchmarkDuePosts) }

func benchmarkDuePosts(b *testing.B) {
	db, _ := openTest(b)
	ctx := context.Background()
	// 1000 pending rows over 200 contacts, plus settled history.
	for i := range 2000 {
		in := newInbound(uint32(i+1), fmt.Sprintf("u%d@example.org", i%200), 2)
		res, err := db.RecordInbound(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		if i < 1000 {
			db.MarkPosting(ctx, res.ID)
			db.PostDone(ctx, res.ID, 0)
			db.PostDone(ctx, res.ID, 1)
		}
	}
	skip := []string{"u1@example.org", "u2@example.org", "u3@example.org"}
	b.ReportAllocs()
	for b.Loop() {
		due, err := db.DuePosts(ctx, "c", skip, 100)
		if err != nil {
			b.Fatal(err)
		}
		if len(due) != 100 {
			b.Fatalf("got %d due posts", len(due))
		}
	}
}

// BenchmarkDuePostsBacklog is the poster's call during a backlog: 10,000
// unfinished rows over 2,000 contacts, four contacts in flight, room for
// four more.
func BenchmarkDuePostsBacklog(b *testing.B) { forEachBackendB(b, benchmarkDuePostsBacklog) }

func benchmarkDuePostsBacklog(b *testing.B) {
	db, _ := openTest(b)
	ctx := context.Background()
	for i := range 10000 {
		if _, err := db.RecordInbound(ctx, newInbound(uint32(i+1), fmt.Sprintf("u%d@example.org", i%2000), 1)); err != nil {
			b.Fatal(err)
		}
	}
	skip := []string{"u0@example.org", "u1@example.org", "u2@example.org", "u3@example.org"}
	b.ReportAllocs()
	for b.Loop() {
		due, err := db.DuePosts(ctx, "c", skip, 4)
		if err != nil {
			b.Fatal(err)
		}
		if len(due) != 4 {
			b.Fatalf("got %d due posts", len(due))
		}
	}
}

// BenchmarkLedgerLifecycle is the ledger's work for one email of a
// backlog, as the daemon does it: record the row with its text and one
// post (and the cursor), read the due posts a batch at a time, mark the
// post accepted, read the pending IMAP action and mark it done.
func BenchmarkLedgerLifecycle(b *testing.B) { forEachBackendB(b, benchmarkLedgerLifecycle) }

func benchmarkLedgerLifecycle(b *testing.B) {
	db, _ := openTest(b)
	ctx := context.Background()
	body := []byte(`{"type":"message","text":"Hello, I have a question about my order."}`)
	text := strings.Repeat("A line of a customer's email, long enough to be typical.\n", 150) // about 8 KiB
	const batch = 32
	b.ReportAllocs()
	uid := 0
	for b.Loop() {
		var ids []int64
		for range batch {
			uid++
			in := &Inbound{Channel: "c", Folder: "INBOX", UIDValidity: 1, UID: uint32(uid),
				DedupeKey: fmt.Sprintf("<b%d@example.org>", uid), MessageID: fmt.Sprintf("<b%d@example.org>", uid),
				Contact: fmt.Sprintf("u%d@example.org", uid), Subject: "Question", FullText: text,
				Posts: [][]byte{body}, After: Action{Kind: "seen"}, ArrivedAt: time.Now()}
			res, err := db.RecordInbound(ctx, in)
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, res.ID)
		}
		due, err := db.DuePosts(ctx, "c", nil, batch)
		if err != nil || len(due) != batch {
			b.Fatalf("DuePosts: %d, %v", len(due), err)
		}
		for _, d := range due {
			if _, err := db.PostAccepted(ctx, d); err != nil {
				b.Fatal(err)
			}
		}
		acts, err := db.PendingActions(ctx, "c", "INBOX", batch)
		if err != nil || len(acts) != batch {
			b.Fatalf("PendingActions: %d, %v", len(acts), err)
		}
		if err := db.ActionsDone(ctx, ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*batch), "µs/email")
}

// BenchmarkEnqueue is the store's work behind the webhook's 200: 8
// concurrent operator replies at a time, to 100 contacts, each queued
// durably with its contact's coalescing.
func BenchmarkEnqueue(b *testing.B) { forEachBackendB(b, benchmarkEnqueue) }

func benchmarkEnqueue(b *testing.B) {
	db, clk := openTest(b)
	defer func() { b.ReportMetric(float64(db.TxRetries())/float64(b.N), "retries/op") }()
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			it := &OutboxItem{Channel: "c", Contact: fmt.Sprintf("u%d@example.org", i%100), UserlikeID: fmt.Sprint(i),
				Text: "Thanks, we have sent it again.", SendAfter: clk.Now().Add(5 * time.Second)}
			if _, _, err := db.Enqueue(ctx, it); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRecordInbounds records batches of 50 emails as the backlog
// drain does (bench/): senders from a pool of 2,000, each email with a
// Message-ID, a 2-20 KB text kept twice (the quote's full text and the
// queued post) and, on a sender's first email, a new thread. It reports
// the time per email.
func BenchmarkRecordInbounds(b *testing.B) { forEachBackendB(b, benchmarkRecordInbounds) }

func benchmarkRecordInbounds(b *testing.B) {
	const batch = 50
	db, _ := openTest(b)
	ctx := context.Background()
	line := "Hello, I have a question about my order and the delivery date.\n"
	verdict := []byte(`{"result":"pass","reason":"dmarc=pass (p=reject) header.from=example.org","from":"u1@example.org","dkim":[{"domain":"example.org","result":"pass"}]}`)
	seen := make(map[int]bool)
	uid := 0
	b.ReportAllocs()
	for b.Loop() {
		ins := make([]*Inbound, batch)
		for j := range ins {
			uid++
			sender := (uid * 7919) % 2000
			text := strings.Repeat(line, 32+(uid*37)%280) // 2-20 KB
			in := &Inbound{Channel: "c", Folder: "INBOX", UIDValidity: 1, UID: uint32(uid),
				DedupeKey: fmt.Sprintf("mid:<b%d@example.org>:0123456789abcdef", uid), MessageID: fmt.Sprintf("<b%d@example.org>", uid),
				Contact: fmt.Sprintf("u%d@example.org", sender), ContactName: "User", Subject: "Order question",
				Reason: "sender verified: dmarc=pass", Classification: "normal", Verdict: verdict,
				FullText: text, Posts: [][]byte{append([]byte{'t'}, text...)}, After: Action{Kind: "seen"},
				ArrivedAt: time.Now(), ThreadSubject: "order question", NewThread: !seen[sender]}
			seen[sender] = true
			ins[j] = in
		}
		if res, err := db.RecordInbounds(ctx, ins); err != nil || len(res) != batch {
			b.Fatal(len(res), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(uid), "ns/email")
}
