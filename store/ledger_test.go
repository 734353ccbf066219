package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// newInbound returns a fetched ledger row for channel "c", folder INBOX,
// UIDVALIDITY 1 with n posts.
func newInbound(uid uint32, contact string, n int) *Inbound {
	in := &Inbound{
		Channel:     "c",
		Folder:      "INBOX",
		UIDValidity: 1,
		UID:         uid,
		DedupeKey:   fmt.Sprintf("<m%d@example.org>", uid),
		MessageID:   fmt.Sprintf("<m%d@example.org>", uid),
		Contact:     contact,
		Subject:     "Question",
		Raw:         []byte("Subject: Question\r\n\r\nHello\r\n"),
		After:       Action{Kind: "seen"},
		ArrivedAt:   time.UnixMilli(1_600_000_000_000 + int64(uid)*1000),
	}
	for i := range n {
		in.Posts = append(in.Posts, fmt.Appendf(nil, `{"uid":%d,"part":%d}`, uid, i))
	}
	return in
}

func mustRecord(t testing.TB, db *DB, in *Inbound) RecordResult {
	t.Helper()
	res, err := db.RecordInbound(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCursorAdvance(t *testing.T) { forEachBackend(t, testCursorAdvance) }

func testCursorAdvance(t *testing.T) {
	for _, c := range []struct {
		name  string
		start *Cursor // nil: no cursor
		rec   Cursor  // the recorded message
		want  Cursor
	}{
		{"none", nil, Cursor{UIDValidity: 5, UID: 10}, Cursor{UIDValidity: 5, UID: 10}},
		{"forward", &Cursor{UIDValidity: 5, UID: 10}, Cursor{UIDValidity: 5, UID: 12}, Cursor{UIDValidity: 5, UID: 12}},
		{"older uid keeps max", &Cursor{UIDValidity: 5, UID: 10}, Cursor{UIDValidity: 5, UID: 3}, Cursor{UIDValidity: 5, UID: 10}},
		{"same uid", &Cursor{UIDValidity: 5, UID: 10}, Cursor{UIDValidity: 5, UID: 10}, Cursor{UIDValidity: 5, UID: 10}},
		{"new uidvalidity lower uid", &Cursor{UIDValidity: 5, UID: 10}, Cursor{UIDValidity: 6, UID: 2}, Cursor{UIDValidity: 6, UID: 2}},
		{"new uidvalidity higher uid", &Cursor{UIDValidity: 5, UID: 10}, Cursor{UIDValidity: 4, UID: 20}, Cursor{UIDValidity: 4, UID: 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, _ := openTest(t)
			ctx := context.Background()
			if got, err := db.Cursor(ctx, "c", "INBOX"); err != nil || got != (Cursor{}) {
				t.Fatalf("initial cursor = %+v, %v", got, err)
			}
			if c.start != nil {
				if err := db.SetCursor(ctx, "c", "INBOX", *c.start); err != nil {
					t.Fatal(err)
				}
			}
			in := newInbound(c.rec.UID, "a@example.org", 1)
			in.UIDValidity = c.rec.UIDValidity
			mustRecord(t, db, in)
			got, err := db.Cursor(ctx, "c", "INBOX")
			if err != nil || got != c.want {
				t.Fatalf("cursor = %+v, %v; want %+v", got, err, c.want)
			}
			// Other folders and channels are untouched.
			if got, _ := db.Cursor(ctx, "c", "Other"); got != (Cursor{}) {
				t.Errorf("other folder cursor = %+v", got)
			}
			if got, _ := db.Cursor(ctx, "d", "INBOX"); got != (Cursor{}) {
				t.Errorf("other channel cursor = %+v", got)
			}
		})
	}

	// SetCursor goes backwards when told to.
	db, _ := openTest(t)
	ctx := context.Background()
	history := Cursor{UIDValidity: 8, UID: 40, HistoryBelow: 90, HistoryBefore: time.UnixMilli(1_700_000_000_000).UTC(), History: 55}
	for _, c := range []Cursor{{UIDValidity: 7, UID: 100}, {UIDValidity: 7, UID: 3}, {UIDValidity: 2, UID: 1}, history} {
		if err := db.SetCursor(ctx, "c", "INBOX", c); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Cursor(ctx, "c", "INBOX"); got != c {
			t.Fatalf("after SetCursor(%+v) cursor = %+v", c, got)
		}
	}
}

func TestRecordInbound(t *testing.T) { forEachBackend(t, testRecordInbound) }

func testRecordInbound(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()

	first := newInbound(10, "Alice@Example.ORG", 2)
	first.ThreadSubject = "Question"
	first.Verdict = []byte(`{"dkim":"pass"}`)
	first.FullText = "Hello"
	res := mustRecord(t, db, first)
	if res.Existing || res.DuplicateOf != 0 || res.ID == 0 || first.ID != res.ID {
		t.Fatalf("first: %+v, ID %d", res, first.ID)
	}
	if first.State != StateFetched || first.Contact != "alice@example.org" || !first.CreatedAt.Equal(clk.Now()) {
		t.Fatalf("first after record: state %q contact %q created %v", first.State, first.Contact, first.CreatedAt)
	}

	got, err := db.Inbound(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *first
	want.PostsTotal = 2
	want.MediaIDs = nil
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("Inbound =\n%+v\nwant\n%+v", got, &want)
	}

	// The customer's Message-ID started the contact's thread.
	th, ok, err := db.Thread(ctx, "c", "alice@example.org")
	if err != nil || !ok {
		t.Fatalf("Thread: %v, %v", ok, err)
	}
	if th.Subject != "Question" || !reflect.DeepEqual(th.MessageIDs, []string{first.MessageID}) || th.LastCustomerID != first.MessageID {
		t.Fatalf("thread = %+v", th)
	}

	// Same UID again: nothing written, even with other content.
	again := newInbound(10, "mallory@example.org", 1)
	again.DedupeKey = "other"
	res2 := mustRecord(t, db, again)
	if !res2.Existing || res2.ID != res.ID || again.ID != 0 {
		t.Fatalf("again: %+v, ID %d", res2, again.ID)
	}

	// Another UID with the same dedupe key: a skipped duplicate.
	dup := newInbound(11, "alice@example.org", 3)
	dup.DedupeKey = first.DedupeKey
	dup.MessageID = "<dup@example.org>"
	dup.After = Action{Kind: "move", Dest: "Archive"}
	res3 := mustRecord(t, db, dup)
	if res3.Existing || res3.DuplicateOf != res.ID || res3.ID == res.ID {
		t.Fatalf("dup: %+v", res3)
	}
	gotDup, err := db.Inbound(ctx, res3.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gotDup.State != StateSkipped || gotDup.Reason != fmt.Sprintf("duplicate of #%d", res.ID) ||
		len(gotDup.Posts) != 0 || gotDup.PostsTotal != 0 || gotDup.After != dup.After {
		t.Fatalf("duplicate row = %+v", gotDup)
	}
	// A duplicate of the duplicate still points at the original.
	dup2 := newInbound(12, "alice@example.org", 1)
	dup2.DedupeKey = first.DedupeKey
	if r := mustRecord(t, db, dup2); r.DuplicateOf != res.ID {
		t.Fatalf("dup2: %+v", r)
	}
	// Skipped rows do not join the thread.
	th, _, _ = db.Thread(ctx, "c", "alice@example.org")
	if len(th.MessageIDs) != 1 {
		t.Fatalf("thread after duplicates = %v", th.MessageIDs)
	}
	// The same dedupe key in another channel is no duplicate.
	other := newInbound(10, "alice@example.org", 1)
	other.Channel = "other"
	other.DedupeKey = first.DedupeKey
	if r := mustRecord(t, db, other); r.DuplicateOf != 0 || r.Existing {
		t.Fatalf("other channel: %+v", r)
	}
	if c, _ := db.Cursor(ctx, "c", "INBOX"); c != (Cursor{UIDValidity: 1, UID: 12}) {
		t.Fatalf("cursor = %+v", c)
	}

	// NewThread starts a new thread; the old Message-IDs stay known.
	nt := newInbound(13, "alice@example.org", 1)
	nt.NewThread = true
	nt.ThreadSubject = "Another topic"
	mustRecord(t, db, nt)
	th, _, _ = db.Thread(ctx, "c", "alice@example.org")
	if th.Subject != "Another topic" || !reflect.DeepEqual(th.MessageIDs, []string{nt.MessageID}) {
		t.Fatalf("new thread = %+v", th)
	}
	if ok, err := db.KnowsMessageID(ctx, "c", "alice@example.org", []string{"<x@y>", first.MessageID}); err != nil || !ok {
		t.Fatalf("KnowsMessageID(old thread) = %v, %v", ok, err)
	}

	// Quarantined and contact-less rows do not touch threads.
	q := newInbound(14, "bob@example.org", 0)
	q.State = StateQuarantined
	q.Reason = "unverified sender"
	mustRecord(t, db, q)
	if _, ok, _ := db.Thread(ctx, "c", "bob@example.org"); ok {
		t.Fatal("quarantined row created a thread")
	}
}

func TestRecordInboundRejects(t *testing.T) { forEachBackend(t, testRecordInboundRejects) }

func testRecordInboundRejects(t *testing.T) {
	db, _ := openTest(t)
	for _, c := range []struct {
		name string
		mod  func(in *Inbound)
	}{
		{"no channel", func(in *Inbound) { in.Channel = "" }},
		{"no folder", func(in *Inbound) { in.Folder = "" }},
		{"zero uid", func(in *Inbound) { in.UID = 0 }},
		{"zero uidvalidity", func(in *Inbound) { in.UIDValidity = 0 }},
		{"fetched without posts", func(in *Inbound) { in.Posts = nil }},
		{"posted", func(in *Inbound) { in.State = StatePosted }},
		{"posting", func(in *Inbound) { in.State = StatePosting }},
		{"unknown state", func(in *Inbound) { in.State = "weird" }},
		{"posts done", func(in *Inbound) { in.PostsDone = 1 }},
		{"move without dest", func(in *Inbound) { in.After = Action{Kind: "move"} }},
		{"unknown action", func(in *Inbound) { in.After = Action{Kind: "burn"} }},
	} {
		in := newInbound(1, "a@example.org", 1)
		c.mod(in)
		if _, err := db.RecordInbound(context.Background(), in); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	// Nothing was written, not even the cursor.
	if c, _ := db.Cursor(context.Background(), "c", "INBOX"); c != (Cursor{}) {
		t.Fatalf("cursor = %+v", c)
	}
}

func duePairs(t *testing.T, d []DuePost) []string {
	t.Helper()
	var s []string
	for _, p := range d {
		s = append(s, fmt.Sprintf("%d/%d:%s", p.LedgerID, p.Seq, p.Contact))
	}
	return s
}

func TestDuePostsOrder(t *testing.T) { forEachBackend(t, testDuePostsOrder) }

func testDuePostsOrder(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()

	a1 := mustRecord(t, db, newInbound(1, "a@example.org", 2)).ID
	b1 := mustRecord(t, db, newInbound(2, "b@example.org", 1)).ID
	a2 := mustRecord(t, db, newInbound(3, "a@example.org", 1)).ID
	c1 := mustRecord(t, db, newInbound(4, "c@example.org", 1)).ID
	skipped := newInbound(5, "d@example.org", 0)
	skipped.State = StateSkipped
	mustRecord(t, db, skipped)
	other := newInbound(6, "e@example.org", 1)
	other.Channel = "other"
	mustRecord(t, db, other)

	check := func(skip []string, limit int, want ...string) {
		t.Helper()
		due, err := db.DuePosts(ctx, "c", skip, limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := duePairs(t, due); !reflect.DeepEqual(got, want) {
			t.Fatalf("DuePosts(skip %v, limit %d) = %v, want %v", skip, limit, got, want)
		}
	}
	f := func(id int64, seq int, c string) string { return fmt.Sprintf("%d/%d:%s", id, seq, c) }

	check(nil, 0, f(a1, 0, "a@example.org"), f(b1, 0, "b@example.org"), f(c1, 0, "c@example.org"))
	check(nil, 2, f(a1, 0, "a@example.org"), f(b1, 0, "b@example.org"))
	check([]string{"A@example.org", "c@example.org"}, 0, f(b1, 0, "b@example.org"))

	due, _ := db.DuePosts(ctx, "c", nil, 1)
	if d := due[0]; d.Total != 2 || d.Channel != "c" || string(d.Body) != `{"uid":1,"part":0}` ||
		!d.ArrivedAt.Equal(time.UnixMilli(1_600_000_001_000)) {
		t.Fatalf("due post = %+v", d)
	}

	// a1 posts its first part: its second is next, a2 still waits.
	if err := db.MarkPosting(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if fin, err := db.PostDone(ctx, a1, 0); err != nil || fin {
		t.Fatalf("PostDone(a1, 0) = %v, %v", fin, err)
	}
	check(nil, 0, f(a1, 1, "a@example.org"), f(b1, 0, "b@example.org"), f(c1, 0, "c@example.org"))
	if fin, err := db.PostDone(ctx, a1, 1); err != nil || !fin {
		t.Fatalf("PostDone(a1, 1) = %v, %v", fin, err)
	}
	check(nil, 0, f(b1, 0, "b@example.org"), f(a2, 0, "a@example.org"), f(c1, 0, "c@example.org"))

	// A dead row does not block its contact.
	if err := db.MarkDead(ctx, b1, "HTTP 400"); err != nil {
		t.Fatal(err)
	}
	b2 := mustRecord(t, db, newInbound(7, "b@example.org", 1)).ID
	check(nil, 0, f(a2, 0, "a@example.org"), f(c1, 0, "c@example.org"), f(b2, 0, "b@example.org"))

	// Requeued, the old row goes first again.
	if refetch, err := db.Requeue(ctx, b1); err != nil || refetch {
		t.Fatalf("Requeue = %v, %v; want posts queued again", refetch, err)
	}
	check(nil, 0, f(b1, 0, "b@example.org"), f(a2, 0, "a@example.org"), f(c1, 0, "c@example.org"))
}

func TestPostDoneProgression(t *testing.T) { forEachBackend(t, testPostDoneProgression) }

func testPostDoneProgression(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	id := mustRecord(t, db, newInbound(1, "a@example.org", 3)).ID

	if _, err := db.PostDone(ctx, id, 1); err == nil {
		t.Fatal("PostDone out of order accepted")
	}
	steps := []struct {
		seq      int
		finished bool
		state    InboundState
		done     int
		wantErr  bool
	}{
		{0, false, StateFetched, 1, false},
		{0, false, StateFetched, 1, false}, // repeated: no-op
		{2, false, StateFetched, 1, true},  // skips seq 1
		{1, false, StateFetched, 2, false},
		{2, true, StatePosted, 3, false},
		{2, true, StatePosted, 3, false}, // repeated after finishing
		{3, false, StatePosted, 3, true}, // beyond the end
	}
	for i, s := range steps {
		fin, err := db.PostDone(ctx, id, s.seq)
		if (err != nil) != s.wantErr || fin != s.finished {
			t.Fatalf("step %d: PostDone(%d) = %v, %v", i, s.seq, fin, err)
		}
		in, err := db.Inbound(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if in.State != s.state || in.PostsDone != s.done {
			t.Fatalf("step %d: state %s done %d; want %s %d", i, in.State, in.PostsDone, s.state, s.done)
		}
	}
	var se *StateError
	if err := db.MarkPosting(ctx, id); !errors.As(err, &se) || se.State != "posted" {
		t.Fatalf("MarkPosting(posted) = %v", err)
	}
}

func TestMarkPostingAttempts(t *testing.T) { forEachBackend(t, testMarkPostingAttempts) }

func testMarkPostingAttempts(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	id := mustRecord(t, db, newInbound(1, "a@example.org", 1)).ID
	for range 3 {
		if err := db.MarkPosting(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetLastError(ctx, id, "HTTP 503"); err != nil {
		t.Fatal(err)
	}
	in, _ := db.Inbound(ctx, id)
	if in.State != StatePosting || in.Attempts != 3 || in.LastError != "HTTP 503" {
		t.Fatalf("row = state %s attempts %d last error %q", in.State, in.Attempts, in.LastError)
	}
}

// TestRequeueRefetch follows a dead letter without posts through `dead
// retry`: marked, listed for its folder, and replaced when fetched again;
// a refetch of an email gone from the folder ends with a last error.
func TestRequeueRefetch(t *testing.T) { forEachBackend(t, testRequeueRefetch) }

func testRequeueRefetch(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()

	dead := func(uid uint32) int64 {
		in := newInbound(uid, "", 0)
		in.State, in.Reason, in.After = StateDead, "the email is too large", Action{}
		return mustRecord(t, db, in).ID
	}
	big, gone := dead(5), dead(6)
	other := mustRecord(t, db, newInbound(7, "a@example.org", 1)).ID
	if uids, err := db.Refetches(ctx, "c", "INBOX", 1); err != nil || len(uids) != 0 {
		t.Fatalf("Refetches before any retry = %v, %v", uids, err)
	}
	if n, err := db.CountRefetches(ctx, "c"); err != nil || n != 0 {
		t.Fatalf("CountRefetches before any retry = %v, %v", n, err)
	}
	for _, id := range []int64{gone, big} {
		if refetch, err := db.Requeue(ctx, id); err != nil || !refetch {
			t.Fatalf("Requeue(%d) = %v, %v", id, refetch, err)
		}
	}
	if uids, err := db.Refetches(ctx, "c", "INBOX", 1); err != nil || !slices.Equal(uids, []uint32{5, 6}) {
		t.Fatalf("Refetches = %v, %v; want [5 6]", uids, err)
	}
	if uids, _ := db.Refetches(ctx, "c", "INBOX", 2); len(uids) != 0 {
		t.Fatalf("Refetches under another UIDVALIDITY = %v", uids)
	}
	if n, _ := db.CountRefetches(ctx, "c"); n != 2 {
		t.Fatalf("CountRefetches = %d after two retries, want 2", n)
	}

	// An ordinary row's UID fetched again stays as it is.
	if res := mustRecord(t, db, newInbound(7, "a@example.org", 1)); !res.Existing || res.ID != other {
		t.Fatalf("record uid 7 again = %+v", res)
	}
	// The refetched dead letter is replaced by the new decision.
	res := mustRecord(t, db, newInbound(5, "b@example.org", 2))
	if res.Existing || res.Replaced != big || res.ID == big {
		t.Fatalf("record uid 5 again = %+v, want row %d replaced", res, big)
	}
	if _, err := db.Inbound(ctx, big); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the replaced row: %v, want ErrNotFound", err)
	}
	in, err := db.Inbound(ctx, res.ID)
	if err != nil || in.State != StateFetched || len(in.Posts) != 2 || in.Contact != "b@example.org" {
		t.Fatalf("the new row = %+v, %v", in, err)
	}
	// Recording it once more is a plain repeat.
	if again := mustRecord(t, db, newInbound(5, "b@example.org", 2)); !again.Existing || again.ID != res.ID {
		t.Fatalf("record uid 5 a third time = %+v", again)
	}

	// A dead letter with a copy skipped as its duplicate (the same email
	// in a second folder): fetched again, it is not a duplicate of its
	// own copy, and the copy now refers to the new row.
	a := newInbound(8, "", 0)
	a.State, a.Reason, a.After, a.DedupeKey = StateDead, "unreadable", Action{}, "raw:8"
	aid := mustRecord(t, db, a).ID
	b := newInbound(8, "", 0)
	b.Folder, b.State, b.After, b.DedupeKey = "Archive", StateSkipped, Action{}, "raw:8"
	bres := mustRecord(t, db, b)
	if bres.DuplicateOf != aid {
		t.Fatalf("the copy = %+v, want a duplicate of %d", bres, aid)
	}
	if _, err := db.Requeue(ctx, aid); err != nil {
		t.Fatal(err)
	}
	again := newInbound(8, "d@example.org", 1)
	again.DedupeKey = "raw:8"
	ares := mustRecord(t, db, again)
	if ares.Replaced != aid || ares.DuplicateOf != 0 {
		t.Fatalf("record uid 8 again = %+v, want row %d replaced and no duplicate", ares, aid)
	}
	if copyRow, _ := db.Inbound(ctx, bres.ID); copyRow.Reason != fmt.Sprintf("duplicate of #%d", ares.ID) {
		t.Fatalf("the copy's reason = %q, want duplicate of #%d", copyRow.Reason, ares.ID)
	}

	// The other one is no longer in the folder.
	if err := db.RefetchFailed(ctx, "c", "INBOX", 1, []uint32{6}, "the email is no longer in INBOX"); err != nil {
		t.Fatal(err)
	}
	if uids, _ := db.Refetches(ctx, "c", "INBOX", 1); len(uids) != 0 {
		t.Fatalf("Refetches after RefetchFailed = %v", uids)
	}
	in, _ = db.Inbound(ctx, gone)
	if in.State != StateDead || !strings.Contains(in.LastError, "no longer in INBOX") {
		t.Fatalf("the gone row = state %s, last error %q", in.State, in.LastError)
	}
	if n, _ := db.CountRefetches(ctx, "c"); n != 0 {
		t.Fatalf("CountRefetches = %d with nothing left to refetch", n)
	}
}

func TestMarkDeadRequeue(t *testing.T) { forEachBackend(t, testMarkDeadRequeue) }

func testMarkDeadRequeue(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()

	id := mustRecord(t, db, newInbound(1, "a@example.org", 2)).ID
	var se *StateError
	if _, err := db.Requeue(ctx, id); !errors.As(err, &se) || se.Op != "requeue" || se.State != "fetched" {
		t.Fatalf("Requeue(fetched) = %v", err)
	}
	db.MarkPosting(ctx, id)
	db.PostDone(ctx, id, 0)
	db.SetLastError(ctx, id, "HTTP 400: bad body")
	if err := db.MarkDead(ctx, id, "rejected by Userlike"); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkDead(ctx, id, "second reason"); err != nil {
		t.Fatalf("MarkDead(dead) = %v", err)
	}
	in, _ := db.Inbound(ctx, id)
	if in.State != StateDead || in.Reason != "rejected by Userlike" || len(in.Raw) == 0 || in.PostsDone != 1 {
		t.Fatalf("dead row = %+v", in)
	}
	if refetch, err := db.Requeue(ctx, id); err != nil || refetch {
		t.Fatalf("Requeue = %v, %v; want posts queued again", refetch, err)
	}
	in, _ = db.Inbound(ctx, id)
	if in.State != StateFetched || in.PostsDone != 1 || in.Attempts != 0 || in.LastError != "" || in.Reason != "" {
		t.Fatalf("requeued row = %+v", in)
	}
	due, _ := db.DuePosts(ctx, "c", nil, 0)
	if len(due) != 1 || due[0].Seq != 1 {
		t.Fatalf("due after requeue = %v", duePairs(t, due))
	}

	// Quarantined rows can be given up; posted and skipped cannot.
	q := newInbound(2, "b@example.org", 0)
	q.State = StateQuarantined
	qid := mustRecord(t, db, q).ID
	if err := db.MarkDead(ctx, qid, "operator"); err != nil {
		t.Fatal(err)
	}
	// A dead row without posts is marked for refetching; it does not
	// enter the posting queue, where it would block its contact.
	if refetch, err := db.Requeue(ctx, qid); err != nil || !refetch {
		t.Fatalf("Requeue(no posts) = %v, %v; want a refetch", refetch, err)
	}
	if due, _ := db.DuePosts(ctx, "c", nil, 0); len(due) != 1 || due[0].LedgerID != id {
		t.Fatalf("due after a refetch request = %v", duePairs(t, due))
	}
	s := newInbound(3, "c@example.org", 0)
	s.State = StateSkipped
	sid := mustRecord(t, db, s).ID
	if err := db.MarkDead(ctx, sid, "x"); !errors.As(err, &se) || se.State != "skipped" {
		t.Fatalf("MarkDead(skipped) = %v", err)
	}
}

func TestPendingActions(t *testing.T) { forEachBackend(t, testPendingActions) }

func testPendingActions(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()

	fetched := mustRecord(t, db, newInbound(1, "a@example.org", 1)).ID
	posted := mustRecord(t, db, newInbound(2, "b@example.org", 1)).ID
	db.MarkPosting(ctx, posted)
	db.PostDone(ctx, posted, 0)
	sk := newInbound(3, "c@example.org", 0)
	sk.State = StateSkipped
	sk.After = Action{Kind: "move", Dest: "Junk"}
	skipped := mustRecord(t, db, sk).ID
	none := newInbound(4, "d@example.org", 0)
	none.State = StateSkipped
	none.After = Action{}
	mustRecord(t, db, none)
	q := newInbound(5, "e@example.org", 0)
	q.State = StateQuarantined
	q.After = Action{Kind: "flag"}
	quarantined := mustRecord(t, db, q).ID
	dead := mustRecord(t, db, newInbound(6, "f@example.org", 1)).ID
	db.MarkDead(ctx, dead, "x")
	otherFolder := newInbound(7, "g@example.org", 0)
	otherFolder.State = StateSkipped
	otherFolder.Folder = "Other"
	mustRecord(t, db, otherFolder)

	got, err := db.PendingActions(ctx, "c", "INBOX", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []PendingAction{
		{posted, 1, 2, Action{Kind: "seen"}},
		{skipped, 1, 3, Action{Kind: "move", Dest: "Junk"}},
		{quarantined, 1, 5, Action{Kind: "flag"}},
		// dead (uid 6) gets no action: a dead letter stays in the mailbox.
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PendingActions = %+v\nwant %+v", got, want)
	}
	if got, _ := db.PendingActions(ctx, "c", "INBOX", 2); len(got) != 2 || got[1].ID != skipped {
		t.Fatalf("PendingActions limit 2 = %+v", got)
	}
	if err := db.ActionsDone(ctx, []int64{posted, quarantined}); err != nil {
		t.Fatal(err)
	}
	if err := db.ActionsDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = db.PendingActions(ctx, "c", "INBOX", 0)
	if len(got) != 1 || got[0].ID != skipped {
		t.Fatalf("PendingActions after done = %+v", got)
	}
	// The fetched row's action appears once it is settled.
	db.MarkPosting(ctx, fetched)
	db.PostDone(ctx, fetched, 0)
	got, _ = db.PendingActions(ctx, "c", "INBOX", 0)
	if len(got) != 2 || got[0].ID != fetched {
		t.Fatalf("PendingActions after posting = %+v", got)
	}
	in, _ := db.Inbound(ctx, posted)
	if !in.AfterDone {
		t.Fatal("AfterDone not set")
	}

	// A refused action is done, and counted by Status with its reason.
	if err := db.ActionsRefused(ctx, []int64{skipped}, `move to "Junk": NO [NOPERM] Permission denied`); err != nil {
		t.Fatal(err)
	}
	got, _ = db.PendingActions(ctx, "c", "INBOX", 0)
	if len(got) != 1 || got[0].ID != fetched {
		t.Fatalf("PendingActions after refusal = %+v", got)
	}
	st, err := db.Status(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if st.ActionsRefused != 1 || st.LastActionRefused != `move to "Junk": NO [NOPERM] Permission denied` {
		t.Errorf("Status refused = %d %q", st.ActionsRefused, st.LastActionRefused)
	}
}

func TestCountsListPrune(t *testing.T) { forEachBackend(t, testCountsListPrune) }

func testCountsListPrune(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()

	posted := mustRecord(t, db, newInbound(1, "a@example.org", 1)).ID
	db.MarkPosting(ctx, posted)
	db.PostDone(ctx, posted, 0)
	sk := newInbound(2, "a@example.org", 0)
	sk.State = StateSkipped
	skipped := mustRecord(t, db, sk).ID
	dead := mustRecord(t, db, newInbound(3, "b@example.org", 1)).ID
	db.MarkDead(ctx, dead, "x")
	fetched := mustRecord(t, db, newInbound(4, "a@example.org", 1)).ID
	o := newInbound(1, "a@example.org", 1)
	o.Channel = "other"
	mustRecord(t, db, o)

	counts, err := db.Counts(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[InboundState]int{StatePosted: 1, StateSkipped: 1, StateDead: 1, StateFetched: 1}; !reflect.DeepEqual(counts, want) {
		t.Fatalf("Counts = %v, want %v", counts, want)
	}
	if all, _ := db.Counts(ctx, ""); all[StateFetched] != 2 {
		t.Fatalf("Counts(all) = %v", all)
	}

	list, err := db.ListInbound(ctx, InboundFilter{Channel: "c"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, in := range list {
		ids = append(ids, in.ID)
		if in.Raw != nil || in.Posts != nil {
			t.Fatalf("list row %d has Raw or Posts", in.ID)
		}
	}
	if !reflect.DeepEqual(ids, []int64{fetched, dead, skipped, posted}) {
		t.Fatalf("ListInbound ids = %v", ids)
	}
	if list[0].PostsTotal != 1 {
		t.Fatalf("PostsTotal = %d", list[0].PostsTotal)
	}
	for _, c := range []struct {
		f    InboundFilter
		want []int64
	}{
		{InboundFilter{Channel: "c", States: []InboundState{StateDead, StatePosted}}, []int64{dead, posted}},
		{InboundFilter{Channel: "c", Limit: 2}, []int64{fetched, dead}},
		{InboundFilter{Channel: "c", Limit: 2, BeforeID: dead}, []int64{skipped, posted}},
		{InboundFilter{States: []InboundState{StateFetched}}, []int64{fetched + 1, fetched}},
	} {
		list, err := db.ListInbound(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, in := range list {
			ids = append(ids, in.ID)
		}
		if !reflect.DeepEqual(ids, c.want) {
			t.Errorf("ListInbound(%+v) = %v, want %v", c.f, ids, c.want)
		}
	}

	// CountFromContact counts by arrival time.
	for _, c := range []struct {
		contact string
		since   time.Time
		want    int
	}{
		{"a@example.org", time.Time{}, 3},
		{"A@EXAMPLE.ORG", time.UnixMilli(1_600_000_002_000), 2},
		{"a@example.org", time.UnixMilli(1_600_000_004_001), 0},
		{"b@example.org", time.Time{}, 1},
		{"z@example.org", time.Time{}, 0},
	} {
		n, err := db.CountFromContact(ctx, "c", c.contact, c.since)
		if err != nil || n != c.want {
			t.Errorf("CountFromContact(%s, %v) = %d, %v; want %d", c.contact, c.since, n, err, c.want)
		}
	}

	// Prune: only posted and skipped rows older than the cut lose Raw.
	if n, err := db.PruneRaw(ctx, clk.Now()); err != nil || n != 0 {
		t.Fatalf("PruneRaw(now) = %d, %v", n, err)
	}
	clk.Add(time.Hour)
	if n, err := db.PruneRaw(ctx, clk.Now()); err != nil || n != 2 { // posted and skipped
		t.Fatalf("PruneRaw(later) = %d, %v", n, err)
	}
	for id, keep := range map[int64]bool{posted: false, skipped: false, dead: true, fetched: true} {
		in, _ := db.Inbound(ctx, id)
		if (in.Raw != nil) != keep {
			t.Errorf("row %d (%s): raw kept = %v, want %v", id, in.State, in.Raw != nil, keep)
		}
	}
}

func TestThreads(t *testing.T) { forEachBackend(t, testThreads) }

func testThreads(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()

	if _, ok, err := db.Thread(ctx, "c", "a@example.org"); ok || err != nil {
		t.Fatalf("Thread(none) = %v, %v", ok, err)
	}
	steps := []struct {
		id   string
		ours bool
	}{{"<c1@x>", false}, {"<o1@mailgate>", true}, {"<c2@x>", false}, {"<c1@x>", false}}
	for _, s := range steps {
		if err := db.AddThreadMessage(ctx, "c", "A@example.org", s.id, s.ours); err != nil {
			t.Fatal(err)
		}
	}
	th, ok, err := db.Thread(ctx, "c", "a@example.org")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if !reflect.DeepEqual(th.MessageIDs, []string{"<c1@x>", "<o1@mailgate>", "<c2@x>"}) ||
		th.LastOurID != "<o1@mailgate>" || th.LastCustomerID != "<c1@x>" || th.Contact != "a@example.org" {
		t.Fatalf("thread = %+v", th)
	}
	for _, c := range []struct {
		channel, contact string
		ids              []string
		want             bool
	}{
		{"c", "a@example.org", []string{"<o1@mailgate>"}, true},
		{"c", "a@example.org", []string{"<nope@x>", "<c2@x>"}, true},
		{"c", "a@example.org", []string{"<nope@x>"}, false},
		{"c", "a@example.org", nil, false},
		{"c", "b@example.org", []string{"<o1@mailgate>"}, false},
		{"d", "a@example.org", []string{"<o1@mailgate>"}, false},
	} {
		got, err := db.KnowsMessageID(ctx, c.channel, c.contact, c.ids)
		if err != nil || got != c.want {
			t.Errorf("KnowsMessageID(%s, %s, %v) = %v, %v", c.channel, c.contact, c.ids, got, err)
		}
	}
	if err := db.AddThreadMessage(ctx, "c", "a@example.org", "", true); err == nil {
		t.Error("empty message id accepted")
	}

	// A recorded message for a thread without subject fills it in.
	in := newInbound(1, "a@example.org", 1)
	in.ThreadSubject = "Re: Order"
	mustRecord(t, db, in)
	th, _, _ = db.Thread(ctx, "c", "a@example.org")
	if th.Subject != "Re: Order" || th.LastCustomerID != in.MessageID || len(th.MessageIDs) != 4 {
		t.Fatalf("thread after record = %+v", th)
	}
}

func TestOutbox(t *testing.T) { forEachBackend(t, testOutbox) }

func testOutbox(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()

	it := &OutboxItem{Channel: "c", Contact: "A@example.org", UserlikeID: "ul-1", Operator: "Olga", Text: "Hi",
		SendAfter: time.UnixMilli(1_700_000_060_000)}
	id, dup, err := db.Enqueue(ctx, it)
	if err != nil || dup || id == 0 || it.ID != id || it.State != OutboxQueued {
		t.Fatalf("Enqueue = %d, %v, %v; item %+v", id, dup, err, it)
	}
	got, err := db.Outbox(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, it) {
		t.Fatalf("Outbox =\n%+v\nwant\n%+v", got, it)
	}
	id2, dup, err := db.Enqueue(ctx, &OutboxItem{Channel: "c", Contact: "a@example.org", UserlikeID: "ul-1", Text: "again"})
	if err != nil || !dup || id2 != id {
		t.Fatalf("Enqueue(duplicate) = %d, %v, %v", id2, dup, err)
	}
	// Same Userlike id in another channel; and items without one never collide.
	for _, it := range []*OutboxItem{
		{Channel: "d", Contact: "a@example.org", UserlikeID: "ul-1"},
		{Channel: "c", Contact: "a@example.org"},
		{Channel: "c", Contact: "a@example.org"},
	} {
		if _, dup, err := db.Enqueue(ctx, it); err != nil || dup {
			t.Fatalf("Enqueue(%+v) = %v, %v", it, dup, err)
		}
	}
	for _, bad := range []*OutboxItem{
		{Contact: "a@example.org", UserlikeID: "x"},
		{Channel: "c", UserlikeID: "x"},
		{Channel: "c", Contact: "a@example.org", UserlikeID: "x", State: OutboxSent},
	} {
		if _, _, err := db.Enqueue(ctx, bad); err == nil {
			t.Errorf("Enqueue(%+v) accepted", bad)
		}
	}

	if c, err := db.OutboxCounts(ctx, "c"); err != nil || !reflect.DeepEqual(c, map[string]int{"queued": 3}) {
		t.Fatalf("OutboxCounts = %v, %v", c, err)
	}
	cancelled, state, err := db.CancelOutbox(ctx, "c", "ul-1")
	if err != nil || !cancelled || state != OutboxCancelled {
		t.Fatalf("CancelOutbox = %v, %q, %v", cancelled, state, err)
	}
	cancelled, state, err = db.CancelOutbox(ctx, "c", "ul-1")
	if err != nil || !cancelled || state != OutboxCancelled {
		t.Fatalf("CancelOutbox again = %v, %q, %v", cancelled, state, err)
	}
	// An item already being sent cannot be cancelled.
	if _, err := db.writeExec(ctx, `UPDATE outbox SET state = 'sending' WHERE channel = 'd'`); err != nil {
		t.Fatal(err)
	}
	cancelled, state, err = db.CancelOutbox(ctx, "d", "ul-1")
	if err != nil || cancelled || state != OutboxSending {
		t.Fatalf("CancelOutbox(sending) = %v, %q, %v", cancelled, state, err)
	}
	if c, _ := db.OutboxCounts(ctx, ""); !reflect.DeepEqual(c, map[string]int{"queued": 2, "cancelled": 1, "sending": 1}) {
		t.Fatalf("OutboxCounts(all) = %v", c)
	}
}

func TestMedia(t *testing.T) { forEachBackend(t, testMedia) }

func testMedia(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()

	m := &Media{SHA256: "aa", Size: 3, ContentType: "image/png", Filename: "a.png", Channel: "c"}
	if err := db.PutMedia(ctx, m); err != nil {
		t.Fatal(err)
	}
	if len(m.ID) != 22 || strings.ContainsAny(m.ID, "+/=") || !m.CreatedAt.Equal(clk.Now()) {
		t.Fatalf("PutMedia filled in %+v", m)
	}
	got, err := db.Media(ctx, m.ID)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("Media = %+v, %v; want %+v", got, err, m)
	}
	if err := db.PutMedia(ctx, &Media{ID: m.ID, SHA256: "bb"}); err == nil {
		t.Fatal("duplicate id accepted")
	}
	if err := db.PutMedia(ctx, &Media{SHA256: "bb", LedgerID: 999}); err == nil {
		t.Fatal("unknown ledger row accepted")
	}

	// Media linked to a row being posted do not expire; the same file
	// shared with a second entry counts two references.
	shared := &Media{SHA256: "aa", Size: 3, Channel: "c"}
	if err := db.PutMedia(ctx, shared); err != nil {
		t.Fatal(err)
	}
	orphan := &Media{SHA256: "cc", Size: 1, Channel: "c"}
	if err := db.PutMedia(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	in := newInbound(1, "a@example.org", 1)
	in.MediaIDs = []string{m.ID, shared.ID}
	id := mustRecord(t, db, in).ID
	if got, _ := db.Media(ctx, m.ID); got.LedgerID != id {
		t.Fatalf("LedgerID = %d, want %d", got.LedgerID, id)
	}
	if n, err := db.MediaRefs(ctx, "aa"); err != nil || n != 2 {
		t.Fatalf("MediaRefs = %d, %v", n, err)
	}

	expired := func(before time.Time) []string {
		t.Helper()
		list, err := db.ExpiredMedia(ctx, before)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range list {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := expired(clk.Now()); got != nil {
		t.Fatalf("expired now = %v", got)
	}
	clk.Add(time.Hour)
	if got := expired(clk.Now()); !reflect.DeepEqual(got, []string{orphan.ID}) {
		t.Fatalf("expired while posting = %v", got)
	}
	db.MarkPosting(ctx, id)
	db.PostDone(ctx, id, 0)
	if got := expired(clk.Now()); len(got) != 3 {
		t.Fatalf("expired after posting = %v", got)
	}
	if err := db.DeleteMedia(ctx, []string{m.ID, "unknown"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Media(ctx, m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Media(deleted) = %v", err)
	}
	if n, _ := db.MediaRefs(ctx, "aa"); n != 1 {
		t.Fatalf("MediaRefs after delete = %d", n)
	}
}

// TestConcurrentWriters hammers the store from 16 goroutines: every write
// must succeed (no SQLITE_BUSY) and nothing may be lost.
func TestConcurrentWriters(t *testing.T) { forEachBackend(t, testConcurrentWriters) }

func testConcurrentWriters(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	const workers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*4)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			contact := fmt.Sprintf("w%d@example.org", w)
			for i := range each {
				in := newInbound(uint32(w*1000+i+1), contact, 1)
				in.Folder = fmt.Sprintf("F%d", w%4)
				res, err := db.RecordInbound(ctx, in)
				if err != nil {
					errs <- err
					continue
				}
				if err := db.MarkPosting(ctx, res.ID); err != nil {
					errs <- err
				}
				if _, err := db.PostDone(ctx, res.ID, 0); err != nil {
					errs <- err
				}
				if _, _, err := db.Enqueue(ctx, &OutboxItem{Channel: "c", Contact: contact, UserlikeID: fmt.Sprint(w, "-", i)}); err != nil {
					errs <- err
				}
				if _, err := db.DuePosts(ctx, "c", nil, 10); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	counts, err := db.Counts(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if counts[StatePosted] != workers*each || len(counts) != 1 {
		t.Fatalf("Counts = %v", counts)
	}
	if oc, _ := db.OutboxCounts(ctx, "c"); oc[OutboxQueued] != workers*each {
		t.Fatalf("OutboxCounts = %v", oc)
	}
}

// TestDuePostsCarryTheContact checks that a due post has what the POST
// needs without reading the row again: the contact's name and the time
// the row was recorded.
func TestDuePostsCarryTheContact(t *testing.T) { forEachBackend(t, testDuePostsCarryTheContact) }

func testDuePostsCarryTheContact(t *testing.T) {
	ctx := context.Background()
	db, clk := openTest(t)
	in := newInbound(1, "Ann@Example.org", 1)
	in.ContactName = "Ann Example"
	if _, err := db.RecordInbound(ctx, in); err != nil {
		t.Fatal(err)
	}
	due, err := db.DuePosts(ctx, "c", nil, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("DuePosts = %v, %v", due, err)
	}
	d := due[0]
	if d.Contact != "ann@example.org" || d.ContactName != "Ann Example" || !d.CreatedAt.Equal(clk.Now()) || string(d.Body) != string(in.Posts[0]) {
		t.Errorf("due post = %+v", d)
	}
}

// TestPostAcceptedAndFailed checks the one-commit bookkeeping of a POST:
// post 0 counts an attempt whether it fails or is accepted, later posts
// do not, and the states go as with MarkPosting.
func TestPostAcceptedAndFailed(t *testing.T) { forEachBackend(t, testPostAcceptedAndFailed) }

func testPostAcceptedAndFailed(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	res, err := db.RecordInbound(ctx, newInbound(1, "a@example.org", 2))
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID
	row := func() *Inbound {
		t.Helper()
		in, err := db.Inbound(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	if err := db.PostFailed(ctx, id, 0, "HTTP 503"); err != nil {
		t.Fatal(err)
	}
	if in := row(); in.State != StatePosting || in.Attempts != 1 || in.LastError != "HTTP 503" || in.PostsDone != 0 {
		t.Fatalf("after a failed post 0: %s attempts %d error %q done %d", in.State, in.Attempts, in.LastError, in.PostsDone)
	}
	if fin, err := db.PostAccepted(ctx, DuePost{LedgerID: id, Seq: 0, Total: 2}); err != nil || fin {
		t.Fatalf("PostAccepted(0) = %v, %v", fin, err)
	}
	if in := row(); in.State != StatePosting || in.Attempts != 2 || in.PostsDone != 1 {
		t.Fatalf("after post 0: %s attempts %d done %d", in.State, in.Attempts, in.PostsDone)
	}
	if err := db.PostFailed(ctx, id, 1, "timeout"); err != nil {
		t.Fatal(err)
	}
	if fin, err := db.PostAccepted(ctx, DuePost{LedgerID: id, Seq: 1, Total: 2}); err != nil || !fin {
		t.Fatalf("PostAccepted(1) = %v, %v", fin, err)
	}
	if in := row(); in.State != StatePosted || in.Attempts != 2 || in.PostsDone != 2 || in.LastError != "timeout" {
		t.Fatalf("after post 1: %s attempts %d done %d error %q", in.State, in.Attempts, in.PostsDone, in.LastError)
	}
	if err := db.PostFailed(ctx, id, 1, "late"); err == nil {
		t.Error("PostFailed on a posted row succeeded")
	}
	// A row accepted at the first try: fetched straight to posted.
	res, err = db.RecordInbound(ctx, newInbound(2, "b@example.org", 1))
	if err != nil {
		t.Fatal(err)
	}
	id = res.ID
	if fin, err := db.PostAccepted(ctx, DuePost{LedgerID: id, Seq: 0, Total: 1}); err != nil || !fin {
		t.Fatalf("PostAccepted = %v, %v", fin, err)
	}
	if in := row(); in.State != StatePosted || in.Attempts != 1 {
		t.Fatalf("single post: %s attempts %d", in.State, in.Attempts)
	}
}

// TestThreadCc: the CC list of a thread is that of the contact's latest
// posted email; a later email without Cc clears it, a skipped one (not
// posted) leaves it, a new thread starts with its own.
func TestThreadCc(t *testing.T) { forEachBackend(t, testThreadCc) }

func testThreadCc(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	steps := []struct {
		name      string
		cc        []string
		state     InboundState
		noMsgID   bool
		newThread bool
		keep      bool
		want      []string
	}{
		{name: "first email with two CCs", cc: []string{"bob@example.org", "carol@example.net"}, want: []string{"bob@example.org", "carol@example.net"}},
		{name: "skipped email changes nothing", cc: []string{"eve@example.org"}, state: StateSkipped, want: []string{"bob@example.org", "carol@example.net"}},
		{name: "one CC", cc: []string{"carol@example.net"}, want: []string{"carol@example.net"}},
		{name: "an unverified sender's email keeps the list", cc: nil, keep: true, want: []string{"carol@example.net"}},
		{name: "no CC clears", want: nil},
		{name: "without Message-ID still sets", cc: []string{"dave@example.com"}, noMsgID: true, want: []string{"dave@example.com"}},
		{name: "new thread", cc: []string{"erin@example.com"}, newThread: true, want: []string{"erin@example.com"}},
	}
	for i, s := range steps {
		in := newInbound(uint32(i+1), "Jane@Example.test", 1)
		in.Cc, in.State, in.NewThread, in.KeepCc = s.cc, s.state, s.newThread, s.keep
		if s.noMsgID {
			in.MessageID, in.DedupeKey = "", ""
		}
		mustRecord(t, db, in)
		th, ok, err := db.Thread(ctx, "c", "jane@example.test")
		if err != nil || !ok {
			t.Fatalf("%s: Thread = %v, %v", s.name, ok, err)
		}
		if !reflect.DeepEqual(th.Cc, s.want) {
			t.Errorf("%s: Cc = %q, want %q", s.name, th.Cc, s.want)
		}
	}
	// A contact whose first email has neither Message-ID nor CC gets no
	// thread (the first reply starts one), as before.
	in := newInbound(100, "other@example.test", 1)
	in.MessageID, in.DedupeKey = "", ""
	mustRecord(t, db, in)
	if _, ok, err := db.Thread(ctx, "c", "other@example.test"); ok || err != nil {
		t.Errorf("Thread(other) = %v, %v; want none", ok, err)
	}
}

// RecordInbounds records a batch in one transaction as RecordInbound would
// one by one: a later row sees an earlier one (dedupe), and a row that
// cannot be recorded stops the batch after the rows before it, which are
// committed with the cursor at the last of them.
func TestRecordInboundsBatch(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	first := newInbound(10, "Ann@Example.org", 2)
	copyOf := newInbound(11, "ann@example.org", 1)
	copyOf.DedupeKey = first.DedupeKey
	dead := newInbound(12, "bob@example.org", 0)
	dead.State, dead.Reason = StateDead, "unparseable email"
	invalid := newInbound(13, "cid@example.org", 0) // fetched without posts
	after := newInbound(14, "dan@example.org", 1)

	results, err := db.RecordInbounds(ctx, []*Inbound{first, copyOf, dead, invalid, after})
	if err == nil || !strings.Contains(err.Error(), "uid 1/13") {
		t.Fatalf("err = %v, want the failure of uid 13", err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3 (the rows before uid 13)", len(results))
	}
	if results[0].ID == 0 || results[1].DuplicateOf != results[0].ID || results[2].ID == 0 {
		t.Errorf("results %+v: want uid 11 recorded as a duplicate of uid 10", results)
	}
	if first.State != StateFetched || copyOf.State != StateSkipped || dead.State != StateDead {
		t.Errorf("states %s, %s, %s; want fetched, skipped, dead", first.State, copyOf.State, dead.State)
	}
	if c, err := db.Cursor(ctx, "c", "INBOX"); err != nil || c.UID != 12 {
		t.Fatalf("cursor %+v, %v; want uid 12", c, err)
	}
	list, err := db.ListInbound(ctx, InboundFilter{Channel: "c"})
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, in := range list {
		uids = append(uids, in.UID)
	}
	if !slices.Equal(uids, []uint32{12, 11, 10}) {
		t.Fatalf("ledger holds uids %v, want 12, 11, 10", uids)
	}
	if th, ok, err := db.Thread(ctx, "c", "ann@example.org"); err != nil || !ok || len(th.MessageIDs) != 1 {
		t.Errorf("thread of ann: %+v, %v, %v", th, ok, err)
	}
	if raw, err := db.Inbound(ctx, results[2].ID); err != nil || len(raw.Raw) == 0 {
		t.Errorf("the dead letter keeps its raw copy: %+v, %v", raw, err)
	}

	// Handed again from uid 13 (now valid), with a repeat of uid 12.
	invalid.Posts = [][]byte{[]byte(`{"text":"hi"}`)}
	results, err = db.RecordInbounds(ctx, []*Inbound{newInbound(12, "bob@example.org", 1), invalid, after})
	if err != nil || len(results) != 3 {
		t.Fatalf("second batch: %d results, %v", len(results), err)
	}
	if !results[0].Existing || results[1].Existing || results[2].Existing {
		t.Errorf("second batch %+v: want uid 12 existing, 13 and 14 new", results)
	}
	if c, err := db.Cursor(ctx, "c", "INBOX"); err != nil || c.UID != 14 {
		t.Fatalf("cursor %+v, %v; want uid 14", c, err)
	}
	due, err := db.DuePosts(ctx, "c", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 3 { // ann (uid 10), cid (13), dan (14): one per contact
		t.Errorf("due posts %+v, want one each for ann, cid and dan", due)
	}
}

// TestInboundTextMigration takes a store back to schema version 15, where
// the email's text was a column of inbound, gives a row a text there and
// opens the store again: 016 moves the text to inbound_text, and the row
// reads as before.
func TestInboundTextMigration(t *testing.T) {
	forEachBackend(t, func(t *testing.T) {
		ctx := context.Background()
		db, _ := openTest(t)
		with, err := db.RecordInbound(ctx, newInbound(1, "ann@example.org", 1))
		if err != nil {
			t.Fatal(err)
		}
		without, err := db.RecordInbound(ctx, newInbound(2, "bob@example.org", 1))
		if err != nil {
			t.Fatal(err)
		}
		setVersion := `PRAGMA user_version = 15`
		if onPostgres(t) {
			setVersion = `UPDATE mailgate_schema SET version = 15`
		}
		for _, q := range []string{
			`DROP TABLE inbound_text`,
			`ALTER TABLE inbound ADD COLUMN full_text TEXT NOT NULL DEFAULT ''`,
			`UPDATE inbound SET full_text = 'Where is my parcel?' WHERE id = ` + strconv.FormatInt(with.ID, 10),
			setVersion,
		} {
			if _, err := db.write.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if onPostgres(t) {
			db = reopenPostgres(t, db, Options{})
		} else {
			path := db.path
			db.Close()
			if db, err = Open(ctx, path, Options{}); err != nil {
				t.Fatal(err)
			}
			defer db.Close()
		}
		for id, want := range map[int64]string{with.ID: "Where is my parcel?", without.ID: ""} {
			in, err := db.Inbound(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if in.FullText != want {
				t.Errorf("row %d: FullText = %q, want %q", id, in.FullText, want)
			}
		}
		var n int
		if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM inbound_text`).Scan(&n); err != nil || n != 1 {
			t.Errorf("inbound_text has %d rows (%v), want 1: rows without text get none", n, err)
		}
	})
}

// TestDuePostsFromRecentPosts checks that DuePosts hands out the bodies
// this process recorded without reading them back, and that they leave
// the cache when their row is finished or dead. The bodies are altered in
// the database behind the store's back, so that where a body came from
// shows.
func TestDuePostsFromRecentPosts(t *testing.T) { forEachBackend(t, testDuePostsFromRecentPosts) }

func testDuePostsFromRecentPosts(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	one := mustRecord(t, db, newInbound(1, "ann@example.org", 2))
	batch, err := db.RecordInbounds(ctx, []*Inbound{newInbound(2, "bob@example.org", 1), newInbound(3, "cy@example.org", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.write.ExecContext(ctx, `UPDATE inbound_posts SET body = `+db.d.q(`?`), []byte(`{"altered":true}`)); err != nil {
		t.Fatal(err)
	}
	bodies := func() map[int64]string {
		t.Helper()
		due, err := db.DuePosts(ctx, "c", nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		m := map[int64]string{}
		for _, d := range due {
			m[d.LedgerID] = string(d.Body)
		}
		return m
	}
	want := map[int64]string{
		one.ID:      `{"uid":1,"part":0}`,
		batch[0].ID: `{"uid":2,"part":0}`,
		batch[1].ID: `{"uid":3,"part":0}`,
	}
	if got := bodies(); !reflect.DeepEqual(got, want) {
		t.Fatalf("due bodies %v, want the recorded ones %v", got, want)
	}
	// Row one's second post is still kept; the finished row two and the
	// dead row three are not.
	if _, err := db.PostAccepted(ctx, DuePost{LedgerID: one.ID, Seq: 0, Total: 2}); err != nil {
		t.Fatal(err)
	}
	if fin, err := db.PostAccepted(ctx, DuePost{LedgerID: batch[0].ID, Seq: 0, Total: 1}); err != nil || !fin {
		t.Fatalf("PostAccepted = %v, %v", fin, err)
	}
	if err := db.MarkDead(ctx, batch[1].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Requeue(ctx, batch[1].ID); err != nil {
		t.Fatal(err)
	}
	want = map[int64]string{one.ID: `{"uid":1,"part":1}`, batch[1].ID: `{"altered":true}`}
	if got := bodies(); !reflect.DeepEqual(got, want) {
		t.Fatalf("due bodies %v, want %v", got, want)
	}
	if n := len(db.recent.m); n != 1 {
		t.Errorf("%d rows kept, want 1", n)
	}
}

// TestRecentPostsBound checks that recentPosts keeps no more than
// maxRecentPostBytes and takes rows again once there is room.
func TestRecentPostsBound(t *testing.T) {
	var r recentPosts
	big := make([]byte, maxRecentPostBytes/2)
	kept := func(id int64) bool { b, _ := r.get(id, 0); return b != nil }
	r.add(1, [][]byte{big}, 7)
	r.add(2, [][]byte{big}, 8)
	r.add(3, [][]byte{{'x'}}, 9)
	if !kept(1) || !kept(2) || kept(3) {
		t.Fatalf("kept 1:%v 2:%v 3:%v, want the first two", kept(1), kept(2), kept(3))
	}
	if _, ticket := r.get(2, 0); ticket != 8 {
		t.Errorf("row 2's ticket %d, want 8", ticket)
	}
	r.drop(1)
	r.add(3, [][]byte{{'x'}}, 9)
	if !kept(3) || r.bytes != len(big)+1 {
		t.Fatalf("after drop: row 3 kept %v, %d bytes", kept(3), r.bytes)
	}
}

// TestRecordInboundsCursor checks that a batch leaves each folder's cursor
// where recording its messages one by one leaves it, although it advances
// each cursor once: messages out of UID order, two folders, a UIDVALIDITY
// change inside the batch.
func TestRecordInboundsCursor(t *testing.T) {
	msg := func(folder string, uidvalidity, uid uint32) *Inbound {
		in := newInbound(uid, fmt.Sprintf("u%d-%d@example.org", uidvalidity, uid), 1)
		in.Folder, in.UIDValidity = folder, uidvalidity
		return in
	}
	tests := []struct {
		name  string
		batch []*Inbound
	}{
		{"in order", []*Inbound{msg("INBOX", 1, 3), msg("INBOX", 1, 4), msg("INBOX", 1, 9)}},
		{"out of order", []*Inbound{msg("INBOX", 1, 9), msg("INBOX", 1, 4)}},
		{"two folders", []*Inbound{msg("INBOX", 1, 5), msg("Support", 1, 2), msg("INBOX", 1, 6)}},
		{"new uidvalidity", []*Inbound{msg("INBOX", 1, 20), msg("INBOX", 2, 3), msg("INBOX", 2, 4)}},
		{"below the cursor", []*Inbound{msg("INBOX", 1, 1)}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			one, _ := openTest(t)
			batch, _ := openTest(t)
			for _, db := range []*DB{one, batch} {
				// A cursor from before the batch.
				mustRecord(t, db, msg("INBOX", 1, 2))
			}
			for _, in := range tt.batch {
				c := *in
				mustRecord(t, one, &c)
			}
			if _, err := batch.RecordInbounds(ctx, tt.batch); err != nil {
				t.Fatal(err)
			}
			for _, folder := range []string{"INBOX", "Support"} {
				want, err1 := one.Cursor(ctx, "c", folder)
				got, err2 := batch.Cursor(ctx, "c", folder)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if got.UIDValidity != want.UIDValidity || got.UID != want.UID {
					t.Errorf("%s: cursor %d/%d, one by one %d/%d", folder, got.UIDValidity, got.UID, want.UIDValidity, want.UID)
				}
			}
		})
	}
}

// TestRecordThreadAsBefore runs a contact's emails through recordThread on
// one store and through what RecordInbound did before it (addThreadMessage,
// then setThreadCc unless KeepCc) on another, and compares the threads and
// their messages after each step.
func TestRecordThreadAsBefore(t *testing.T) { forEachBackend(t, testRecordThreadAsBefore) }

func testRecordThreadAsBefore(t *testing.T) {
	ctx := context.Background()
	now, before := openTestPair(t)
	steps := []struct {
		name      string
		msgID     string
		newThread bool
		subject   string
		cc        []string
		keepCc    bool
	}{
		{name: "nothing at all: no thread", subject: ""},
		{name: "only a CC list: a thread without subject", cc: []string{"bob@example.org"}},
		{name: "existing thread takes the subject", msgID: "<1@x>", subject: "order"},
		{name: "subject kept, CC cleared", msgID: "<2@x>", subject: "other"},
		{name: "same Message-ID again", msgID: "<2@x>", subject: "other", cc: []string{"carol@example.org"}},
		{name: "unverified: CC kept", msgID: "<3@x>", cc: []string{"eve@example.org"}, keepCc: true},
		{name: "no Message-ID, no CC: CC cleared", subject: "order"},
		{name: "no Message-ID, no CC, kept: nothing", keepCc: true},
		{name: "new thread with CC", msgID: "<4@x>", newThread: true, subject: "new", cc: []string{"dan@example.org", "fay@example.org"}},
		{name: "new thread, unverified", msgID: "<5@x>", newThread: true, subject: "newer", cc: []string{"eve@example.org"}, keepCc: true},
		{name: "new thread without Message-ID", newThread: true, subject: "third"},
		{name: "continues without subject", msgID: "<6@x>", cc: []string{"gus@example.org"}},
	}
	for i, s := range steps {
		in := &Inbound{Channel: "c", MessageID: s.msgID, NewThread: s.newThread, ThreadSubject: s.subject, Cc: s.cc, KeepCc: s.keepCc}
		ts := int64(1_700_000_000_000 + i)
		err := now.tx(ctx, func(tx *sql.Tx) error { return now.recordThread(ctx, tx, in, "jane@example.org", ts) })
		if err != nil {
			t.Fatalf("%s: recordThread: %v", s.name, err)
		}
		err = before.tx(ctx, func(tx *sql.Tx) error {
			if in.NewThread || in.MessageID != "" || len(in.Cc) > 0 {
				if err := before.addThreadMessage(ctx, tx, "c", "jane@example.org", in.MessageID, false, in.NewThread, in.ThreadSubject, ts); err != nil {
					return err
				}
			}
			if !in.KeepCc {
				return before.setThreadCc(ctx, tx, "c", "jane@example.org", in.Cc)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: before: %v", s.name, err)
		}
		if got, want := threadDump(t, now), threadDump(t, before); got != want {
			t.Fatalf("%s: threads\n%s\nwant\n%s", s.name, got, want)
		}
	}
}

// openTestPair opens two empty stores on the backend of t.
func openTestPair(t *testing.T) (*DB, *DB) {
	a, _ := openTest(t)
	b, _ := openTest(t)
	return a, b
}

// threadDump prints every thread and thread message of db.
func threadDump(t *testing.T, db *DB) string {
	t.Helper()
	var out strings.Builder
	rows, err := db.read.QueryContext(context.Background(), db.d.q(`SELECT id, channel, contact, subject, last_customer_id, last_our_id, cc, created_at, updated_at FROM threads ORDER BY id`))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, created, updated int64
		var ch, contact, subject, last, ours, cc string
		if err := rows.Scan(&id, &ch, &contact, &subject, &last, &ours, &cc, &created, &updated); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "thread %d %s %s subject=%q last=%q ours=%q cc=%q %d %d\n", id, ch, contact, subject, last, ours, cc, created, updated)
	}
	rows.Close()
	rows, err = db.read.QueryContext(context.Background(), db.d.q(`SELECT thread_id, message_id, ours, created_at FROM thread_messages ORDER BY id`))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, ours, created int64
		var mid string
		if err := rows.Scan(&id, &mid, &ours, &created); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "message %d %s %d %d\n", id, mid, ours, created)
	}
	return out.String()
}
