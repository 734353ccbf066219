package store

import (
	"context"
	"errors"
	"fmt"
	"mailgate/internal/fakeclock"
	"reflect"
	"strings"
	"testing"
	"time"
)

// enqueueText queues one message for contact on channel "c", wanting it
// sent wait after the clock's now.
func enqueueText(t *testing.T, db *DB, clk *fakeclock.Clock, contact, ulID, text string, wait time.Duration) *OutboxItem {
	t.Helper()
	it := &OutboxItem{Channel: "c", Contact: contact, UserlikeID: ulID, Operator: "Olga", Text: text,
		SendAfter: clk.Now().Add(wait)}
	if _, dup, err := db.Enqueue(context.Background(), it); err != nil || dup {
		t.Fatalf("Enqueue(%s) = %v, %v", ulID, dup, err)
	}
	return it
}

// sendAfters returns the send_after of the items of ids.
func sendAfters(t *testing.T, db *DB, ids ...int64) []time.Time {
	t.Helper()
	var out []time.Time
	for _, id := range ids {
		it, err := db.Outbox(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, it.SendAfter)
	}
	return out
}

func TestEnqueueCoalesces(t *testing.T) { forEachBackend(t, testEnqueueCoalesces) }

func testEnqueueCoalesces(t *testing.T) {
	db, clk := openTest(t)
	start := clk.Now()
	const wait = 10 * time.Second

	a := enqueueText(t, db, clk, "a@example.org", "1", "one", wait)
	if !a.SendAfter.Equal(start.Add(wait)) {
		t.Fatalf("first SendAfter = %v, want %v", a.SendAfter, start.Add(wait))
	}
	clk.Add(4 * time.Second)
	b := enqueueText(t, db, clk, "A@example.org", "2", "two", wait)
	// Another contact is not affected, nor does it affect a's group.
	other := enqueueText(t, db, clk, "b@example.org", "x", "other", wait)
	want := start.Add(14 * time.Second)
	if got := sendAfters(t, db, a.ID, b.ID); !got[0].Equal(want) || !got[1].Equal(want) {
		t.Fatalf("after the second message: send_after %v, want both %v", got, want)
	}
	// Keep extending: the wait is capped 60s after the first message.
	for i := range 20 {
		clk.Add(5 * time.Second)
		enqueueText(t, db, clk, "a@example.org", fmt.Sprint("more-", i), "more", wait)
	}
	capAt := start.Add(OutboxCoalesceLimit)
	for i, got := range sendAfters(t, db, a.ID, b.ID) {
		if !got.Equal(capAt) {
			t.Fatalf("item %d: send_after %v, want the cap %v", i, got, capAt)
		}
	}
	if got := sendAfters(t, db, other.ID)[0]; !got.Equal(start.Add(4*time.Second + wait)) {
		t.Fatalf("other contact's send_after = %v", got)
	}
	// A duplicate changes nothing.
	clk.Add(time.Second)
	if _, dup, err := db.Enqueue(context.Background(), &OutboxItem{Channel: "c", Contact: "b@example.org",
		UserlikeID: "x", SendAfter: clk.Now().Add(time.Hour)}); err != nil || !dup {
		t.Fatalf("duplicate Enqueue = %v, %v", dup, err)
	}
	if got := sendAfters(t, db, other.ID)[0]; !got.Equal(start.Add(4*time.Second + wait)) {
		t.Fatalf("duplicate moved send_after to %v", got)
	}
	// The zero SendAfter means now.
	z := &OutboxItem{Channel: "c", Contact: "z@example.org", Text: "now"}
	if _, _, err := db.Enqueue(context.Background(), z); err != nil || !z.SendAfter.Equal(clk.Now()) {
		t.Fatalf("Enqueue(zero SendAfter) = %v, SendAfter %v, want %v", err, z.SendAfter, clk.Now())
	}
}

func TestDueOutboxGroups(t *testing.T) { forEachBackend(t, testDueOutboxGroups) }

