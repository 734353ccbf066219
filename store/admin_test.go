package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStatusAndDropDead(t *testing.T) { forEachBackend(t, testStatusAndDropDead) }

func testStatusAndDropDead(t *testing.T) {
	db, clk := openTest(t)
	ctx := context.Background()
	st, err := db.Status(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Cursors) != 0 || !st.OldestPending.IsZero() || st.LastError != "" {
		t.Errorf("empty status = %+v", st)
	}
	a := newInbound(1, "a@example.com", 1)
	a.ArrivedAt = clk.Now().Add(-time.Hour)
	if _, err := db.RecordInbound(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := newInbound(2, "b@example.com", 1)
	if _, err := db.RecordInbound(ctx, b); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if err := db.MarkDead(ctx, b.ID, "Userlike refused: 400"); err != nil {
		t.Fatal(err)
	}
	st, err = db.Status(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Cursors) != 1 || st.Cursors[0].UID != 2 {
		t.Errorf("cursors = %+v, want INBOX at uid 2", st.Cursors)
	}
	if st.Inbound[StateFetched] != 1 || st.Inbound[StateDead] != 1 {
		t.Errorf("inbound counts = %v", st.Inbound)
	}
	if !st.OldestPending.Equal(a.ArrivedAt.Truncate(time.Millisecond)) {
		t.Errorf("oldest pending = %v, want %v", st.OldestPending, a.ArrivedAt)
	}
	if st.LastError != "Userlike refused: 400" {
		t.Errorf("last error = %q", st.LastError)
	}

	if err := db.DropDead(ctx, a.ID); !errors.As(err, new(*StateError)) {
		t.Errorf("dropping a live row: %v, want a StateError", err)
	}
	if err := db.DropDead(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	got, err := db.Inbound(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateSkipped || got.Reason != "dropped by an admin: Userlike refused: 400" {
		t.Errorf("after drop: state %s reason %q", got.State, got.Reason)
	}
	if err := db.DropDead(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("dropping an unknown row: %v", err)
	}
}
