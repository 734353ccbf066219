package outbound

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"mailgate/mailtext"
	"reflect"
	"testing"
	"time"

	"mailgate/store"
)

// recordCustomerMail records an email of contact as the inbound side does,
// so that its Message-ID joins the contact's thread.
func recordCustomerMail(t *testing.T, db *store.DB, uid uint32, contact, messageID, subject string) {
	t.Helper()
	_, err := db.RecordInbound(context.Background(), &store.Inbound{
		Channel: "support", Folder: "INBOX", UIDValidity: 1, UID: uid,
		DedupeKey: "mid:" + messageID, MessageID: messageID, Contact: contact, Subject: subject,
		ThreadSubject: mailtext.NormalizeSubject(subject), Posts: [][]byte{[]byte(`{"text":"x"}`)},
		ArrivedAt: time.Unix(1_700_000_000+int64(uid), 0),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// markSent records our reply messageID as sent to contact.
func markSent(t *testing.T, db *store.DB, contact, messageID string) {
	t.Helper()
	ctx := context.Background()
	id, _, err := db.Enqueue(ctx, &store.OutboxItem{Channel: "support", Contact: contact, Text: "reply"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.MarkOutboxSending(ctx, []int64{id}, messageID); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkOutboxSent(ctx, []int64{id}, messageID); err != nil {
		t.Fatal(err)
	}
}

func currentThread(t *testing.T, db *store.DB, contact string) *store.Thread {
	t.Helper()
	th, ok, err := db.Thread(context.Background(), "support", contact)
	if err != nil || !ok {
		t.Fatalf("Thread(%s) = %v, %v", contact, ok, err)
	}
	return th
}

func TestReplyHeadersExchange(t *testing.T) {
	clk := time.Unix(1_700_000_000, 0)
	db := openOutboxStore(t, func() time.Time { return clk })
	const jane = "jane@example.com"

	// 1. Jane writes; our first reply answers it.
	recordCustomerMail(t, db, 1, jane, "c1@mail.example.com", "Fwd: Re: Order 1234")
	h1 := ReplyHeaders(currentThread(t, db, jane), ReplyThreadOptions{MessageID: "<o1@mailgate.test>", NewSubject: "unused", Written: clk})
	want1 := ThreadHeaders{MessageID: "o1@mailgate.test", InReplyTo: "c1@mail.example.com",
		References: []string{"c1@mail.example.com"}, Subject: "Re: Order 1234", ThreadTopic: "Order 1234"}
	idx1 := h1.ThreadIndex
	h1.ThreadIndex = ""
	if !reflect.DeepEqual(h1, want1) {
		t.Fatalf("first reply:\n got %+v\nwant %+v", h1, want1)
	}
	raw1, err := base64.StdEncoding.DecodeString(idx1)
	if err != nil || len(raw1) != 22 {
		t.Fatalf("first Thread-Index %q: %d bytes, %v", idx1, len(raw1), err)
	}
	markSent(t, db, jane, h1.MessageID)

	// 2. Jane answers ("Re: Re: ..."); our second reply follows it.
	clk = clk.Add(time.Hour)
	recordCustomerMail(t, db, 2, jane, "c2@mail.example.com", "Re: Re: Order 1234")
	h2 := ReplyHeaders(currentThread(t, db, jane), ReplyThreadOptions{MessageID: "o2@mailgate.test", Written: clk})
	if h2.InReplyTo != "c2@mail.example.com" || h2.Subject != "Re: Order 1234" ||
		!reflect.DeepEqual(h2.References, []string{"c1@mail.example.com", "o1@mailgate.test", "c2@mail.example.com"}) {
		t.Fatalf("second reply: %+v", h2)
	}
	raw2, _ := base64.StdEncoding.DecodeString(h2.ThreadIndex)
	if len(raw2) != 27 || !bytes.Equal(raw2[:22], raw1) {
		t.Fatalf("second Thread-Index %x does not extend the first %x", raw2, raw1)
	}
	markSent(t, db, jane, h2.MessageID)

	// 3. An operator follow-up without a customer message in between: it
	// still answers Jane's latest message and extends the index again.
	clk = clk.Add(time.Hour)
	h3 := ReplyHeaders(currentThread(t, db, jane), ReplyThreadOptions{MessageID: "o3@mailgate.test", Written: clk})
	raw3, _ := base64.StdEncoding.DecodeString(h3.ThreadIndex)
	if h3.InReplyTo != "c2@mail.example.com" || len(h3.References) != 4 || h3.References[3] != "o2@mailgate.test" ||
		len(raw3) != 32 || !bytes.Equal(raw3[:27], raw2) {
		t.Fatalf("third reply: %+v, index %x", h3, raw3)
	}
	// The same thread always gives the same index (a retry renders alike).
	if again := ReplyHeaders(currentThread(t, db, jane), ReplyThreadOptions{MessageID: "o3@mailgate.test", Written: clk}); again.ThreadIndex != h3.ThreadIndex {
		t.Fatalf("Thread-Index not deterministic: %s vs %s", again.ThreadIndex, h3.ThreadIndex)
	}
}

func TestReplyHeadersNewThread(t *testing.T) {
	written := time.Unix(1_700_000_000, 0)
	h := ReplyHeaders(nil, ReplyThreadOptions{MessageID: "n1@mailgate.test", NewSubject: DefaultNewSubject(" ACME \n Support "), Written: written})
	if h.Subject != "Your message to ACME Support" || h.InReplyTo != "" || len(h.References) != 0 || h.ThreadTopic != "Your message to ACME Support" {
		t.Fatalf("new thread: %+v", h)
	}
	raw, _ := base64.StdEncoding.DecodeString(h.ThreadIndex)
	if len(raw) != 22 || !bytes.Equal(raw, threadIndex(written, "n1@mailgate.test", nil)) {
		t.Fatalf("new thread index %x", raw)
	}
	// A thread that has only a subject (EnsureThread) uses it.
	h = ReplyHeaders(&store.Thread{Subject: "Your message to Support"}, ReplyThreadOptions{MessageID: "n2@x", NewSubject: "other"})
	if h.Subject != "Re: Your message to Support" {
		t.Fatalf("subject-only thread: %+v", h)
	}
	// A thread just started for this reply: its subject as is.
	h = ReplyHeaders(&store.Thread{Subject: "Your message to Support"}, ReplyThreadOptions{MessageID: "n3@x", Opens: true})
	if h.Subject != "Your message to Support" || h.ThreadTopic != "Your message to Support" {
		t.Fatalf("opening reply: %+v", h)
	}
	if got := DefaultNewSubject(""); got != "Your message" {
		t.Fatalf("DefaultNewSubject(\"\") = %q", got)
	}
}

func TestCapReferences(t *testing.T) {
	var ids []string
	for i := range 30 {
		ids = append(ids, fmt.Sprintf("m%d@x", i))
	}
	got := capReferences(ids, MaxReferences)
	if len(got) != MaxReferences || got[0] != "m0@x" || got[1] != "m11@x" || got[19] != "m29@x" {
		t.Fatalf("capReferences = %v", got)
	}
	if got := capReferences(ids[:5], MaxReferences); !reflect.DeepEqual(got, ids[:5]) {
		t.Fatalf("short list changed: %v", got)
	}
	th := &store.Thread{MessageIDs: ids}
	if h := ReplyHeaders(th, ReplyThreadOptions{MessageID: "n@x"}); len(h.References) != MaxReferences {
		t.Fatalf("References of a long thread: %d ids", len(h.References))
	}
}

func TestThreadIndexLayout(t *testing.T) {
	start := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	idx := threadIndex(start, "first@x", []time.Time{start.Add(time.Hour), start.Add(3 * 365 * 24 * time.Hour), start.Add(-time.Hour)})
	if len(idx) != 22+15 {
		t.Fatalf("length %d", len(idx))
	}
	var ft [8]byte
	binary.BigEndian.PutUint64(ft[:], uint64(start.Unix())*10_000_000+116444736000000000)
	if !bytes.Equal(idx[:6], ft[:6]) || idx[0] != 0x01 {
		t.Fatalf("header time %x, want %x", idx[:6], ft[:6])
	}
	// One hour = 36e9 units of 100 ns, in units of 2^18.
	if v := binary.BigEndian.Uint32(idx[22:26]); v != uint32(36_000_000_000>>18) {
		t.Fatalf("first child = %#x", v)
	}
	// Three years need the coarse format (high bit set).
	if v := binary.BigEndian.Uint32(idx[27:31]); v>>31 != 1 {
		t.Fatalf("second child = %#x, want the coarse format", v)
	}
	// A time before the start counts as no difference.
	if v := binary.BigEndian.Uint32(idx[32:36]); v != 0 {
		t.Fatalf("third child = %#x", v)
	}
	if idx[26]&0x0f != 0 || idx[31]&0x0f != 1 || idx[36]&0x0f != 2 {
		t.Fatalf("sequence nibbles %x %x %x", idx[26], idx[31], idx[36])
	}
}
