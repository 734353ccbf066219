package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

// TestCopyTo fills an SQLite store with a row of every kind, copies it to
// a new PostgreSQL store and reads everything back there through the API;
// a second copy is refused.
func TestCopyTo(t *testing.T) {
	ctx := context.Background()
	lite, clk := openTest(t)

	in := newInbound(7, "ann@example.org", 2)
	in.Raw = []byte("From: ann@example.org\r\n\r\nhello\r\n")
	in.Verdict = []byte(`{"dmarc":"pass"}`)
	res := mustRecord(t, lite, in)
	posted := mustRecord(t, lite, newInbound(8, "bob@example.org", 1))
	if err := lite.MarkPosting(ctx, posted.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := lite.PostDone(ctx, posted.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := lite.SetCursor(ctx, "c", "INBOX", Cursor{UIDValidity: 1, UID: 4_000_000_000, History: 3}); err != nil {
		t.Fatal(err)
	}
	it := &OutboxItem{Channel: "c", Contact: "ann@example.org", UserlikeID: "u1", Text: "Hi Ann", SendAfter: clk.Now().Add(time.Second)}
	if _, _, err := lite.Enqueue(ctx, it); err != nil {
		t.Fatal(err)
	}
	if err := lite.AddThreadMessage(ctx, "c", "ann@example.org", "our-1@example.com", true); err != nil {
		t.Fatal(err)
	}
	if err := lite.PutMedia(ctx, &Media{ID: "m1", SHA256: "ab", Size: 3, ContentType: "text/plain", Channel: "c", LedgerID: res.ID}); err != nil {
		t.Fatal(err)
	}
	if err := lite.PutMediaBlob(ctx, "ab", 3, bytes.NewReader([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	key, err := lite.InstallationKey(ctx, "message-id", 32)
	if err != nil {
		t.Fatal(err)
	}
	if err := lite.SaveOAuthLogin(ctx, "c", "device_code", "rt-s3cret", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	pg := openPostgresTest(t, Options{Now: clk.Now})
	if _, err := pg.InstallationKey(ctx, "message-id", 32); err != nil { // a daemon started on it first
		t.Fatal(err)
	}
	stats, err := lite.CopyTo(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	if stats["inbound"] != 2 || stats["inbound_posts"] != 3 || stats["outbox"] != 1 || stats["media_chunks"] != 1 {
		t.Errorf("stats = %v", stats)
	}

	for _, id := range []int64{res.ID, posted.ID} {
		a, err := lite.Inbound(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pg.Inbound(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("inbound #%d:\nsqlite   %+v\npostgres %+v", id, a, b)
		}
	}
	if c, err := pg.Cursor(ctx, "c", "INBOX"); err != nil || c.UID != 4_000_000_000 || c.History != 3 {
		t.Errorf("cursor = %+v, %v", c, err)
	}
	due, err := pg.DueOutbox(ctx, clk.Now().Add(time.Minute))
	if err != nil || len(due) != 1 || due[0].Items[0].Text != "Hi Ann" || due[0].Thread == nil || due[0].Thread.LastOurID != "our-1@example.com" {
		t.Errorf("DueOutbox = %+v, %v", due, err)
	}
	if m, err := pg.Media(ctx, "m1"); err != nil || m.LedgerID != res.ID {
		t.Errorf("media = %+v, %v", m, err)
	}
	if r, err := pg.MediaBlob(ctx, "ab"); err != nil {
		t.Error(err)
	} else if b, _ := io.ReadAll(r); string(b) != "abc" {
		t.Errorf("media content = %q", b)
	}
	if k, err := pg.InstallationKey(ctx, "message-id", 32); err != nil || !bytes.Equal(k, key) {
		t.Errorf("the installation key did not carry over: %v", err)
	}
	if rt, err := pg.OAuthRefreshToken(ctx, "c"); err != nil || rt != "rt-s3cret" {
		t.Errorf("refresh token = %q, %v", rt, err)
	}
	// New rows get ids after the copied ones.
	next := mustRecord(t, pg, newInbound(9, "cy@example.org", 1))
	if next.ID <= posted.ID {
		t.Errorf("a new row got id %d, not after %d", next.ID, posted.ID)
	}

	if _, err := lite.CopyTo(ctx, pg); !errors.Is(err, ErrAlreadyCopied) {
		t.Errorf("second CopyTo: %v, want ErrAlreadyCopied", err)
	}
	used := openPostgresTest(t, Options{Now: clk.Now})
	mustRecord(t, used, newInbound(1, "dee@example.org", 1))
	if _, err := lite.CopyTo(ctx, used); err == nil {
		t.Error("CopyTo into a store in use succeeded")
	}
}
