package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Snapshot reads the store as of one moment, in one read transaction. The
// inbound pipeline decides a run of emails from different senders on one
// snapshot instead of beginning a transaction for each query: on SQLite
// every new read transaction after a commit reloads, one pread per page,
// the pages its queries walk, and during a backlog something commits all
// the time. Close it soon: an open snapshot holds back SQLite's
// checkpoints.
type Snapshot struct {
	db *DB
	tx *sql.Tx
}

// Snapshot begins a snapshot; the caller must Close it.
func (db *DB) Snapshot(ctx context.Context) (*Snapshot, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: begin snapshot: %w", err)
	}
	return &Snapshot{db: db, tx: tx}, nil
}

// Close ends the snapshot.
func (s *Snapshot) Close() error {
	return s.tx.Rollback()
}

// SenderState is what the ledger holds about the sender of an email that
// is being decided.
type SenderState struct {
	// Recent counts the contact's ledger rows of the channel that arrived
	// at or after the given time, in any state (the rate limit).
	Recent int
	// Known reports whether one of the given Message-IDs belongs to one
	// of the contact's threads (the current one or an earlier one).
	Known bool
	// HasThread reports whether the contact has a current thread;
	// ThreadSubject and ThreadCc are its Subject and Cc (see Thread).
	HasThread     bool
	ThreadSubject string
	ThreadCc      []string
}

// SenderState reads what CountFromContact(since), KnowsMessageID(refs)
// and Thread would return about contact, in the snapshot.
func (s *Snapshot) SenderState(ctx context.Context, channel, contact string, since time.Time, refs []string) (SenderState, error) {
	var st SenderState
	db, contact := s.db, normContact(contact)
	fail := func(err error) (SenderState, error) {
		return SenderState{}, fmt.Errorf("store: sender state %s: %w", channel, err)
	}
	if err := db.rtxQueryRow(ctx, s.tx, qCountFromContact, channel, contact, ms(since)).Scan(&st.Recent); err != nil {
		return fail(err)
	}
	if len(refs) > 0 {
		j, err := jsonArray(refs)
		if err != nil {
			return fail(err)
		}
		var n int
		if err := db.rtxQueryRow(ctx, s.tx, qKnowsMessageID, j, channel, contact).Scan(&n); err != nil {
			return fail(err)
		}
		st.Known = n == 1
	}
	var cc string
	err := db.rtxQueryRow(ctx, s.tx, `SELECT subject, cc FROM threads
		WHERE channel = ? AND contact = ? ORDER BY id DESC LIMIT 1`, channel, contact).Scan(&st.ThreadSubject, &cc)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return st, nil
	case err != nil:
		return fail(err)
	}
	st.HasThread = true
	if cc != "" {
		if err := json.Unmarshal([]byte(cc), &st.ThreadCc); err != nil {
			return fail(fmt.Errorf("corrupt thread cc %q: %w", cc, err))
		}
	}
	return st, nil
}
