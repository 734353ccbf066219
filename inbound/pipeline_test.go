package inbound

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"mailgate/imapsync"
	"mailgate/store"
	"mailgate/userlike"
)

// newTestPipeline is a Pipeline on a new store that attaches every
// original (a media ID per email) and counts the ledger rows at each
// SyncMedia call, which fails while syncErr is set.
func newTestPipeline(t *testing.T) (in *Pipeline, db *store.DB, syncs *[]int, syncErr *error) {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "mailgate.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	syncs, syncErr = new([]int), new(error)
	n := 0
	in, err = New(Options{
		Channel:        "support",
		DB:             db,
		Analyzer:       newTestAnalyzer(t),
		Client:         userlike.NewClient(userlike.ClientOptions{InboundURL: "http://127.0.0.1:1/unused", Token: "t"}),
		AttachOriginal: "always",
		StoreOriginal: func(ctx context.Context, raw []byte) (string, error) {
			n++
			return fmt.Sprintf("original-%d", n), nil
		},
		SyncMedia: func() error {
			rows, err := db.ListInbound(context.Background(), store.InboundFilter{Channel: "support"})
			if err != nil {
				return err
			}
			*syncs = append(*syncs, len(rows))
			return *syncErr
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return in, db, syncs, syncErr
}

func batchMessage(in *Pipeline, uid uint32, raw string) *imapsync.Message {
	m := &imapsync.Message{Folder: "INBOX", UIDValidity: 7, UID: uid, Size: int64(len(raw)), InternalDate: time.Now(), Raw: []byte(raw)}
	in.Prepare(context.Background(), m)
	return m
}

// HandleBatch records a batch in one go: a malformed email in it is
// dead-lettered while the others are recorded, the media they refer to
// are synced once before the commit, and a failed sync records nothing.
func TestHandleBatch(t *testing.T) {
	const ar = "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\n"
	in, db, syncs, syncErr := newTestPipeline(t)
	ctx := context.Background()
	msgs := []*imapsync.Message{
		batchMessage(in, 1, ar+"From: Ann <ann@example.test>\r\nSubject: Printer\r\nMessage-ID: <p1@x>\r\n\r\nIt is broken.\r\n"),
		batchMessage(in, 2, "\x00\x01\x02 no header at all"),
		batchMessage(in, 3, ar+"From: Bob <bob@example.test>\r\nSubject: Router\r\nMessage-ID: <r1@x>\r\n\r\nIt blinks.\r\n"),
	}

	*syncErr = errors.New("disk full")
	if n, err := in.HandleBatch(ctx, msgs); n != 0 || err == nil {
		t.Fatalf("HandleBatch with a failing media sync = %d, %v; want 0 and the error", n, err)
	}
	if c, err := db.Cursor(ctx, "support", "INBOX"); err != nil || c.UID != 0 {
		t.Fatalf("cursor %+v, %v after a failed media sync, want none", c, err)
	}

	*syncErr, *syncs = nil, nil
	for _, m := range msgs {
		in.Prepare(ctx, m) // as the Watcher does before handing them again
	}
	if n, err := in.HandleBatch(ctx, msgs); n != 3 || err != nil {
		t.Fatalf("HandleBatch = %d, %v; want 3, nil", n, err)
	}
	if len(*syncs) != 1 || (*syncs)[0] != 0 {
		t.Errorf("media synced with %v ledger rows in place, want once, before any row was committed", *syncs)
	}
	rows, err := db.ListInbound(ctx, store.InboundFilter{Channel: "support"})
	if err != nil {
		t.Fatal(err)
	}
	states := map[uint32]store.InboundState{}
	for _, r := range rows {
		states[r.UID] = r.State
		if r.UID == 2 && r.Reason == "" {
			t.Errorf("the dead letter has no reason")
		}
	}
	if states[1] != store.StateFetched || states[2] != store.StateDead || states[3] != store.StateFetched || len(states) != 3 {
		t.Errorf("ledger states %v, want 1 and 3 fetched, 2 dead", states)
	}
	if c, err := db.Cursor(ctx, "support", "INBOX"); err != nil || c.UID != 3 {
		t.Errorf("cursor %+v, %v; want uid 3", c, err)
	}
}