func testDueOutboxGroups(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	start := clk.Now()
	if err := db.AddThreadMessage(ctx, "c", "a@example.org", "cust-1@example.org", false); err != nil {
		t.Fatal(err)
	}
	a1 := enqueueText(t, db, clk, "a@example.org", "a1", "one", 10*time.Second)
	clk.Add(2 * time.Second)
	b1 := enqueueText(t, db, clk, "b@example.org", "b1", "bee", 30*time.Second)
	enqueueText(t, db, clk, "a@example.org", "a2", "two", 10*time.Second)
	a3 := enqueueText(t, db, clk, "a@example.org", "a3", "three", 10*time.Second)
	if _, _, err := db.CancelOutbox(ctx, "c", "a2"); err != nil {
		t.Fatal(err)
	}

	due, err := db.DueOutbox(ctx, start.Add(11*time.Second))
	if err != nil || len(due) != 0 {
		t.Fatalf("DueOutbox before the wait = %+v, %v", due, err)
	}
	due, err = db.DueOutbox(ctx, start.Add(12*time.Second))
	if err != nil || len(due) != 1 {
		t.Fatalf("DueOutbox = %+v, %v; want one batch", due, err)
	}
	b := due[0]
	if b.Channel != "c" || b.Contact != "a@example.org" || !reflect.DeepEqual(b.IDs(), []int64{a1.ID, a3.ID}) {
		t.Fatalf("batch = %s %s %v", b.Channel, b.Contact, b.IDs())
	}
	if b.Thread == nil || !reflect.DeepEqual(b.Thread.MessageIDs, []string{"cust-1@example.org"}) ||
		len(b.Thread.Messages) != 1 || b.Thread.Messages[0].Ours || b.Thread.CreatedAt.IsZero() {
		t.Fatalf("batch thread = %+v", b.Thread)
	}
	if b.Items[1].Text != "three" || b.Items[0].Operator != "Olga" {
		t.Fatalf("batch items = %+v %+v", b.Items[0], b.Items[1])
	}

	// While a is being sent, its new messages wait.
	moved, err := db.MarkOutboxSending(ctx, b.IDs(), "m1@mailgate.test")
	if err != nil || !reflect.DeepEqual(moved, b.IDs()) {
		t.Fatalf("MarkOutboxSending = %v, %v", moved, err)
	}
	clk.Add(time.Second)
	a4 := enqueueText(t, db, clk, "a@example.org", "a4", "four", 0)
	due, err = db.DueOutbox(ctx, start.Add(time.Hour))
	if err != nil || len(due) != 1 || due[0].Contact != "b@example.org" || !reflect.DeepEqual(due[0].IDs(), []int64{b1.ID}) {
		t.Fatalf("DueOutbox while a is sending = %+v, %v", due, err)
	}
	if due[0].Thread != nil {
		t.Fatalf("b has no thread, got %+v", due[0].Thread)
	}

	// A retry holds back what came later: a's group is due when all are.
	retryAt := start.Add(5 * time.Minute)
	if err := db.MarkOutboxRetry(ctx, b.IDs(), retryAt, "451 try later"); err != nil {
		t.Fatal(err)
	}
	due, _ = db.DueOutbox(ctx, start.Add(time.Minute))
	for _, d := range due {
		if d.Contact == "a@example.org" {
			t.Fatalf("a due before its retry: %v", d.IDs())
		}
	}
	due, _ = db.DueOutbox(ctx, retryAt)
	var got []int64
	for _, d := range due {
		if d.Contact == "a@example.org" {
			got = d.IDs()
			if d.Items[0].Attempts != 1 || d.Items[0].LastError != "451 try later" || d.Items[0].MessageID != "m1@mailgate.test" {
				t.Fatalf("retried item = %+v", d.Items[0])
			}
		}
	}
	if !reflect.DeepEqual(got, []int64{a1.ID, a3.ID, a4.ID}) {
		t.Fatalf("a's batch after the retry = %v", got)
	}
}

func TestNextOutboxDue(t *testing.T) { forEachBackend(t, testNextOutboxDue) }

func testNextOutboxDue(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	if _, ok, err := db.NextOutboxDue(ctx); ok || err != nil {
		t.Fatalf("NextOutboxDue(empty) = %v, %v", ok, err)
	}
	start := clk.Now()
	a := enqueueText(t, db, clk, "a@example.org", "a1", "one", 20*time.Second)
	enqueueText(t, db, clk, "b@example.org", "b1", "one", 30*time.Second)
	if next, ok, err := db.NextOutboxDue(ctx); !ok || err != nil || !next.Equal(start.Add(20*time.Second)) {
		t.Fatalf("NextOutboxDue = %v, %v, %v", next, ok, err)
	}
	// A group being sent is not waited for.
	if _, err := db.MarkOutboxSending(ctx, []int64{a.ID}, "m@x"); err != nil {
		t.Fatal(err)
	}
	if next, ok, err := db.NextOutboxDue(ctx); !ok || err != nil || !next.Equal(start.Add(30*time.Second)) {
		t.Fatalf("NextOutboxDue while a is sending = %v, %v, %v", next, ok, err)
	}
}

