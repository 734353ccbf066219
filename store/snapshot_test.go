package store

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestSnapshotSenderState checks that SenderState reads what
// CountFromContact, KnowsMessageID and Thread return, and that a snapshot
// does not see what is committed after its first read.
func TestSnapshotSenderState(t *testing.T) { forEachBackend(t, testSnapshotSenderState) }

func testSnapshotSenderState(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	first := newInbound(1, "Ann@Example.org", 1)
	first.NewThread, first.ThreadSubject, first.Cc = true, "Parcel", []string{"bob@example.org"}
	mustRecord(t, db, first)
	second := newInbound(2, "ann@example.org", 1)
	second.KeepCc = true
	mustRecord(t, db, second)
	since := newInbound(2, "", 0).ArrivedAt

	tests := []struct {
		name    string
		contact string
		since   time.Time
		refs    []string
		want    SenderState
	}{
		{"known reference", "ann@example.org", time.Time{}, []string{"<x@example.org>", "<m1@example.org>"},
			SenderState{Recent: 2, Known: true, HasThread: true, ThreadSubject: "Parcel", ThreadCc: []string{"bob@example.org"}}},
		{"recent only, no references", "ANN@example.org", since, nil,
			SenderState{Recent: 1, HasThread: true, ThreadSubject: "Parcel", ThreadCc: []string{"bob@example.org"}}},
		{"unknown reference", "ann@example.org", since, []string{"<x@example.org>"},
			SenderState{Recent: 1, HasThread: true, ThreadSubject: "Parcel", ThreadCc: []string{"bob@example.org"}}},
		{"stranger", "cy@example.org", time.Time{}, []string{"<m1@example.org>"}, SenderState{}},
	}
	snap, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	for _, tt := range tests {
		got, err := snap.SenderState(ctx, "c", tt.contact, tt.since, tt.refs)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: SenderState = %+v, want %+v", tt.name, got, tt.want)
		}
		// The same as the separate queries.
		n, _ := db.CountFromContact(ctx, "c", tt.contact, tt.since)
		known, _ := db.KnowsMessageID(ctx, "c", tt.contact, tt.refs)
		th, ok, _ := db.Thread(ctx, "c", tt.contact)
		if n != got.Recent || known != got.Known || ok != got.HasThread || (ok && (th.Subject != got.ThreadSubject || !reflect.DeepEqual(th.Cc, got.ThreadCc))) {
			t.Errorf("%s: separate queries say %d, %v, %v, %+v", tt.name, n, known, ok, th)
		}
	}
	mustRecord(t, db, newInbound(3, "ann@example.org", 1))
	if got, err := snap.SenderState(ctx, "c", "ann@example.org", time.Time{}, nil); err != nil || got.Recent != 2 {
		t.Errorf("snapshot sees a row committed after it began: Recent = %d, %v", got.Recent, err)
	}
	snap.Close()
	snap, err = db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := snap.SenderState(ctx, "c", "ann@example.org", time.Time{}, nil); err != nil || got.Recent != 3 {
		t.Errorf("a new snapshot: Recent = %d, %v; want 3", got.Recent, err)
	}
}