func TestOutboxLifecycle(t *testing.T) { forEachBackend(t, testOutboxLifecycle) }

func testOutboxLifecycle(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	a1 := enqueueText(t, db, clk, "a@example.org", "a1", "one", 0)
	a2 := enqueueText(t, db, clk, "a@example.org", "a2", "two", 0)
	ids := []int64{a1.ID, a2.ID}

	// Cancelled between DueOutbox and MarkOutboxSending: not moved.
	if _, _, err := db.CancelOutbox(ctx, "c", "a2"); err != nil {
		t.Fatal(err)
	}
	moved, err := db.MarkOutboxSending(ctx, ids, "m1@mailgate.test")
	if err != nil || !reflect.DeepEqual(moved, []int64{a1.ID}) {
		t.Fatalf("MarkOutboxSending = %v, %v", moved, err)
	}
	if _, _, err := db.CancelOutbox(ctx, "c", "a1"); err != nil {
		t.Fatal(err)
	}
	if it, _ := db.Outbox(ctx, a1.ID); it.State != OutboxSending || it.Attempts != 1 {
		t.Fatalf("a sending item was cancelled: %+v", it)
	}
	if err := db.MarkOutboxSent(ctx, moved, "m1@mailgate.test"); err != nil {
		t.Fatal(err)
	}
	th, ok, err := db.Thread(ctx, "c", "a@example.org")
	if err != nil || !ok || th.LastOurID != "m1@mailgate.test" || len(th.Messages) != 1 || !th.Messages[0].Ours {
		t.Fatalf("thread after sent = %+v, %v, %v", th, ok, err)
	}
	// Sent twice is a state error.
	var se *StateError
	if err := db.MarkOutboxSent(ctx, moved, "m1@mailgate.test"); !errors.As(err, &se) || se.State != OutboxSent {
		t.Fatalf("MarkOutboxSent again = %v", err)
	}
	if err := db.MarkOutboxSent(ctx, []int64{999}, "x@y"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkOutboxSent(unknown) = %v", err)
	}

	// A bounce finds the item by Message-ID, with or without brackets.
	for _, id := range []string{"m1@mailgate.test", "<m1@mailgate.test>"} {
		items, err := db.OutboxByMessageID(ctx, id)
		if err != nil || len(items) != 1 || items[0].ID != a1.ID || items[0].State != OutboxSent {
			t.Fatalf("OutboxByMessageID(%s) = %+v, %v", id, items, err)
		}
	}
	if items, err := db.OutboxByMessageID(ctx, "nope@x"); err != nil || len(items) != 0 {
		t.Fatalf("OutboxByMessageID(unknown) = %v, %v", items, err)
	}
	if items, err := db.OutboxByMessageID(ctx, ""); err != nil || len(items) != 0 {
		t.Fatalf("OutboxByMessageID(empty) = %v, %v", items, err)
	}
	if err := db.MarkOutboxFailed(ctx, []int64{a1.ID, a2.ID}, "550 5.1.1 user unknown"); err != nil {
		t.Fatal(err)
	}
	if it, _ := db.Outbox(ctx, a1.ID); it.State != OutboxFailed || it.LastError != "550 5.1.1 user unknown" {
		t.Fatalf("bounced item = %+v", it)
	}
	if it, _ := db.Outbox(ctx, a2.ID); it.State != OutboxCancelled {
		t.Fatalf("MarkOutboxFailed changed a cancelled item: %+v", it)
	}
	if c, _ := db.OutboxCounts(ctx, "c"); !reflect.DeepEqual(c, map[string]int{"failed": 1, "cancelled": 1}) {
		t.Fatalf("OutboxCounts = %v", c)
	}
}

func TestMarkOutboxSentAll(t *testing.T) { forEachBackend(t, testMarkOutboxSentAll) }

// MarkOutboxSentAll records several emails in one transaction, all or
// none.
func testMarkOutboxSentAll(t *testing.T) {
	tests := []struct {
		name string
		// sentBefore records the second email alone before the call,
		// so that its item is no longer sending.
		sentBefore bool
		wantErr    bool
	}{
		{name: "all sending"},
		{name: "one already sent", sentBefore: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, clk := openTest(t)
			ctx := context.Background()
			var emails []SentEmail
			for i, contact := range []string{"a@example.org", "b@example.org", "c@example.org"} {
				it := enqueueText(t, db, clk, contact, fmt.Sprint("u", i), "hello", 0)
				mid := fmt.Sprintf("m%d@mailgate.test", i)
				moved, err := db.MarkOutboxSending(ctx, []int64{it.ID}, mid)
				if err != nil || len(moved) != 1 {
					t.Fatalf("MarkOutboxSending = %v, %v", moved, err)
				}
				emails = append(emails, SentEmail{IDs: moved, MessageID: mid})
			}
			if tt.sentBefore {
				if err := db.MarkOutboxSent(ctx, emails[1].IDs, emails[1].MessageID); err != nil {
					t.Fatal(err)
				}
			}
			err := db.MarkOutboxSentAll(ctx, emails)
			var se *StateError
			if tt.wantErr {
				if !errors.As(err, &se) || se.ID != emails[1].IDs[0] || se.State != OutboxSent {
					t.Fatalf("MarkOutboxSentAll = %v, want a StateError of #%d", err, emails[1].IDs[0])
				}
			} else if err != nil {
				t.Fatalf("MarkOutboxSentAll = %v", err)
			}
			for i, e := range emails {
				it, err := db.Outbox(ctx, e.IDs[0])
				if err != nil {
					t.Fatal(err)
				}
				want := OutboxSent
				if tt.wantErr && i != 1 {
					want = OutboxSending // none of the group is recorded
				}
				if it.State != want {
					t.Errorf("email %d: state %s, want %s", i, it.State, want)
				}
				th, ok, err := db.Thread(ctx, "c", it.Contact)
				switch {
				case err != nil:
					t.Fatal(err)
				case want == OutboxSent && (!ok || th.LastOurID != e.MessageID):
					t.Errorf("email %d: thread %+v, want its Message-ID as ours", i, th)
				case want == OutboxSending && ok && th.LastOurID != "":
					t.Errorf("email %d: thread %+v has our Message-ID though the email is not recorded", i, th)
				}
			}
		})
	}
}

func TestMarkOutboxSentAllLikeOneByOne(t *testing.T) {
	forEachBackend(t, testMarkOutboxSentAllLikeOneByOne)
}

// MarkOutboxSentAll leaves the outbox and the threads as recording its
// emails one by one with MarkOutboxSent does: its batch statements in the
// usual case, and the fallback when an item is not as that case expects.
func testMarkOutboxSentAllLikeOneByOne(t *testing.T) {
	// An email is a contact and its items' texts; sendingAs, when set, is
	// the Message-ID its items are marked sending under instead of the
	// one they are recorded sent with.
	type email struct {
		contact   string
		items     int
		sendingAs string
	}
	tests := []struct {
		name string
		// threads are contacts whose thread exists before the call;
		// twice, the contact has an earlier thread too.
		threads, twice []string
		emails         []email
	}{
		{name: "contacts with threads", threads: []string{"a@example.org", "b@example.org"},
			emails: []email{{contact: "a@example.org", items: 1}, {contact: "b@example.org", items: 1}}},
		{name: "a contact without a thread", threads: []string{"a@example.org"},
			emails: []email{{contact: "a@example.org", items: 1}, {contact: "new@example.org", items: 1}, {contact: "new2@example.org", items: 2}}},
		{name: "two emails of one contact between others", threads: []string{"b@example.org"},
			emails: []email{{contact: "a@example.org", items: 1}, {contact: "b@example.org", items: 1}, {contact: "a@example.org", items: 3}}},
		{name: "an earlier and a current thread", threads: []string{"a@example.org"}, twice: []string{"a@example.org"},
			emails: []email{{contact: "a@example.org", items: 2}, {contact: "c@example.org", items: 1}}},
		{name: "items sending under another Message-ID", threads: []string{"a@example.org"},
			emails: []email{{contact: "a@example.org", items: 1}, {contact: "b@example.org", items: 2, sendingAs: "earlier@mailgate.test"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			var dumps [2]string
			for side := range 2 {
				db, clk := openTest(t)
				for _, c := range tt.twice {
					if err := db.AddThreadMessage(ctx, "c", c, "old-"+c, false); err != nil {
						t.Fatal(err)
					}
					if _, err := db.exec(ctx, `INSERT INTO threads (channel, contact, subject, created_at, updated_at)
						VALUES ('c', ?, 'Current', 0, 0)`, c); err != nil {
						t.Fatal(err)
					}
				}
				for _, c := range tt.threads {
					if err := db.AddThreadMessage(ctx, "c", c, "customer-"+c, false); err != nil {
						t.Fatal(err)
					}
				}
				var emails []SentEmail
				for i, e := range tt.emails {
					var ids []int64
					for n := range e.items {
						ids = append(ids, enqueueText(t, db, clk, e.contact, fmt.Sprintf("u%d-%d", i, n), "hello", 0).ID)
					}
					mid := fmt.Sprintf("m%d@mailgate.test", i)
					as := mid
					if e.sendingAs != "" {
						as = e.sendingAs
					}
					if moved, err := db.MarkOutboxSending(ctx, ids, as); err != nil || len(moved) != len(ids) {
						t.Fatalf("MarkOutboxSending = %v, %v", moved, err)
					}
					emails = append(emails, SentEmail{IDs: ids, MessageID: mid})
				}
				clk.Add(time.Second)
				if side == 0 {
					if err := db.MarkOutboxSentAll(ctx, emails); err != nil {
						t.Fatalf("MarkOutboxSentAll = %v", err)
					}
				} else {
					for _, e := range emails {
						if err := db.MarkOutboxSent(ctx, e.IDs, e.MessageID); err != nil {
							t.Fatalf("MarkOutboxSent = %v", err)
						}
					}
				}
				dumps[side] = threadDump(t, db) + outboxDump(t, db)
			}
			if dumps[0] != dumps[1] {
				t.Errorf("MarkOutboxSentAll left\n%s\none by one:\n%s", dumps[0], dumps[1])
			}
		})
	}
}

// outboxDump prints what recording changes of every outbox item of db.
func outboxDump(t *testing.T, db *DB) string {
	t.Helper()
	rows, err := db.read.QueryContext(context.Background(), `SELECT id, contact, state, message_id, last_error, updated_at FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out strings.Builder
	for rows.Next() {
		var id, updated int64
		var contact, state, mid, lastErr string
		if err := rows.Scan(&id, &contact, &state, &mid, &lastErr, &updated); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "item %d %s %s %s %q %d\n", id, contact, state, mid, lastErr, updated)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestMarkOutboxSentMessageID(t *testing.T) { forEachBackend(t, testMarkOutboxSentMessageID) }

// MarkOutboxSent records the Message-ID it is given, whether the items
// were marked sending under it or under another one.
func testMarkOutboxSentMessageID(t *testing.T) {
	tests := []struct{ name, sending, sent string }{
		{"same id", "m1@mailgate.test", "m1@mailgate.test"},
		{"another id", "m1@mailgate.test", "m2@mailgate.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, clk := openTest(t)
			ctx := context.Background()
			a1 := enqueueText(t, db, clk, "a@example.org", "a1", "one", 0)
			a2 := enqueueText(t, db, clk, "a@example.org", "a2", "two", 0)
			ids := []int64{a1.ID, a2.ID}
			if moved, err := db.MarkOutboxSending(ctx, ids, tt.sending); err != nil || len(moved) != 2 {
				t.Fatalf("MarkOutboxSending = %v, %v", moved, err)
			}
			if err := db.MarkOutboxSent(ctx, ids, tt.sent); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if it, _ := db.Outbox(ctx, id); it.State != OutboxSent || it.MessageID != tt.sent {
					t.Errorf("item %d = %s under %s, want sent under %s", id, it.State, it.MessageID, tt.sent)
				}
			}
			if items, err := db.OutboxByMessageID(ctx, tt.sent); err != nil || len(items) != 2 {
				t.Errorf("OutboxByMessageID(%s) = %d items, %v; want 2", tt.sent, len(items), err)
			}
		})
	}
}

func TestMarkOutboxSendingAll(t *testing.T) { forEachBackend(t, testMarkOutboxSendingAll) }

// MarkOutboxSendingAll claims several emails in one transaction, as
// MarkOutboxSending and EnsureThread would one by one.
func testMarkOutboxSendingAll(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	// a: new contact, two items; b: one of two items cancelled; c: its only
	// item cancelled; d: has a thread with a subject already.
	a1 := enqueueText(t, db, clk, "a@example.org", "a1", "one", 0)
	a2 := enqueueText(t, db, clk, "a@example.org", "a2", "two", 0)
	b1 := enqueueText(t, db, clk, "b@example.org", "b1", "one", 0)
	b2 := enqueueText(t, db, clk, "b@example.org", "b2", "two", 0)
	c1 := enqueueText(t, db, clk, "c@example.org", "c1", "one", 0)
	d1 := enqueueText(t, db, clk, "d@example.org", "d1", "one", 0)
	for _, ul := range []string{"b2", "c1"} {
		if _, _, err := db.CancelOutbox(ctx, "c", ul); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.EnsureThread(ctx, "c", "d@example.org", "Earlier"); err != nil {
		t.Fatal(err)
	}
	claims := []*OutboxClaim{
		{IDs: []int64{a1.ID, a2.ID}, MessageID: "a@mailgate.test", Channel: "c", Contact: "A@example.org", Subject: "Your question"},
		{IDs: []int64{b1.ID, b2.ID}, MessageID: "b@mailgate.test", Channel: "c", Contact: "b@example.org", Subject: "Your question"},
		{IDs: []int64{c1.ID}, MessageID: "c@mailgate.test", Channel: "c", Contact: "c@example.org", Subject: "Your question"},
		{IDs: []int64{d1.ID}, MessageID: "d@mailgate.test", Channel: "c", Contact: "d@example.org"},
	}
	if err := db.MarkOutboxSendingAll(ctx, claims); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		claim     *OutboxClaim
		moved     []int64
		subject   string // of the thread the claim returns; "" for none
		threadNow string // subject of the contact's thread in the store; "" for none
	}{
		{name: "new contact", claim: claims[0], moved: []int64{a1.ID, a2.ID}, subject: "Your question", threadNow: "Your question"},
		{name: "one item cancelled", claim: claims[1], moved: []int64{b1.ID}, subject: "Your question", threadNow: "Your question"},
		{name: "all cancelled: no thread", claim: claims[2]},
		{name: "thread kept", claim: claims[3], moved: []int64{d1.ID}, threadNow: "Earlier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.claim
			if !reflect.DeepEqual(c.Moved, tt.moved) && (len(c.Moved) != 0 || len(tt.moved) != 0) {
				t.Errorf("Moved = %v, want %v", c.Moved, tt.moved)
			}
			switch {
			case tt.subject == "" && c.Thread != nil:
				t.Errorf("Thread = %+v, want none", c.Thread)
			case tt.subject != "" && (c.Thread == nil || c.Thread.Subject != tt.subject || len(c.Thread.Messages) != 0):
				t.Errorf("Thread = %+v, want a new one with subject %q", c.Thread, tt.subject)
			}
			for _, id := range tt.moved {
				if it, _ := db.Outbox(ctx, id); it.State != OutboxSending || it.MessageID != c.MessageID || it.Attempts != 1 {
					t.Errorf("item %d = %+v, want sending under %s", id, it, c.MessageID)
				}
			}
			th, ok, err := db.Thread(ctx, "c", c.Contact)
			switch {
			case err != nil:
				t.Fatal(err)
			case tt.threadNow == "" && ok:
				t.Errorf("the store has thread %+v, want none", th)
			case tt.threadNow != "" && (!ok || th.Subject != tt.threadNow):
				t.Errorf("the store has thread %+v, %v, want subject %q", th, ok, tt.threadNow)
			}
		})
	}
	// A claim that cannot be made fails the call, and nothing is claimed.
	e1 := enqueueText(t, db, clk, "e@example.org", "e1", "one", 0)
	bad := []*OutboxClaim{
		{IDs: []int64{e1.ID}, MessageID: "e@mailgate.test", Channel: "c", Contact: "e@example.org", Subject: "Hi"},
		{IDs: []int64{e1.ID}, MessageID: "x@mailgate.test", Contact: "e@example.org", Subject: "Hi"},
	}
	if err := db.MarkOutboxSendingAll(ctx, bad); err == nil {
		t.Fatal("MarkOutboxSendingAll of a claim without channel succeeded")
	}
	if it, _ := db.Outbox(ctx, e1.ID); it.State != OutboxQueued {
		t.Errorf("after a failed call the item is %s, want queued", it.State)
	}
}

func TestRequeueSending(t *testing.T) { forEachBackend(t, testRequeueSending) }

func testRequeueSending(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	a := enqueueText(t, db, clk, "a@example.org", "a1", "one", 0)
	b := enqueueText(t, db, clk, "b@example.org", "b1", "one", time.Hour)
	if _, err := db.MarkOutboxSending(ctx, []int64{a.ID}, "m1@mailgate.test"); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if onPostgres(t) {
		// The process that claimed the item is gone; on PostgreSQL,
		// where instances share the outbox, only that frees it.
		db = reopenPostgres(t, db, Options{Now: clk.Now})
	}
	n, err := db.RequeueSending(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RequeueSending = %d, %v", n, err)
	}
	it, _ := db.Outbox(ctx, a.ID)
	if it.State != OutboxQueued || !it.SendAfter.Equal(clk.Now()) || it.MessageID != "m1@mailgate.test" || it.Attempts != 1 {
		t.Fatalf("requeued item = %+v", it)
	}
	if it, _ := db.Outbox(ctx, b.ID); it.State != OutboxQueued || it.Attempts != 0 {
		t.Fatalf("queued item changed: %+v", it)
	}
	if n, err := db.RequeueSending(ctx); err != nil || n != 0 {
		t.Fatalf("RequeueSending again = %d, %v", n, err)
	}
}

func TestEnsureThread(t *testing.T) { forEachBackend(t, testEnsureThread) }

func testEnsureThread(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	th, err := db.EnsureThread(ctx, "c", "A@example.org", "Your message to Support")
	if err != nil || th.Subject != "Your message to Support" || th.Contact != "a@example.org" || len(th.Messages) != 0 {
		t.Fatalf("EnsureThread(new) = %+v, %v", th, err)
	}
	// The subject is kept; a second call does not start another thread.
	th2, err := db.EnsureThread(ctx, "c", "a@example.org", "Other")
	if err != nil || th2.Subject != "Your message to Support" || !th2.CreatedAt.Equal(th.CreatedAt) {
		t.Fatalf("EnsureThread(again) = %+v, %v", th2, err)
	}
	// A thread without subject takes one.
	if err := db.AddThreadMessage(ctx, "c", "b@example.org", "x@y", false); err != nil {
		t.Fatal(err)
	}
	th3, err := db.EnsureThread(ctx, "c", "b@example.org", "Hello")
	if err != nil || th3.Subject != "Hello" || !reflect.DeepEqual(th3.MessageIDs, []string{"x@y"}) {
		t.Fatalf("EnsureThread(no subject) = %+v, %v", th3, err)
	}
	if _, err := db.EnsureThread(ctx, "", "b@example.org", "x"); err == nil {
		t.Fatal("EnsureThread without channel accepted")
	}
}

func TestOutboxQueryPlans(t *testing.T) {
	db, _ := openTest(t)
	for _, c := range []struct {
		query string
		args  []any
		index string
	}{
		{qQueuedBySendAfter, []any{0}, "outbox_queued"},
		{qGroup, []any{"c", "a"}, "outbox_pending"},
		{qPendingItems, []any{"c", "a"}, "outbox_pending"},
		{`SELECT id FROM outbox WHERE message_id = ? AND message_id != ''`, []any{"x"}, "outbox_message_id"},
	} {
		rows, err := db.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+c.query, c.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if all := strings.Join(plan, "\n"); !strings.Contains(all, c.index) {
			t.Errorf("plan does not use %s:\n%s", c.index, all)
		}
	}
}

func TestCancelWhileSendingIsNotRetried(t *testing.T) {
	forEachBackend(t, testCancelWhileSendingIsNotRetried)
}

func testCancelWhileSendingIsNotRetried(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	a := enqueueText(t, db, clk, "jane@example.com", "id:a", "first", 0)
	b := enqueueText(t, db, clk, "bob@example.com", "id:b", "second", 0)
	for _, it := range []*OutboxItem{a, b} {
		if _, err := db.MarkOutboxSending(ctx, []int64{it.ID}, "m-"+it.UserlikeID+"@x"); err != nil {
			t.Fatal(err)
		}
	}
	for _, it := range []*OutboxItem{a, b} {
		cancelled, state, err := db.CancelOutbox(ctx, "c", it.UserlikeID)
		if err != nil || cancelled || state != OutboxSending {
			t.Fatalf("cancel while sending: %v %q %v", cancelled, state, err)
		}
	}
	// a's attempt fails temporarily; b's process dies mid-send.
	if err := db.MarkOutboxRetry(ctx, []int64{a.ID}, clk.Now(), "451 try later"); err != nil {
		t.Fatal(err)
	}
	if onPostgres(t) {
		db = reopenPostgres(t, db, Options{Now: clk.Now})
	}
	if _, err := db.RequeueSending(ctx); err != nil {
		t.Fatal(err)
	}
	for _, it := range []*OutboxItem{a, b} {
		got, err := db.Outbox(ctx, it.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != OutboxCancelled {
			t.Errorf("%s: state %s, want cancelled", it.UserlikeID, got.State)
		}
	}
	clk.Add(time.Hour)
	if due, err := db.DueOutbox(ctx, clk.Now()); err != nil || len(due) != 0 {
		t.Errorf("due after cancel: %v %v", due, err)
	}
}

func TestDeferOutbox(t *testing.T) { forEachBackend(t, testDeferOutbox) }

func testDeferOutbox(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	a := enqueueText(t, db, clk, "jane@example.com", "id:a", "first", 0)
	if err := db.DeferOutbox(ctx, []int64{a.ID}, clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.DueOutbox(ctx, clk.Now()); len(due) != 0 {
		t.Errorf("deferred item due at once")
	}
	clk.Add(2 * time.Minute)
	if due, _ := db.DueOutbox(ctx, clk.Now()); len(due) != 1 {
		t.Errorf("deferred item not due after the wait")
	}
	got, _ := db.Outbox(ctx, a.ID)
	if got.Attempts != 0 || got.State != OutboxQueued {
		t.Errorf("after defer: %+v", got)
	}
}

// TestOutboxDueMixedSendAfter checks DueOutbox and NextOutboxDue when the
// items of one group are due at different times (as after a retry): a
// group is due at its last item, whatever its first one says.
func TestOutboxDueMixedSendAfter(t *testing.T) { forEachBackend(t, testOutboxDueMixedSendAfter) }

func testOutboxDueMixedSendAfter(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	start := clk.Now()
	a1 := enqueueText(t, db, clk, "a@example.org", "a1", "one", 10*time.Second)
	a2 := enqueueText(t, db, clk, "a@example.org", "a2", "two", 10*time.Second)
	b1 := enqueueText(t, db, clk, "b@example.org", "b1", "one", 30*time.Second)
	set := func(id int64, d time.Duration) {
		t.Helper()
		if _, err := db.writeExec(ctx, `UPDATE outbox SET send_after = ? WHERE id = ?`, ms(start.Add(d)), id); err != nil {
			t.Fatal(err)
		}
	}
	set(a1.ID, 10*time.Second)
	set(a2.ID, 50*time.Second)
	if next, ok, err := db.NextOutboxDue(ctx); !ok || err != nil || !next.Equal(start.Add(30*time.Second)) {
		t.Fatalf("NextOutboxDue = %v, %v, %v; want b's 30s", next, ok, err)
	}
	for _, c := range []struct {
		at   time.Duration
		want []string
	}{
		{20 * time.Second, nil}, // a1 is due, a2 is not: a waits
		{30 * time.Second, []string{"b@example.org"}},
		{50 * time.Second, []string{"a@example.org", "b@example.org"}}, // a's oldest id first
	} {
		batches, err := db.DueOutbox(ctx, start.Add(c.at))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range batches {
			got = append(got, b.Contact)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("DueOutbox at +%v = %v, want %v", c.at, got, c.want)
		}
	}
	_ = b1
}

// BenchmarkMarkOutboxSentAll records accepted replies to new contacts
// four at a time, as the outbox worker does during a burst; it reports the
// time per reply.
//
//	go test ./store -run '^$' -bench MarkOutboxSentAll/sqlite -benchtime 800x
func BenchmarkMarkOutboxSentAll(b *testing.B) {
	b.Run(DriverSQLite, func(b *testing.B) {
		db, clk := openTest(b)
		ctx := context.Background()
		claims := make([]*OutboxClaim, b.N)
		for i := range b.N {
			it := &OutboxItem{Channel: "c", Contact: fmt.Sprintf("c%d@example.org", i), UserlikeID: fmt.Sprint(i),
				Text: "hello", SendAfter: clk.Now()}
			if _, _, err := db.Enqueue(ctx, it); err != nil {
				b.Fatal(err)
			}
			claims[i] = &OutboxClaim{IDs: []int64{it.ID}, MessageID: fmt.Sprintf("m%d@mailgate.test", i),
				Channel: "c", Contact: it.Contact, Subject: "Hello"}
		}
		for i := 0; i < len(claims); i += 32 {
			if err := db.MarkOutboxSendingAll(ctx, claims[i:min(i+32, len(claims))]); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i += 4 {
			var emails []SentEmail
			for _, c := range claims[i:min(i+4, b.N)] {
				emails = append(emails, SentEmail{IDs: c.Moved, MessageID: c.MessageID})
			}
			if err := db.MarkOutboxSentAll(ctx, emails); err != nil {
				b.Fatal(err)
			}
		}
	})
}
